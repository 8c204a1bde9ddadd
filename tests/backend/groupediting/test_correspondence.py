"""Ge-RoPE correspondence on a synthetic scene: a textured plane z = 0 and a small square occluder above it,
ray-cast from two known OpenCV cameras (pixel centres at +0.5)."""

import numpy as np
import pytest

from backend.errors import InvalidInput
from blender_addon.core.format.cameras import look_at
from backend.groupediting.coordinates import chain_coordinates
from backend.groupediting.correspondence import (
    ViewGeometry,
    exact_chain_displacements,
    identity_offsets,
    masked_blur,
    pixel_correspondence,
    project,
)

PLANE_HALF = 1.0  # the plane is the square |x|, |y| <= 1 at z = 0
OCCLUDER = (0.45, 0.25)  # a square |x|, |y| <= 0.25 at z = 0.45


def intrinsics(f: float, h: int, w: int) -> np.ndarray:
    return np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]])


def render(K: np.ndarray, c2w: np.ndarray, size: tuple[int, int], occluder: bool = True) -> ViewGeometry:
    """Ray-cast the scene: world position at every pixel centre and the object mask."""
    h, w = size
    j, i = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    d_cam = np.stack([(j - K[0, 2]) / K[0, 0], (i - K[1, 2]) / K[1, 1], np.ones_like(j)], -1)
    d = d_cam @ c2w[:3, :3].T
    c = c2w[:3, 3]
    best = np.full((h, w), np.inf)
    pos = np.zeros((h, w, 3))
    surfaces = [(0.0, PLANE_HALF)] + ([OCCLUDER] if occluder else [])
    for z0, half in surfaces:
        s = (z0 - c[2]) / d[..., 2]
        p = c + s[..., None] * d
        hit = (s > 0) & (np.abs(p[..., 0]) <= half) & (np.abs(p[..., 1]) <= half) & (s < best)
        best[hit] = s[hit]
        pos[hit] = p[hit]
    mask = np.isfinite(best)
    return ViewGeometry(pos.astype(np.float32), mask, K, c2w)


def plane_homography(K: np.ndarray, c2w: np.ndarray) -> np.ndarray:
    """World plane z = 0, (X, Y, 1) -> homogeneous pixel coordinates."""
    w2c = np.linalg.inv(c2w)
    return K @ w2c[:3][:, [0, 1, 3]]


