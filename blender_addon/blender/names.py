"""Names GroupEdit gives to what it adds to a user's data, written once for every module that looks for them."""

#: The face attribute that marks a capture's edit region while the capture runs (:mod:`.capture.region`).
REGION_ATTRIBUTE = "groupedit_region"
#: A restyled material copy is named after its original with this suffix (:mod:`.bake.apply_texture`).
RESTYLED_SUFFIX = "_GroupEdit"
