"""Capture leaves the scene as it found it: on success, on cancel and on failure."""

import bpy
import pytest

from blender_addon.blender.capture.render import capture
from blender_addon.core.capture.settings import CaptureSettings
from blender_addon.core.errors import CaptureCancelled
from blender_addon.core.capture.rigs import RigSpec

from .conftest import import_asset


def rna_dump(struct, depth: int = 2, seen=None) -> dict:
    """Every readable property of ``struct`` (recursing into pointers ``depth`` levels), as plain values."""
    seen = seen if seen is not None else set()
    out = {}
    if struct is None or struct.as_pointer() in seen:
        return out
    seen.add(struct.as_pointer())
    for prop in struct.bl_rna.properties:
        key = prop.identifier
        if key in ("rna_type", "depsgraph"):
            continue
        try:
            value = getattr(struct, key)
        except (AttributeError, RuntimeError):
            continue
        if prop.type == "POINTER":
            if isinstance(value, bpy.types.ID):
                out[key] = value.name
            elif value is not None and depth > 0:
                out[key] = rna_dump(value, depth - 1, seen)
        elif prop.type == "COLLECTION":
            out[key] = len(value)
        elif hasattr(value, "__len__") and not isinstance(value, str):
            out[key] = tuple(round(x, 6) if isinstance(x, float) else x for x in value)
        else:
            out[key] = value
    return out


def snapshot() -> dict:
    scene = bpy.context.scene
    vl = bpy.context.view_layer
    return {
        "render": rna_dump(scene.render),
        "cycles": rna_dump(scene.cycles),
        "view_settings": rna_dump(scene.view_settings),
        "display": rna_dump(scene.display_settings),
        "view_layer": rna_dump(vl, depth=0),
        "view_layer_cycles": rna_dump(vl.cycles, depth=0),
        "aovs": [a.name for a in vl.aovs],
        "camera": scene.camera.name if scene.camera else None,
        "world": scene.world.name if scene.world else None,
        "selected": sorted(o.name for o in bpy.context.selected_objects),
        "active": vl.objects.active.name if vl.objects.active else None,
        "objects": {o.name: (o.hide_render, o.visible_camera, o.hide_get(), [s.material.name if s.material else None for s in o.material_slots])
                    for o in scene.objects},
        # Blender's own "Render Result" image holds the last render, whoever made it: not scene data
        "datablocks": {k: sorted(x.name for x in getattr(bpy.data, k) if x.name != "Render Result")
                       for k in ("objects", "cameras", "lights", "materials", "worlds", "images", "meshes")},
    }


def _scene_with_camera_light_and_world():
    obj = import_asset("Suzanne.glb")
    scene = bpy.context.scene
    cam = bpy.data.objects.new("UserCam", bpy.data.cameras.new("UserCam"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    light = bpy.data.objects.new("UserLight", bpy.data.lights.new("UserLight", "POINT"))
    scene.collection.objects.link(light)
    other = bpy.data.objects.new("Other", obj.data)
    scene.collection.objects.link(other)
    scene.world = bpy.data.worlds.new("UserWorld")
    scene.render.engine = "BLENDER_EEVEE_NEXT"
    scene.render.resolution_x, scene.render.resolution_y = 1920, 1080
    scene.cycles.samples = 77
    scene.cycles.filter_width = 2.0
    scene.view_settings.view_transform = "AgX"
    scene.render.filepath = "//user_path/"
    scene.render.image_settings.file_format = "JPEG"
    other.select_set(True)
    bpy.context.view_layer.objects.active = other
    return obj


@pytest.mark.parametrize("lighting", ["SCENE", "STUDIO"])
def test_scene_unchanged_after_capture(tmp_path, lighting):
    obj = _scene_with_camera_light_and_world()
    before = snapshot()
    capture(obj, RigSpec(kind="orbit", count=2), CaptureSettings(view_size=64, samples=1, lighting=lighting), tmp_path / "vs")
    assert snapshot() == before
    assert (tmp_path / "vs" / "manifest.json").is_file()


def test_scene_unchanged_and_nothing_kept_after_cancel(tmp_path):
    obj = _scene_with_camera_light_and_world()
    before = snapshot()
    with pytest.raises(CaptureCancelled):
        capture(obj, RigSpec(kind="orbit", count=3), CaptureSettings(view_size=64, samples=1), tmp_path / "vs",
                cancel=lambda: True)
    assert snapshot() == before
    assert not (tmp_path / "vs").exists()


def test_scene_unchanged_after_failure(tmp_path):
    obj = _scene_with_camera_light_and_world()
    before = snapshot()

    def boom(step):
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        capture(obj, RigSpec(kind="orbit", count=3), CaptureSettings(view_size=64, samples=1), tmp_path / "vs",
                progress=boom)
    assert snapshot() == before
    assert not (tmp_path / "vs").exists()
