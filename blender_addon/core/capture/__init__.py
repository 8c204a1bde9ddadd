"""What a capture is asked to do (bpy-free): :mod:`.rigs` (where the views look from), :mod:`.settings` (how they
render) and :mod:`.coverage` (how much of the surface they saw). The rendering itself is in
:mod:`blender_addon.blender.capture`.
"""
