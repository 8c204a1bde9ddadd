import json

import numpy as np
import pytest

from blender_addon.core.format.cameras import Camera, Intrinsics, look_at
from blender_addon.core.capture.coverage import coverage
from blender_addon.core.errors import ViewSetFormatError
from blender_addon.core.format.viewset import MeshData, View, ViewSet, write_view_files


def _cube_mesh(size: float = 1.0) -> MeshData:
    """A closed, outward-facing cube of edge ``size`` centred on the origin."""
    v = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], float) * size / 2
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    tris = []
    for a, b, c, d in quads:
        tris += [(a, b, c), (a, c, d)]
    t = np.array(tris, np.int32)
    n = len(t)
    return MeshData(v, t, np.zeros((n, 3, 2), np.float32), np.zeros((n, 3, 3), np.float32), np.zeros(n, np.int32))


def _depth_of_cube(cam: Camera, mesh: MeshData) -> np.ndarray:
    """Planar depth of the cube by ray casting (slab test), 0 where the ray misses."""
    rays = cam.pixel_rays()
    o = cam.centre
    with np.errstate(divide="ignore"):
        inv = 1.0 / rays
    lo, hi = mesh.positions.min(0), mesh.positions.max(0)
    t1, t2 = (lo - o) * inv, (hi - o) * inv
    tnear = np.minimum(t1, t2).max(-1)
    tfar = np.maximum(t1, t2).min(-1)
    hit = (tnear <= tfar) & (tnear > 0)
    return np.where(hit, tnear * (rays @ cam.forward), 0.0)


def test_outward_cube_is_outward():
    normals, areas = _cube_mesh().face_normals_and_areas()
    centres = _cube_mesh().corners.mean(1)
    assert (np.einsum("td,td->t", normals, centres) > 0).all() and np.isclose(areas.sum(), 6.0)


def test_coverage_of_one_and_six_axis_views():
    mesh = _cube_mesh()
    k = Intrinsics.from_fov(40, 96, 96)
    axes = [np.array(a, float) * 5 for a in ([1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1])]
    cams = [Camera(k, look_at(a, np.zeros(3))) for a in axes]
    views = [(c, _depth_of_cube(c, mesh)) for c in cams]
    assert coverage(mesh, views[:1]) == pytest.approx(1 / 6, abs=1e-6)
    assert coverage(mesh, views) == pytest.approx(1.0)
    # a view 80 degrees off a face sees nothing of it within the 75 degree limit
    oblique = Camera(k, look_at(np.array([5 * np.cos(np.radians(80)), 0.0, 5 * np.sin(np.radians(80))]) * 1.0, np.zeros(3)))
    cov = coverage(mesh, [(oblique, _depth_of_cube(oblique, mesh))])
    assert cov == pytest.approx(1 / 6, abs=1e-6)  # only the top face counts


def _write_small_viewset(root):
    cam = Camera(Intrinsics.from_fov(40, 8, 6), look_at(np.array([0, -3.0, 1.0]), np.zeros(3)))
    rng = np.random.default_rng(0)
    passes = {
        "colour": rng.integers(0, 255, (6, 8, 3), dtype=np.uint8),
        "albedo": rng.integers(0, 255, (6, 8, 3), dtype=np.uint8),
        "mask": rng.random((6, 8)) > 0.5,
        "depth": rng.random((6, 8)).astype(np.float32),
        "normal": rng.random((6, 8, 3)).astype(np.float32),
        "uv": rng.random((6, 8, 2)).astype(np.float32),
        "position": rng.random((6, 8, 3)).astype(np.float32),
    }
    files = write_view_files(root, "view_000", passes)
    vs = ViewSet(root=root, object_name="Thing", views=[View("view_000", cam, files, 0.0, 20.0, "ring0")], uv_map="UVMap")
    _cube_mesh().save(root / "mesh.npz")
    vs.write_manifest()
    return vs, passes


def test_round_trip(tmp_path):
    vs, passes = _write_small_viewset(tmp_path)
    back = ViewSet.read(tmp_path)
    assert back.object_name == "Thing" and back.uv_map == "UVMap"
    v = back.view("view_000")
    assert np.allclose(v.camera.camera_to_world, vs.views[0].camera.camera_to_world)
    for name, array in passes.items():
        loaded = back.load(v, name)
        assert loaded.dtype == array.dtype and np.array_equal(loaded, array), name
    assert back.mesh().triangles.shape == (12, 3)


def test_manifest_is_plain_json_with_both_pose_conventions(tmp_path):
    _write_small_viewset(tmp_path)
    d = json.loads((tmp_path / "manifest.json").read_text())
    cam = d["views"][0]["camera"]
    c2w, gl = np.array(cam["camera_to_world"]), np.array(cam["camera_to_world_opengl"])
    assert np.allclose(gl, c2w @ np.diag([1, -1, -1, 1]))
    assert {"fx", "fy", "cx", "cy", "width", "height"} <= cam.keys()
    assert d["conventions"]["camera"].startswith("OpenCV")


def test_bad_manifests(tmp_path):
    with pytest.raises(ViewSetFormatError, match="no manifest.json"):
        ViewSet.read(tmp_path)
    _write_small_viewset(tmp_path)
    d = json.loads((tmp_path / "manifest.json").read_text())
    d["version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ViewSetFormatError, match="version 99"):
        ViewSet.read(tmp_path)
    d["version"] = 1  # before edit regions: read as a capture of the whole object
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    assert ViewSet.read(tmp_path).mesh().region is None


def test_files_outside_the_viewset_are_refused(tmp_path):
    vs, _ = _write_small_viewset(tmp_path)
    v = vs.views[0]
    v.files["colour"] = "../../etc/passwd"
    with pytest.raises(ViewSetFormatError, match="outside"):
        vs.load(v, "colour")
