"""Open the input of a headless run: a .blend file, or an asset imported into an empty scene."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..core.errors import InputFileError

IMPORTERS = {
    ".glb": lambda p: bpy.ops.import_scene.gltf(filepath=p),
    ".gltf": lambda p: bpy.ops.import_scene.gltf(filepath=p),
    ".fbx": lambda p: bpy.ops.import_scene.fbx(filepath=p),
    ".obj": lambda p: bpy.ops.wm.obj_import(filepath=p),
}


def open_input(path: str | Path) -> None:
    """Make ``path`` the current scene: open a .blend, or import an asset into an empty scene."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".blend":
        try:
            bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
        except RuntimeError as exc:
            raise InputFileError(f"cannot open {path}: {exc}") from exc
        return
    if suffix not in IMPORTERS:
        raise InputFileError(f"{path.name}: unsupported file type; use .blend, {', '.join(IMPORTERS)}")
    bpy.ops.wm.read_factory_settings(use_empty=True)
    try:
        IMPORTERS[suffix](str(path))
    except RuntimeError as exc:
        raise InputFileError(f"cannot import {path}: {exc}") from exc
    if not any(o.type == "MESH" for o in bpy.context.scene.objects):
        raise InputFileError(f"{path} holds no mesh object")
