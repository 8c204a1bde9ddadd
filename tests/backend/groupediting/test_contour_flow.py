"""The release's Ge-RoPE flow from masks alone: a thin-plate spline between mask contours."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.groupediting.contour_flow import bilinear_taps, chain_flows, largest_contour, tps_displacement

SIZE = 256
YY, XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)


def transform(angle: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(2, 3) similarity about the image centre: p -> A p + t (pixels, x right, y down)."""
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    return np.array([[scale * c, -scale * s, shift[0]], [scale * s, scale * c, shift[1]]])


def blob(tf: np.ndarray) -> np.ndarray:
    """An asymmetric blob (an ellipse with a notch and a foot) moved by ``tf``."""
    p = np.stack([XX, YY], -1) - SIZE / 2
    a = tf[:, :2]
    q = (p - tf[:, 2]) @ np.linalg.inv(a).T
    x, y = q[..., 0], q[..., 1]
    m = (x / 70) ** 2 + (y / 38) ** 2 <= 1
    m &= ~((x > 20) & (x < 40) & (y < -10))
    m |= (x > -80) & (x < -50) & (y > 10) & (y < 50)
    return m


def fitted_similarity(mask: np.ndarray, flow: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Angle (degrees), scale and translation of the least-squares affine map p -> p + flow over the mask."""
    ys, xs = np.nonzero(mask)
    x = np.stack([xs - SIZE / 2, ys - SIZE / 2, np.ones(len(xs))], 1)
    y = x[:, :2] + np.stack([flow[0][ys, xs], flow[1][ys, xs]], 1)
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    m = coef[:2].T
    return float(np.degrees(np.arctan2(m[1, 0] - m[0, 1], m[0, 0] + m[1, 1]))), \
        float(np.sqrt(abs(np.linalg.det(m)))), coef[2]


def test_a_shift_is_recovered_exactly_inside_the_mask_and_zero_outside():
    a, b = blob(transform()), blob(transform(shift=(9, -6)))
    flow = tps_displacement(a, b)
    assert np.allclose(flow[0][a], 9, atol=0.02) and np.allclose(flow[1][a], -6, atol=0.02)  # float32
    assert not flow[:, ~a].any()


@pytest.mark.parametrize("angle, scale, shift", [(12, 1.0, (0, 0)), (-30, 1.0, (0, 0)), (0, 1.15, (0, 0)),
                                                 (0, 0.8, (0, 0)), (8, 1.1, (5, 3))])
def test_rotation_and_scale_are_recovered_as_a_whole(angle, scale, shift):
    """The spline through nearest-point matches is noisy pixel by pixel (the release blurs it by 11 tokens), but
    the motion it describes over the mask is the true one."""
    a, b = blob(transform()), blob(transform(angle, scale, shift))
    got_angle, got_scale, got_shift = fitted_similarity(a, tps_displacement(a, b))
    assert abs(got_angle - angle) < 1.0
    assert abs(got_scale / scale - 1) < 0.1
    assert np.abs(got_shift - shift).max() < 1.5


def test_principal_axis_signs_do_not_mirror_the_match():
    """A 15 % scale flips the first principal axis of this blob in the SVD; taking the SVD's signs as they come (the
    release) would match the contour to its mirror image and give a flow tens of pixels off."""
    a, b = blob(transform()), blob(transform(scale=1.15))
    flow = tps_displacement(a, b)
    p = np.stack([XX, YY], -1) - SIZE / 2
    truth = np.moveaxis(p * 0.15, -1, 0)
    assert np.median(np.linalg.norm((flow - truth)[:, a], axis=0)) < 6


def test_empty_masks_and_evaluation_only_where_asked():
    a, b = blob(transform()), blob(transform(shift=(4, 4)))
    assert not tps_displacement(a, np.zeros_like(b)).any()
    assert largest_contour(np.zeros((8, 8), bool)).shape == (0, 2)
    at = np.zeros_like(a)
    at[::16, ::16] = True
    sparse = tps_displacement(a, b, at=at)
    full = tps_displacement(a, b)
    assert np.allclose(sparse[:, at], full[:, at], atol=1e-4) and not sparse[:, ~at].any()


@pytest.mark.parametrize("size, grid", [((528, 528), (33, 33)), ((256, 320), (16, 20)), ((100, 60), (7, 3))])
def test_evaluating_only_the_resize_taps_leaves_the_resized_flow_unchanged(size, grid):
    m0 = np.zeros(size, bool)
    m0[size[0] // 5 : size[0] * 3 // 5, size[1] // 6 : size[1] // 2] = True
    m0[size[0] // 5 : size[0] // 3, size[1] // 6 : size[1] // 4] = False
    m1 = np.roll(m0, size[1] // 8, axis=1)
    sparse = chain_flows([m0, m1], grid)
    full = chain_flows([m0, m1])
    resize = lambda f: F.interpolate(torch.from_numpy(f), size=grid, mode="bilinear", align_corners=False)  # noqa
    assert torch.allclose(resize(sparse), resize(full), atol=1e-4)  # float32 rounding of the products
    taps = bilinear_taps(size[0], grid[0])
    assert len(taps) <= 2 * grid[0] and taps.max() < size[0]


def test_chain_is_consecutive_and_long_contours_are_thinned():
    masks = [blob(transform(shift=(6 * i, 0))) for i in range(3)]
    flows = chain_flows(masks)
    assert flows.shape == (2, 2, SIZE, SIZE)
    assert np.allclose(flows[1, 0][masks[1]], 6, atol=0.02)
    assert len(largest_contour(masks[0], max_points=100)) <= 100 < len(largest_contour(masks[0]))
    thinned = tps_displacement(masks[0], masks[1], max_points=100)
    assert np.allclose(thinned[0][masks[0]], 6, atol=0.05)
