"""Extension preferences (Edit > Preferences > Add-ons > GroupEdit)."""

from __future__ import annotations

import bpy

from .. import __package__ as ADDON_ID  # the extension's package, e.g. bl_ext.user_default.groupedit


class GroupEditPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_ID

    capture_root: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Capture folder",
        description="Where captures go when the panel's output folder is empty "
        "(default: a 'groupedit' folder next to the .blend file, or the extension's own folder for unsaved files)",
        subtype="DIR_PATH",
        default="",
    )

    def draw(self, context: bpy.types.Context) -> None:
        self.layout.prop(self, "capture_root")


def register() -> None:
    bpy.utils.register_class(GroupEditPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(GroupEditPreferences)
