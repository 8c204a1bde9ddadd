"""Capture of the awkward cases: several materials, modifiers, far away, odd scale, no UVs, bad input."""

import os

import bpy
import numpy as np
import pytest

from blender_addon.blender.capture.render import capture
from blender_addon.core.capture.settings import CaptureSettings
from blender_addon.blender.mesh import NEW_UV_NAME, find_object
from blender_addon.core.errors import (
    MissingUVError, NotAMeshError, ObjectNotFoundError, OutputNotWritableError,
)
from blender_addon.core.format.images import linear_to_srgb
from blender_addon.core.capture.rigs import RigSpec

SMALL = CaptureSettings(view_size=64, samples=1)


def _cube(empty_scene, **kw):
    bpy.ops.mesh.primitive_cube_add(size=2.0, **kw)
    return bpy.context.active_object


def _flat_material(name, rgb):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
    return mat


def _reprojection_error(vs):
    worst = 0.0
    for v in vs.views:
        mask = vs.load(v, "mask")
        uv, _ = v.camera.project(vs.load(v, "position")[mask])
        rows, cols = np.nonzero(mask)
        worst = max(worst, np.abs(uv - np.stack([cols + 0.5, rows + 0.5], -1)).max())
    return worst


def test_multi_material_albedo_shows_each_material(empty_scene, tmp_path):
    obj = _cube(empty_scene)
    red, blue = (0.8, 0.05, 0.05), (0.05, 0.1, 0.7)
    obj.data.materials.append(_flat_material("Red", red))
    obj.data.materials.append(_flat_material("Blue", blue))
    for i, poly in enumerate(obj.data.polygons):
        poly.material_index = i % 2
    vs = capture(obj, RigSpec(kind="sphere", count=6), SMALL, tmp_path / "vs")
    expected = np.rint(linear_to_srgb(np.array([red, blue], np.float32)) * 255)
    pixels = np.concatenate([vs.load(v, "albedo")[vs.load(v, "mask")] for v in vs.views]).astype(float)
    dist = np.abs(pixels[:, None, :] - expected[None]).max(axis=2)  # (N, 2) distance to each colour
    assert (dist.min(axis=1) <= 1).all(), "every albedo pixel is one of the two base colours"
    share_red = (dist[:, 0] <= 1).mean()
    assert 0.2 < share_red < 0.8
    assert vs.materials == ["Red", "Blue"]
    assert [s.material.name for s in obj.material_slots] == ["Red", "Blue"]


def test_modifiers_far_origin_and_mirroring_scale(empty_scene, tmp_path):
    obj = _cube(empty_scene, location=(5000.0, -3000.0, 200.0), rotation=(0.3, 0.2, 0.5))
    obj.scale = (3.0, -0.5, 1.0)  # non-uniform and mirroring
    obj.modifiers.new("Subdivision", "SUBSURF").levels = 1
    vs = capture(obj, RigSpec(kind="orbit-poles", count=5), SMALL, tmp_path / "vs")
    assert _reprojection_error(vs) < 0.5
    mesh = vs.mesh()
    assert len(mesh.triangles) == 6 * 4 * 2  # the evaluated (subdivided) mesh, not the 12-triangle cube
    normals, _ = mesh.face_normals_and_areas()
    centre = mesh.positions.mean(axis=0)
    assert (np.einsum("td,td->t", normals, mesh.corners.mean(1) - centre) > 0).all(), "winding stays outward"
    assert vs.coverage > 0.9
    for v in vs.views:
        m = vs.load(v, "mask")
        assert m.sum() > 0.1 * m.size


