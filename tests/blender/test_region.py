"""The edit region: a part of the object (faces, material slots, a vertex group) captured as an exact per-view
``region`` pass, and the clear errors when a region names nothing."""

import bpy
import numpy as np
import pytest

from blender_addon.blender.capture.render import capture
from blender_addon.core.capture.region import RegionSpec
from blender_addon.core.capture.rigs import RigSpec
from blender_addon.core.capture.settings import CaptureSettings
from blender_addon.core.errors import InvalidInputError

RIG = RigSpec(kind="orbit-poles", count=5)


def _material(name, rgb):
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    mat.node_tree.nodes["Principled BSDF"].inputs["Base Color"].default_value = (*rgb, 1.0)
    return mat


@pytest.fixture
def sphere_and_wall(empty_scene):
    """One object: a UV sphere (its faces bounded by latitude rings, so a face is above the equator exactly where
    its points are) whose upper half is material "Top" and vertex group "top", and a wall in front of it (material
    "Wall") that hides part of the upper half from the front views."""
    bpy.ops.mesh.primitive_uv_sphere_add(segments=32, ring_count=16)
    sphere = bpy.context.active_object
    bpy.ops.mesh.primitive_plane_add(size=1.2, location=(0.0, -1.6, 0.6), rotation=(np.pi / 2, 0.0, 0.0))
    wall = bpy.context.active_object
    for o in (sphere, wall):
        o.select_set(True)
    bpy.context.view_layer.objects.active = sphere
    bpy.ops.object.join()
    obj = bpy.context.active_object
    for m in (_material("Top", (0.8, 0.2, 0.1)), _material("Bottom", (0.1, 0.3, 0.8)), _material("Wall", (0.5,) * 3)):
        obj.data.materials.append(m)
    group = obj.vertex_groups.new(name="top")
    on_sphere = lambda co: abs(co.length - 1.0) < 1e-3  # noqa: E731
    for poly in obj.data.polygons:
        corners = [obj.data.vertices[i].co for i in poly.vertices]
        poly.material_index = 2 if not all(on_sphere(c) for c in corners) else (0 if poly.center.z > 0 else 1)
        poly.select = poly.material_index == 0
    group.add([v.index for v in obj.data.vertices if on_sphere(v.co) and v.co.z > -1e-4], 1.0, "REPLACE")
    group.add([v.index for v in obj.data.vertices if on_sphere(v.co) and v.co.z <= -1e-4], 0.2, "REPLACE")
    return obj


def _reference(vs, v):
    """The upper half of the sphere where it is the visible surface, from the position pass alone (independent of
    the region's faces and attribute), and the pixels near the equator or the sphere's rim left out as undecided."""
    mask, p = vs.load(v, "mask"), vs.load(v, "position")
    on_sphere = np.abs(np.linalg.norm(p, axis=2) - 1.0) < 0.05
    decided = mask & ~(on_sphere & (np.abs(p[..., 2]) < 0.02))
    return mask & on_sphere & (p[..., 2] > 0), decided


@pytest.mark.parametrize("region", ["material:Top", "vgroup:top:0.5", "faces"])
def test_region_pass_is_the_visible_part_of_the_region(sphere_and_wall, tmp_path, region):
    obj = sphere_and_wall
    vs = capture(obj, RIG, CaptureSettings(view_size=96, samples=1, region=region), tmp_path / "vs")
    hidden_somewhere = False
    for v in vs.views:
        got = vs.load(v, "region")
        want, decided = _reference(vs, v)
        assert got.dtype == bool and not (got & ~vs.load(v, "mask")).any()
        assert np.array_equal(got[decided], want[decided]), f"{v.name}: {np.sum(got[decided] != want[decided])} px"
        # the wall hides part of the upper half in some views: those pixels are the wall's, not the region's
        wall = vs.load(v, "mask") & (np.abs(np.linalg.norm(vs.load(v, "position"), axis=2) - 1.0) > 0.05)
        hidden_somewhere |= bool(wall.any())
        assert not (got & wall).any()
    assert hidden_somewhere
    assert RegionSpec.parse(vs.capture["region"]) == RegionSpec.parse(region)
    assert "groupedit_region" not in obj.data.attributes, "the temporary face attribute is gone"


def test_without_a_region_there_is_no_region_pass(sphere_and_wall, tmp_path):
    vs = capture(sphere_and_wall, RIG, CaptureSettings(view_size=64, samples=1), tmp_path / "vs")
    assert all("region" not in v.files for v in vs.views)


