"""Bake core on synthetic scenes ray-cast in numpy: UV rasterisation, exact visibility, fill."""

import numpy as np
import pytest

from blender_addon.core.bake.gather import BakeSettings, BakeView, bake
from blender_addon.core.bake.fill import push_pull
from blender_addon.core.format.cameras import Camera, Intrinsics, look_at
from blender_addon.core.bake.uv_raster import rasterise_uv, uv_layout_report
from blender_addon.core.format.viewset import MeshData


def quad_mesh(quads: list[tuple[np.ndarray, tuple[float, float, float, float]]]) -> MeshData:
    """Quads given by 4 world corners (counter-clockwise from the front) and a UV rectangle (u0, v0, u1, v1)."""
    pos, tris, uvs = [], [], []
    for corners, (u0, v0, u1, v1) in quads:
        base = len(pos)
        pos += list(corners)
        quv = [(u0, v0), (u1, v0), (u1, v1), (u0, v1)]
        for a, b, c in ((0, 1, 2), (0, 2, 3)):
            tris.append((base + a, base + b, base + c))
            uvs.append([quv[a], quv[b], quv[c]])
    t = np.array(tris, np.int32)
    mesh = MeshData(np.array(pos, float), t, np.array(uvs, np.float32), np.zeros((len(t), 3, 3), np.float32),
                    np.zeros(len(t), np.int32))
    n, _ = mesh.face_normals_and_areas()
    mesh.corner_normals[:] = n[:, None, :]
    return mesh


