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

    server_url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Server URL", default="http://127.0.0.1:8765",
        description="Address of the GroupEdit edit server (a server elsewhere needs Blender's online access)",
    )
    token_file: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Token file", subtype="FILE_PATH", default="",
        description="File holding the server's Bearer token (needed when the server was started with --token-file)",
    )
    server_command: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Server command", default="groupedit-server",
        description="Command that starts a local server (full path to groupedit-server in its environment)",
    )
    request_timeout: bpy.props.FloatProperty(name="Request timeout (s)", default=5.0, min=0.5, max=120.0)  # type: ignore[valid-type]
    upload_timeout: bpy.props.FloatProperty(name="Upload timeout (s)", default=300.0, min=5.0, max=3600.0)  # type: ignore[valid-type]

    def token(self) -> str:
        if not self.token_file:
            return ""
        try:
            return open(bpy.path.abspath(self.token_file), encoding="utf-8").read().strip()
        except OSError:
            return ""

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "capture_root")
        col = layout.column(heading="Edit server")
        for name in ("server_url", "token_file", "server_command", "request_timeout", "upload_timeout"):
            col.prop(self, name)


def register() -> None:
    bpy.utils.register_class(GroupEditPreferences)


def unregister() -> None:
    bpy.utils.unregister_class(GroupEditPreferences)