def occluded_in(c2w: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether the segment from the camera to each plane point crosses the occluder."""
    c = c2w[:3, 3]
    z0, half = OCCLUDER
    s = (z0 - c[2]) / (points[..., 2] - c[2])
    p = c + s[..., None] * (points - c)
    return (s > 0) & (s < 1) & (np.abs(p[..., 0]) <= half) & (np.abs(p[..., 1]) <= half)


def near(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels within ``r`` (Chebyshev) of a change of ``mask``."""
    edge = np.zeros_like(mask)
    for di in range(-r, r + 1):
        for dj in range(-r, r + 1):
            edge |= mask != np.roll(np.roll(mask, di, 0), dj, 1)
    return edge


SIZE = (128, 128)
K = intrinsics(150.0, *SIZE)
CAM_T = look_at((0.4, -2.6, 2.2), np.zeros(3))
CAM_R = look_at((-1.1, -2.3, 2.4), np.zeros(3))


@pytest.fixture(scope="module")
def scene() -> tuple[ViewGeometry, ViewGeometry]:
    return render(K, CAM_T, SIZE), render(K, CAM_R, SIZE)


def test_project_matches_opencv_convention():
    c2w = look_at((0.0, -3.0, 0.0), np.zeros(3))
    uv, z = project(np.array([[0.0, 0.0, 0.0], [0.3, 0.0, -0.3]]), K, c2w)
    assert np.allclose(uv[0], [64, 64]) and np.isclose(z[0], 3.0)
    assert uv[1, 0] > 64 and uv[1, 1] > 64  # +x world is image right, -z world (down) is image down


def test_displacement_matches_the_plane_homography_and_excludes_occluded_points(scene):
    src, ref = scene
    uv, valid = pixel_correspondence(src, ref, tolerance_px=2.0)
    h_rt = plane_homography(K, CAM_R) @ np.linalg.inv(plane_homography(K, CAM_T))
    j, i = np.meshgrid(np.arange(SIZE[1]) + 0.5, np.arange(SIZE[0]) + 0.5)
    q = np.stack([j, i, np.ones_like(j)], -1) @ h_rt.T
    expected = q[..., :2] / q[..., 2:]

    on_plane = src.mask & (np.abs(src.position[..., 2]) < 1e-6)
    hidden = on_plane & occluded_in(CAM_R, src.position.astype(np.float64))
    u, v = expected[..., 0], expected[..., 1]
    in_ref = (u >= 0) & (u < SIZE[1]) & (v >= 0) & (v < SIZE[0])
    visible = on_plane & in_ref & ~hidden
    assert hidden.sum() > 50 and visible.sum() > 3000  # the scene exercises both cases

    # Where kept, the landing point is the analytic projection: Δ = H(p) - p.
    kept = valid & on_plane
    assert np.abs(uv[kept] - expected[kept]).max() < 2e-3
    # Occluded points are excluded, visible ones kept (up to the occluder's 2 px silhouette band in the reference).
    band = near(visible, 2)
    assert not (valid & hidden & ~band).any()
    assert (valid[visible & ~band]).all()
    # Background has no correspondence.
    assert not valid[~src.mask].any()


def test_token_field_is_the_mean_pixel_displacement_in_token_units(scene):
    src, ref = scene
    grid = (8, 8)  # 16 px per token
    fields = exact_chain_displacements([src, ref], [grid, grid], sigma=0.0)
    assert len(fields) == 1  # a chain of two views: one field, the last view is the anchor
    uv, valid = pixel_correspondence(src, ref)
    j, i = np.meshgrid(np.arange(SIZE[1]) + 0.5, np.arange(SIZE[0]) + 0.5)
    d_px = np.stack([uv[..., 1] - i, uv[..., 0] - j], -1)  # (dv, du) = (dh, dw) in pixels
    full = fields[0].weight == 1.0
    assert full.sum() >= 10
    for a, b in zip(*np.nonzero(full)):
        block = d_px[16 * a : 16 * a + 16, 16 * b : 16 * b + 16].reshape(-1, 2)
        assert np.allclose(fields[0].delta[a, b], block.mean(0) / 16.0, atol=1e-4)
    # Tokens without subject carry no displacement.
    no_subject = np.array([[not src.mask[16 * a : 16 * a + 16, 16 * b : 16 * b + 16].any() for b in range(8)]
                           for a in range(8)])
    assert np.all(fields[0].delta[no_subject] == 0)


def test_chain_points_each_view_to_the_next(scene):
    src, ref = scene
    third = render(K, look_at((1.6, -1.9, 2.3), np.zeros(3)), SIZE)
    fields = exact_chain_displacements([src, ref, third], [(8, 8)] * 3, sigma=0.0)
    alone = [exact_chain_displacements(pair, [(8, 8)] * 2, sigma=0.0)[0] for pair in ([src, ref], [ref, third])]
    assert len(fields) == 2
    for f, g in zip(fields, alone):
        assert np.array_equal(f.delta, g.delta)


def test_token_units_with_different_view_sizes(scene):
    src, _ = scene
    ref_size = (96, 160)
    k_ref = intrinsics(120.0, *ref_size)
    ref = render(k_ref, CAM_R, ref_size)
    grids = [(8, 8), (6, 10)]
    field = exact_chain_displacements([src, ref], grids, sigma=0.0)[0]
    uv, valid = pixel_correspondence(src, ref)
    a, b = np.argwhere(field.weight == 1.0)[0]
    sl = (slice(16 * a, 16 * a + 16), slice(16 * b, 16 * b + 16))
    target_h = uv[sl][..., 1] * 6 / 96 - 0.5
    target_w = uv[sl][..., 0] * 10 / 160 - 0.5
    own_h = (np.arange(128)[sl[0]] + 0.5)[:, None] * 8 / 128 - 0.5
    own_w = (np.arange(128)[sl[1]] + 0.5)[None, :] * 8 / 128 - 0.5
    assert np.allclose(field.delta[a, b], [(target_h - own_h).mean(), (target_w - own_w).mean()], atol=1e-4)


def test_masked_normalised_blur_keeps_constant_fields_and_zero_background():
    values = np.zeros((6, 7, 2))
    weight = np.zeros((6, 7))
    values[1:5, 2:6], weight[1:5, 2:6] = (0.75, -1.5), 1.0
    weight[2, 3] = 0.25  # partially valid token
    out = masked_blur(values, weight, sigma=1.5)
    inside = weight > 0
    assert np.allclose(out[inside], (0.75, -1.5))
    assert np.allclose(masked_blur(values, weight, sigma=0.0)[inside], (0.75, -1.5))


def test_blur_smooths_and_box_relative_fields(scene):
    src, ref = scene
    sharp = exact_chain_displacements([src, ref], [(8, 8)] * 2, sigma=0.0)[0]
    smooth = exact_chain_displacements([src, ref], [(8, 8)] * 2, sigma=2.0)[0]
    subject = sharp.weight > 0

    def roughness(d: np.ndarray) -> float:
        return float(np.abs(np.diff(d, axis=0))[subject[1:]].mean())

    assert roughness(smooth.delta) <= roughness(sharp.delta)
    o = identity_offsets([src.mask, ref.mask], [(8, 8)] * 2)
    rel = exact_chain_displacements([src, ref], [(8, 8)] * 2, sigma=0.0, offsets=o)[0]
    full = sharp.weight == 1.0
    assert np.allclose(rel.delta[full], sharp.delta[full] - (o[1] - o[0]), atol=1e-5)


def test_bad_geometry_is_invalid_input(scene):
    src, ref = scene
    with pytest.raises(InvalidInput, match="offsets"):
        exact_chain_displacements([src, ref], [(8, 8)] * 2, offsets=np.zeros((3, 2)))
    with pytest.raises(InvalidInput, match="token grids"):
        exact_chain_displacements([src, ref], [(8, 8)])
    bad = ViewGeometry(src.position[:, :10], src.mask, K, CAM_T)
    with pytest.raises(InvalidInput, match="position"):
        exact_chain_displacements([bad, ref], [(8, 8)] * 2)


def test_corresponding_tokens_share_ge_rope_coordinates():
    """Two views of a fronto-parallel plane, the camera moved so that content shifts 1.5 tokens (24 px) right."""
    k = intrinsics(64.0, 64, 64)
    views = []
    for cam_x in (0.0, -0.75):  # f * 0.75 / depth 2 = 24 px
        c2w = np.eye(4)
        c2w[0, 3] = cam_x
        j, i = np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5)
        pos = np.stack([(j - 32) * 2 / 64 + cam_x, (i - 32) * 2 / 64, np.full_like(j, 2.0)], -1)
        views.append(ViewGeometry(pos.astype(np.float32), np.ones((64, 64), bool), k, c2w))
    fields = exact_chain_displacements(views, [(4, 4)] * 2, sigma=1.0)
    assert np.allclose(fields[0].delta, [0.0, 1.5], atol=1e-5)  # also the unmatched last columns, filled by the blur
    coords = chain_coordinates((4, 4), np.stack([f.delta for f in fields])).reshape(2, 4, 4, 3)
    # floor(b + 1.5) = b + 1: token b of view 0 takes the coordinates of its point's token b + 1 in view 1.
    assert np.array_equal(coords[0, :, :-1, 1:], coords[1, :, 1:, 1:])
    assert np.array_equal(coords[1, ..., 2], np.broadcast_to(np.arange(4.0), (4, 4)))  # the anchor keeps the grid