def raycast(mesh: MeshData, cam: Camera) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(position (H, W, 3), mask (H, W), uv (H, W, 2)) of the nearest hit per pixel centre (Moller-Trumbore)."""
    d = cam.pixel_rays().reshape(-1, 3)
    o = cam.centre
    best = np.full(len(d), np.inf)
    pos = np.zeros((len(d), 3))
    uvs = np.zeros((len(d), 2))
    for t_i, tri in enumerate(mesh.triangles):
        a, b, c = mesh.positions[tri]
        e1, e2 = b - a, c - a
        p = np.cross(d, e2)
        det = p @ e1
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / det
            s = o - a
            u = (p @ s) * inv
            q = np.cross(s, e1)
            v = (d @ q) * inv
            t = (q @ e2) * inv
        hit = (np.abs(det) > 1e-12) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0) & (t < best)
        best[hit] = t[hit]
        pos[hit] = o + d[hit] * t[hit, None]
        w = np.stack([1 - u - v, u, v], axis=1)[hit]
        uvs[hit] = w @ mesh.uvs[t_i]
    k = cam.intrinsics
    return pos.reshape(k.height, k.width, 3), np.isfinite(best).reshape(k.height, k.width), uvs.reshape(k.height, k.width, 2)


def checker(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (((np.floor(u * 8) + np.floor(v * 8)) % 2)[..., None] * np.array([200, 40, 40]) + 30).astype(np.uint8)


FRONT = np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1]], float)  # faces -Y
BACK = FRONT + [0.0, 1.0, 0.0]


def test_rasterise_covers_and_interpolates():
    mesh = quad_mesh([(FRONT, (0.0, 0.0, 1.0, 1.0))])
    s = rasterise_uv(mesh, 32)
    assert len(s.rows) == 32 * 32
    # texel centre UV (u, v) maps linearly onto the quad: x = 2u - 1, z = 2v - 1
    assert np.allclose(s.position[:, 0], 2 * s.uv[:, 0] - 1) and np.allclose(s.position[:, 2], 2 * s.uv[:, 1] - 1)
    assert np.allclose(s.normal, [0, -1, 0])
    assert np.allclose(s.uv_per_length, 0.5)
    half = rasterise_uv(quad_mesh([(FRONT, (0.0, 0.0, 0.5, 1.0))]), 32)
    assert half.covered[:, :16].all() and not half.covered[:, 16:].any()


def _view(mesh, eye, size=96, image_fn=None, fov=50.0):
    cam = Camera(Intrinsics.from_fov(fov, size, size), look_at(np.array(eye, float), np.zeros(3)))
    pos, mask, uv = raycast(mesh, cam)
    img = np.zeros((size, size, 3), np.uint8)
    img[mask] = (image_fn or (lambda uv: checker(uv[:, 0], uv[:, 1])))(uv[mask])
    return BakeView(cam, img, pos.astype(np.float32), mask, uv.astype(np.float32))


def test_round_trip_reproduces_the_texture():
    mesh = quad_mesh([(FRONT, (0.0, 0.0, 1.0, 1.0))])
    surface = rasterise_uv(mesh, 64)
    views = [_view(mesh, eye, size=160) for eye in ([0, -4, 0], [1.5, -3.5, 1.0], [-1.5, -3.5, -0.5])]
    res = bake(surface, views)
    expected = checker(surface.uv[:, 0], surface.uv[:, 1])
    got = res.texture[surface.rows, surface.cols]
    assert res.seen.mean() > 0.9
    seen = res.seen[surface.rows, surface.cols]
    # away from the checker's edges (where views blend neighbouring squares) it is exact to within rounding
    edge = (np.abs(surface.uv * 8 - np.round(surface.uv * 8)) < 0.2).any(axis=1)
    err = np.abs(got.astype(int) - expected.astype(int)).max(axis=1)
    assert np.percentile(err[seen & ~edge], 99) <= 2


def test_hidden_texels_are_never_painted_from_that_view():
    # BACK lies behind FRONT for a camera on -Y; BACK faces -Y too, so only occlusion can hide it
    mesh = quad_mesh([(FRONT, (0.0, 0.0, 0.5, 1.0)), (BACK * [1.5, 1, 1.5], (0.5, 0.0, 1.0, 1.0))])
    surface = rasterise_uv(mesh, 64)
    red = _view(mesh, [0, -4, 0], image_fn=lambda uv: np.tile([255, 0, 0], (len(uv), 1)).astype(np.uint8))
    res = bake(surface, [red], BakeSettings())
    back = surface.uv[:, 0] > 0.5
    back_pos = surface.position[back]
    hidden = (np.abs(back_pos[:, 0]) < 0.9) & (np.abs(back_pos[:, 2]) < 0.9)  # behind FRONT as seen from -Y
    assert hidden.sum() > 100
    seen = res.seen[surface.rows, surface.cols]
    assert not seen[back][hidden].any(), "a texel behind another part was painted from this view"
    visible_back = (np.abs(back_pos[:, 0]) > 1.3) | (np.abs(back_pos[:, 2]) > 1.3)  # well clear of FRONT
    assert seen[back][visible_back].mean() > 0.8, "parts of BACK that peek out are seen"


def _ramp_view(mesh, eye, size):
    """A view whose colour is a ramp in world x (continuous across any UV seam), with normals."""
    v = _view(mesh, eye, size)
    v.image[v.mask] = np.round(np.clip(v.position[v.mask][:, :1] * 100 + 128, 0, 255) * [1, 1, 1]).astype(np.uint8)
    v.normal = np.zeros_like(v.position)
    v.normal[v.mask] = [0.0, -1.0, 0.0]
    return v


def test_taps_cross_uv_seams_on_smooth_surface_only():
    # one flat plane cut in two UV islands at x = 0; seen at a low resolution, texels along the cut need
    # the pixels beyond it. The colour runs on smoothly across the cut, so those pixels are right to use.
    left = np.array([[-1, 0, -1], [0, 0, -1], [0, 0, 1], [-1, 0, 1]], float)
    mesh = quad_mesh([(left, (0.0, 0.0, 0.3, 1.0)), (left + [1.0, 0, 0], (0.7, 0.0, 1.0, 1.0))])
    surface = rasterise_uv(mesh, 128)
    with_normals = [_ramp_view(mesh, eye, 32) for eye in ([0, -4, 0], [0.7, -3.8, 0.5])]
    without = [BakeView(v.camera, v.image, v.position, v.mask, v.uv) for v in with_normals]
    expected = np.clip(surface.position[:, 0] * 100 + 128, 0, 255)
    near_cut = np.abs(surface.position[:, 0]) < 0.05
    errors = []
    for views in (with_normals, without):
        res = bake(surface, views)
        got = res.texture[surface.rows, surface.cols][:, 0].astype(float)
        errors.append(np.abs(got - expected)[near_cut].mean())
    assert errors[0] < 0.5 * errors[1], errors
    # folded into a crease the pixels beyond the cut show another surface: normals keep them out
    folded = quad_mesh([(left, (0.0, 0.0, 0.45, 1.0)),
                        (np.array([[0, 0, -1], [0, 1, -1], [0, 1, 1], [0, 0, 1]], float), (0.55, 0.0, 1.0, 1.0))])
    fs = rasterise_uv(folded, 128)
    eye = [2.5, -2.5, 0.3]
    a = bake(fs, [_ramp_view(folded, eye, 40)])
    plain = _ramp_view(folded, eye, 40)
    b = bake(fs, [BakeView(plain.camera, plain.image, plain.position, plain.mask, plain.uv)])
    assert np.array_equal(a.texture, b.texture)


def test_best_view_mode_with_sharp_views():
    # a long lens: pixel densities (f / z)^2 whose 8th power overflows float32 unless scaled first
    mesh = quad_mesh([(FRONT, (0.0, 0.0, 1.0, 1.0))])
    surface = rasterise_uv(mesh, 64)
    cam_views = [_view(mesh, eye, size=128, fov=5.0) for eye in ([0, -4, 0], [0.3, -4, 0.2])]
    assert (cam_views[0].camera.intrinsics.fx / 4.0) ** 16 > 1e39  # (f / z)^2, to the 8th, beyond float32
    blend = bake(surface, cam_views)
    best = bake(surface, cam_views, BakeSettings(mode="best"))
    seen = best.seen
    assert seen.sum() > 50 and np.array_equal(seen, blend.seen)
    assert np.abs(best.texture.astype(int) - blend.texture.astype(int))[seen].max() <= 40  # same colours, sharper choice
    expected = np.zeros_like(best.texture)
    expected[surface.rows, surface.cols] = checker(surface.uv[:, 0], surface.uv[:, 1])
    assert np.median(np.abs(best.texture.astype(int) - expected.astype(int)).max(axis=2)[seen]) <= 2


def test_output_has_no_empty_texel():
    mesh = quad_mesh([(FRONT, (0.1, 0.1, 0.4, 0.9))])  # small island: most of the texture is gutter
    res = bake(rasterise_uv(mesh, 48), [_view(mesh, [0, -4, 0], image_fn=lambda uv: np.tile([10, 200, 90], (len(uv), 1)).astype(np.uint8))])
    assert (np.abs(res.texture.astype(int) - [10, 200, 90]) <= 1).all()


def test_push_pull_fills_from_sparse_samples():
    rng = np.random.default_rng(0)
    colour = np.zeros((37, 53, 3))
    weight = (rng.random((37, 53)) < 0.02).astype(float)
    colour[weight > 0] = [0.25, 0.5, 0.75]
    out = push_pull(colour, weight)
    assert np.allclose(out, [0.25, 0.5, 0.75])


def test_settings_are_checked():
    with pytest.raises(Exception, match="blend"):
        BakeSettings(mode="paint").validate()
    with pytest.raises(Exception, match="cosine"):
        BakeSettings(seam_cos=18.0).validate()
    with pytest.raises(Exception, match="edge_px"):
        BakeSettings(edge_px=0).validate()


def test_mirrored_uvs_are_detected():
    # two quads side by side in 3D, the right one's UVs mirrored onto the left one's island
    right = FRONT + [2.0, 0.0, 0.0]
    single = quad_mesh([(FRONT, (0.0, 0.0, 0.5, 1.0)), (right, (0.5, 0.0, 1.0, 1.0))])
    mirrored = quad_mesh([(FRONT, (0.0, 0.0, 0.5, 1.0)), (right, (0.5, 0.0, 0.0, 1.0))])
    ok = uv_layout_report(single, rasterise_uv(single, 32))
    assert not ok.overlapping and ok.shared_share == 0 and ok.flipped_share == 0
    bad_surface = rasterise_uv(mirrored, 32)
    bad = uv_layout_report(mirrored, bad_surface)
    assert bad.overlapping and bad.shared_share > 0.9 and bad.flipped_share == pytest.approx(0.5)
    assert "mirrored" in bad.message()
    # one material's triangles alone are fine
    alone = rasterise_uv(mirrored, 32, triangles=np.array([0, 1]))
    assert not uv_layout_report(mirrored, alone, np.array([0, 1])).overlapping
    assert alone.covered[:, :16].all() and not alone.covered[:, 16:].any()


def test_a_texture_is_redrawn_on_another_uv_map():
    from blender_addon.core.bake.restyle import transfer_texture

    right = FRONT + [2.0, 0.0, 0.0]
    apart = quad_mesh([(FRONT, (0.0, 0.0, 0.5, 1.0)), (right, (0.5, 0.0, 1.0, 1.0))])
    mirrored = quad_mesh([(FRONT, (0.0, 0.0, 0.5, 1.0)), (right, (0.5, 0.0, 0.0, 1.0))])
    surface = rasterise_uv(apart, 64)
    # the rasterised layout's own UVs, interpolated at the texels, are the texel centres
    assert np.allclose(surface.corner_values(apart.uvs), surface.uv, atol=1e-6)
    # a texture drawn on the mirrored layout: a ramp in u over its one island
    ramp = np.tile(np.linspace(0.0, 1.0, 32)[None, :, None], (64, 1, 3)) * np.array([1.0, 0.5, 0.25])
    old = np.zeros((64, 64, 3))
    old[:, :32] = ramp
    new = transfer_texture(old, surface, mirrored.uvs)
    assert new.shape == (64, 64, 3) and np.isfinite(new).all()
    # left quad: the same texels; right quad: the ramp mirrored (both places keep their own colour)
    assert np.allclose(new[:, 2:30], old[:, 2:30], atol=1e-5)
    assert np.allclose(new[:, 34:62], old[:, 29:1:-1], atol=1e-5)
    with pytest.raises(Exception, match="capture again"):
        surface.corner_values(mirrored.uvs[:1])


def test_dilate_grows_islands_ring_by_ring():
    from blender_addon.core.bake.fill import dilate

    colour = np.zeros((9, 9, 1))
    known = np.zeros((9, 9), bool)
    colour[4, 4], known[4, 4] = 5.0, True
    colour[4, 6], known[4, 6] = 1.0, True
    out, grown = dilate(colour, known, 1)
    assert grown[3:6, 3:8].all() and grown.sum() == 15
    assert out[4, 5, 0] == pytest.approx(3.0) and out[3, 3, 0] == 5.0 and out[4, 7, 0] == 1.0
    out, grown = dilate(colour, known, 20)
    assert grown.all() and out[4, 4, 0] == 5.0
