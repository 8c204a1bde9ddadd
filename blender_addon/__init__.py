"""GroupEdit for Blender: restyle an object consistently from every angle.

The extension's entry point: registers the properties, operators, N-panel and the
``blender --command groupedit`` CLI. The bpy-free logic lives in :mod:`.core`, the code that talks
to Blender in :mod:`.blender`.
"""

from __future__ import annotations

#: The version of the extension, the server and the Python package: written here only (pyproject.toml reads it,
#: tools/build_extension.py writes it into the extension's manifest).
__version__ = "0.1.0"

_cli_handle = None


def register() -> None:
    import bpy

    from . import ui
    from .cli import blender_command

    global _cli_handle
    ui.register()
    _cli_handle = bpy.utils.register_cli_command("groupedit", blender_command)


def unregister() -> None:
    import bpy

    from . import ui

    global _cli_handle
    if _cli_handle is not None:
        bpy.utils.unregister_cli_command(_cli_handle)
        _cli_handle = None
    ui.unregister()