@pytest.mark.parametrize("region, message", [
    ("material:Jacket", "no material slot with 'Jacket'.*'Top', 'Bottom', 'Wall'"),
    ("vgroup:sleeves", "no vertex group 'sleeves'.*'top'"),
    ("vgroup:top:1.5", "between 0 and 1"),
    ("colour:red", "faces \\| material:NAME"),
])
def test_regions_that_name_nothing_are_clear_errors(sphere_and_wall, tmp_path, region, message):
    with pytest.raises(InvalidInputError, match=message):
        capture(sphere_and_wall, RIG, CaptureSettings(view_size=64, samples=1, region=region), tmp_path / "vs")
    assert not (tmp_path / "vs").exists(), "nothing written"


def test_an_empty_or_unseen_region_is_an_error(sphere_and_wall, tmp_path):
    obj = sphere_and_wall
    for poly in obj.data.polygons:
        poly.select = False
    with pytest.raises(InvalidInputError, match="holds no face: select some faces"):
        capture(obj, RIG, CaptureSettings(view_size=64, samples=1, region="faces"), tmp_path / "a")
    # the bottom cap of the sphere, from cameras above only
    for poly in obj.data.polygons:
        poly.select = poly.center.z < -0.95
    above = RigSpec(kind="orbit", count=3, elevations=[70.0])
    with pytest.raises(InvalidInputError, match="no view sees the region"):
        capture(obj, above, CaptureSettings(view_size=64, samples=1, region="faces"), tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_the_mesh_keeps_the_regions_triangles(sphere_and_wall, tmp_path):
    obj = sphere_and_wall
    mod = obj.modifiers.new("subdivide", "SUBSURF")
    mod.levels = 1
    vs = capture(obj, RIG, CaptureSettings(view_size=64, samples=1, region="material:Top"), tmp_path / "vs")
    mesh = vs.mesh()
    assert mesh.region is not None and mesh.region.shape == mesh.material_index.shape
    assert np.array_equal(mesh.region, mesh.material_index == 0), "the region's triangles, after the modifier"


def _edit_everywhere(obj, region, tmp_path):
    """A capture of ``obj`` with ``region`` and edited views that recolour the *whole* object (lit renders of its
    known recolour): the bake must keep everything outside the region anyway."""
    from dataclasses import replace

    from blender_addon.blender.check import recoloured_materials

    settings = CaptureSettings(view_size=96, samples=4, region=region)
    vs = capture(obj, RIG, settings, tmp_path / "vs")
    with recoloured_materials(obj):
        lit = capture(obj, RIG, replace(settings, region=None, uv_map=vs.uv_map), tmp_path / "lit")
    return vs, [lit.load(w, "colour") for w in lit.views]


def _bake(obj, vs, edited):
    from blender_addon.blender.bake.apply_texture import texture_targets
    from blender_addon.core.bake.restyle import bake_edit_into_targets, resample

    [tb] = bake_edit_into_targets(vs, edited, texture_targets(obj, vs.uv_map), 512)
    return tb, resample(np.asarray(tb.target.base, np.float32)[..., :3], 512)


def test_the_bake_changes_the_regions_texels_only(empty_scene, tmp_path):
    from blender_addon.core.bake.uv_raster import rasterise_uv
    from tests.corpus import _sphere, _textured

    obj = _sphere()
    _textured(obj, "painted", 256, 3)
    for poly in obj.data.polygons:
        poly.select = poly.center.z > 0.2
    vs, edited = _edit_everywhere(obj, "faces", tmp_path)
    tb, base = _bake(obj, vs, edited)
    mesh = vs.mesh()
    outside = rasterise_uv(mesh, 512, np.flatnonzero(~mesh.region))
    inside = rasterise_uv(mesh, 512, np.flatnonzero(mesh.region))
    kept = tb.result.srgb[outside.rows, outside.cols] == base[outside.rows, outside.cols]
    assert kept.all(), f"{(~kept.all(axis=1)).sum()} texels outside the region changed"
    changed = np.abs(tb.result.srgb[inside.rows, inside.cols] - base[inside.rows, inside.cols]).max(axis=1) > 0.02
    assert changed.mean() > 0.8, "the region took the edit"
    assert tb.region.changed_outside == 0 and tb.region.shared == 0
    assert tb.region.changed_inside >= changed.sum()


def test_texels_the_region_shares_through_overlapping_uvs_are_kept_and_reported(empty_scene, tmp_path):
    """Half of the region's faces lie over faces outside it in UV space: those texels stay as they were (reported),
    the region's own texels take the edit."""
    from blender_addon.core.bake.uv_raster import rasterise_uv
    from tests.corpus import _sphere, _textured, _uvs

    obj = _sphere()
    _textured(obj, "mirrored", 256, 4)
    layer = obj.data.uv_layers.active
    co = _uvs(layer)
    for poly in obj.data.polygons:  # the region: u > 0.5; its faces up to 0.75 mirrored over the faces below 0.5
        corners = slice(poly.loop_start, poly.loop_start + poly.loop_total)
        u = co[corners, 0].mean()
        poly.select = bool(u > 0.5)
        if 0.5 < u < 0.75:
            co[corners, 0] = 1.0 - co[corners, 0]
    layer.data.foreach_set("uv", co.ravel())
    vs, edited = _edit_everywhere(obj, "faces", tmp_path)
    tb, base = _bake(obj, vs, edited)
    mesh = vs.mesh()
    outside = rasterise_uv(mesh, 512, np.flatnonzero(~mesh.region))
    assert (tb.result.srgb[outside.rows, outside.cols] == base[outside.rows, outside.cols]).all()
    assert tb.region.shared > 0 and tb.region.changed_outside == 0
    assert "overlapping UVs were kept" in tb.region.message()


def test_a_region_whose_texels_all_belong_to_the_rest_too_is_an_error(empty_scene, tmp_path):
    from blender_addon.core.errors import RestyleShortfallError
    from tests.corpus import _sphere, _textured, _uvs

    obj = _sphere()
    _textured(obj, "folded", 256, 4)
    layer = obj.data.uv_layers.active
    co = _uvs(layer)
    for poly in obj.data.polygons:
        poly.select = bool(co[poly.loop_start:poly.loop_start + poly.loop_total, 0].mean() > 0.5)
    co[:, 0] = np.where(co[:, 0] > 0.5, 1.0 - co[:, 0], co[:, 0])  # the region folded over the rest entirely
    layer.data.foreach_set("uv", co.ravel())
    vs, edited = _edit_everywhere(obj, "faces", tmp_path)
    with pytest.raises(RestyleShortfallError, match="shares its texels with the rest.*--unwrap"):
        _bake(obj, vs, edited)


def _figure(tmp_path):
    """A .blend with one object, "Figure": a sphere whose upper half is textured material "Jacket", lower half
    "Trousers"."""
    from tests.corpus import two_part_figure

    two_part_figure()
    path = tmp_path / "figure.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(path), copy=True)
    return path


def _groupedit(*args, cwd):
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("groupedit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "blender_addon.cli"]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=600, cwd=cwd)


def _slots(blend):
    import json
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import bpy, json
        bpy.ops.wm.open_mainfile(filepath={str(blend)!r})
        print("RESULT", json.dumps([s.material.name for s in bpy.data.objects["Figure"].material_slots]))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    return json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT"))[7:])


SMALL_RUN = ("--views", "4", "--view-size", "96", "--samples", "4")


@pytest.mark.slow
def test_run_with_a_material_region_restyles_that_material_only(empty_scene, tmp_path):
    """``groupedit run --region material:Jacket``: the Jacket's texture takes the edit, the Trousers keep their
    material, and the closed loop shows the rest of the object as it was."""
    import json

    r = _groupedit("run", str(_figure(tmp_path)), "--region", "material:Jacket", "--instruction", "make it red",
                   *SMALL_RUN, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "changed inside the region, 0 outside" in r.stdout
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["region"] == "material:Jacket"
    assert record["consistency_db"] > 15.0 and record["capture_consistency_db"] > 15.0, record
    assert record["closed_loop"]["outside_psnr_db"] > 35.0, record["closed_loop"]
    slots = _slots(tmp_path / "out" / "figure_restyled.blend")
    assert slots[0] != "Jacket" and slots[1] == "Trousers", slots


@pytest.mark.slow
def test_run_with_several_regions_edits_each_in_turn(empty_scene, tmp_path):
    """Two edits, one per region, in one run: each captured, edited, baked and applied in turn; both materials end
    up restyled, each edit's closed loop keeps the rest as it was."""
    import json

    r = _groupedit("run", str(_figure(tmp_path)), "--edit", "material:Jacket=make it red", "--edit",
                   "material:Trousers=make it blue", *SMALL_RUN, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "edit 2/2: 'make it blue' on material:Trousers" in r.stdout
    edits = json.loads((tmp_path / "out" / "run.json").read_text())["edits"]
    assert [e["region"] for e in edits] == ["material:Jacket", "material:Trousers"]
    assert all(e["closed_loop"]["outside_psnr_db"] > 35.0 for e in edits), edits
    assert (tmp_path / "out" / "views_1" / "manifest.json").is_file()
    slots = _slots(tmp_path / "out" / "figure_restyled.blend")
    assert slots[0].startswith("Jacket_GroupEdit") and slots[1].startswith("Trousers_GroupEdit"), slots


@pytest.mark.parametrize("args, message", [
    (("--instruction", "red", "--edit", "faces=red"), "either --instruction"),
    (("--edit", "material:Jacket"), "write REGION=INSTRUCTION"),
    ((), "say what to change"),
])
def test_run_edits_are_checked_before_anything_runs(tmp_path, args, message):
    r = _groupedit("run", str(tmp_path / "missing.blend"), *args, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr, r.stderr[-2000:]