def test_object_without_uvs(empty_scene, tmp_path):
    obj = _cube(empty_scene)
    obj.data.uv_layers.remove(obj.data.uv_layers[0])
    with pytest.raises(MissingUVError, match="--add-uv"):
        capture(obj, RigSpec(kind="orbit", count=2), SMALL, tmp_path / "a")
    assert not (tmp_path / "a").exists() and len(obj.data.uv_layers) == 0
    vs = capture(obj, RigSpec(kind="orbit", count=2), CaptureSettings(view_size=64, samples=1, add_uv=True), tmp_path / "b")
    assert vs.uv_map == NEW_UV_NAME and NEW_UV_NAME in obj.data.uv_layers
    uv = np.concatenate([vs.load(v, "uv")[vs.load(v, "mask")] for v in vs.views])
    assert uv.min() >= 0 and uv.max() <= 1 and uv.std() > 0.1


def test_clear_errors(empty_scene, tmp_path):
    _cube(empty_scene)
    with pytest.raises(ObjectNotFoundError, match="Chair.*Cube"):
        find_object("Chair")
    bpy.ops.object.empty_add()
    with pytest.raises(NotAMeshError, match="not a mesh"):
        capture(bpy.context.active_object, RigSpec(), SMALL, tmp_path / "x")
    cube = bpy.data.objects["Cube"]
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(OutputNotWritableError, match="not empty"):
        capture(cube, RigSpec(kind="orbit", count=2), SMALL, tmp_path / "full")
    with pytest.raises(OutputNotWritableError, match="not ViewSet|not a ViewSet|not empty"):
        capture(cube, RigSpec(kind="orbit", count=2), CaptureSettings(view_size=64, samples=1, overwrite=True), tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        with pytest.raises(OutputNotWritableError, match="cannot write"):
            capture(cube, RigSpec(kind="orbit", count=2), SMALL, ro / "vs")
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputNotWritableError):
        capture(cube, RigSpec(kind="orbit", count=2), SMALL, tmp_path / "file" / "vs")


def test_overwritten_capture_keeps_no_pass_of_the_earlier_one(empty_scene, tmp_path):
    """A capture with edits (and the black/white passes earlier versions wrote), overwritten by one of fewer views:
    no pass, view and edit of the earlier capture survives (a bake would otherwise use old edits with new cameras)."""
    cube = _cube(empty_scene)
    out = tmp_path / "vs"
    capture(cube, RigSpec(kind="orbit", count=3), CaptureSettings(view_size=64, samples=1), out)
    assert all((out / p / "view_002.npy").is_file() for p in ("diffuse_response", "metal_light", "colour_linear"))
    for retired in ("black", "white"):
        (out / retired).mkdir()
        (out / retired / "view_000.npy").write_bytes(b"old")
    for edits in ("edited", "edited.1", "edited.part"):  # edits of the earlier capture
        (out / edits).mkdir()
        (out / edits / "view_000.png").write_bytes(b"old")
    (out / ".preview.png").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    vs = capture(cube, RigSpec(kind="orbit", count=2),
                 CaptureSettings(view_size=64, samples=1, overwrite=True), out)
    written = {p for v in vs.views for p in v.files}
    assert {p.name for p in out.iterdir() if p.is_dir()} == written
    assert not (out / "black").exists() and not (out / "white").exists()
    assert not any(out.glob("*/view_002.*")), "a view of the earlier capture survived"
    assert not any((out / e).exists() for e in ("edited", "edited.1", "edited.part", ".preview.png"))
    assert (out / "notes.txt").read_text() == "mine"  # what is not the capture's stays


def test_scene_cameras_rig(empty_scene, tmp_path):
    obj = _cube(empty_scene)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 200, 100
    for i, loc in enumerate([(0, -8, 1), (8, 0, 2)]):
        cam = bpy.data.objects.new(f"Cam{i}", bpy.data.cameras.new(f"Cam{i}"))
        scene.collection.objects.link(cam)
        cam.location = loc
        cam.data.shift_x = 0.05
        direction = -np.array(loc, float)
        from mathutils import Vector
        cam.rotation_euler = Vector(direction).to_track_quat("-Z", "Y").to_euler()
    vs = capture(obj, RigSpec(kind="scene"), SMALL, tmp_path / "vs")
    assert [v.label for v in vs.views] == ["Cam0", "Cam1"]
    assert (vs.views[0].camera.intrinsics.width, vs.views[0].camera.intrinsics.height) == (64, 32)
    assert _reprojection_error(vs) < 0.5
    assert scene.render.resolution_x == 200


