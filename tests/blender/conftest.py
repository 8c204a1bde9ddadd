"""Fixtures for tests that run Blender (the bpy module) in the test process."""

from __future__ import annotations

from pathlib import Path

import pytest

bpy = pytest.importorskip("bpy")

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def fresh_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def import_asset(name: str):
    """Import a shipped sample into an empty scene and return its mesh object."""
    fresh_scene()
    bpy.ops.import_scene.gltf(filepath=str(ASSETS / name))
    return next(o for o in bpy.context.scene.objects if o.type == "MESH")


@pytest.fixture
def empty_scene():
    fresh_scene()
    return bpy.context.scene


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """Capture both sample assets once per module at 128 px: {name: (ViewSet, base-colour texture)}."""
    import numpy as np

    from blender_addon.blender.capture.render import capture
    from blender_addon.core.capture.settings import CaptureSettings
    from blender_addon.core.capture.rigs import RigSpec

    out = {}
    for name in ("Avocado.glb", "Suzanne.glb"):
        obj = import_asset(name)
        img = next(n.image for n in obj.active_material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")
        px = np.empty(img.size[0] * img.size[1] * img.channels, np.float32)
        img.pixels.foreach_get(px)
        texture = px.reshape(img.size[1], img.size[0], img.channels)[..., :3]  # bottom row first, sRGB-encoded
        vs = capture(obj, RigSpec(kind="orbit-poles", count=6), CaptureSettings(view_size=128, samples=4),
                     tmp_path_factory.mktemp(name.split(".")[0]))
        out[name] = (vs, texture)
    return out