def test_the_metal_edge_is_a_smooth_metals_fresnel_edge(empty_scene, tmp_path):
    """A polished metal sphere: ``metal_edge`` (its reflectance at base colour 0) is Schlick's (1 - n.v)^5 of each
    pixel's normal and view direction, rising towards the silhouette; a dielectric has none (NaN)."""
    bpy.ops.mesh.primitive_uv_sphere_add(segments=64, ring_count=32)
    bpy.ops.object.shade_smooth()
    obj = bpy.context.active_object
    metal, plastic = _flat_material("Metal", (0.05, 0.3, 0.6)), _flat_material("Plastic", (0.5, 0.5, 0.5))
    metal.node_tree.nodes["Principled BSDF"].inputs["Metallic"].default_value = 1.0
    metal.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.0
    obj.data.materials.append(metal)
    obj.data.materials.append(plastic)
    for poly in obj.data.polygons:
        poly.material_index = int(poly.center.z < -0.5)
    vs = capture(obj, RigSpec(kind="orbit", count=4, elevations=[0.0]), SMALL, tmp_path / "vs")
    got, want = [], []
    for v in vs.views:
        mask, edge = vs.load(v, "mask"), vs.load(v, "metal_edge").astype(np.float32)
        position, normal = vs.load(v, "position")[mask], vs.load(v, "normal")[mask]
        facing = np.einsum("ij,ij->i", normal, v.camera.centre - position)
        facing /= np.linalg.norm(v.camera.centre - position, axis=1)
        metal_px = position[:, 2] > -0.45
        assert np.isnan(edge[mask][position[:, 2] < -0.55]).all(), "a dielectric has no metal edge"
        got.append(edge[mask][metal_px, 0])
        want.append((1.0 - np.clip(facing[metal_px], 0.0, 1.0)) ** 5)
    got, want = np.concatenate(got), np.concatenate(want)
    assert np.percentile(np.abs(got - want), 95) < 0.02, np.percentile(np.abs(got - want), 95)
    assert got.max() > 0.3 and np.median(got) < 0.05


def test_a_transparent_surface_shows_its_own_base_colour_over_the_background(empty_scene, tmp_path):
    """A sphere of alpha 0.5: the colour render's base colour (``albedo_linear``, through its pixel filter) is the
    front surface's, as the data render's at each pixel centre, not scaled by what shows through; its colour is half
    the opaque sphere's plus half the background (the sphere's own back does not show), without the noise of
    samples passing through at random."""
    bpy.ops.mesh.primitive_uv_sphere_add(segments=32, ring_count=16)
    obj = bpy.context.active_object
    mat = _flat_material("Glass", (0.6, 0.3, 0.1))
    obj.data.materials.append(mat)
    rig, settings = RigSpec(kind="orbit", count=2, elevations=[0.0]), CaptureSettings(view_size=64, samples=4)
    opaque = capture(obj, rig, settings, tmp_path / "opaque")
    mat.node_tree.nodes["Principled BSDF"].inputs["Alpha"].default_value = 0.5
    vs = capture(obj, rig, settings, tmp_path / "vs")
    background = np.float32(settings.background)
    for v, w in zip(vs.views, opaque.views):
        mask = vs.load(v, "mask")
        inside = mask & np.roll(mask, 2, 0) & np.roll(mask, -2, 0) & np.roll(mask, 2, 1) & np.roll(mask, -2, 1)  # off the rim
        albedo = vs.load(v, "albedo_linear").astype(np.float32)[inside]
        assert np.abs(albedo - np.float32([0.6, 0.3, 0.1])).max() < 0.01, albedo.mean(axis=0)
        colour = vs.load(v, "colour_linear").astype(np.float32)[inside]
        want = 0.5 * opaque.load(w, "colour_linear").astype(np.float32)[inside] + 0.5 * background
        assert np.abs(colour - want).max() < 0.01, np.abs(colour - want).max()
