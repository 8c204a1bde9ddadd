"""The exports' own math: rotation to quaternion, Must3R's 4:3 padding, and the Sim(3) alignment of camera centres."""

import numpy as np
import pytest

from blender_addon.core.export.colmap import rotation_to_quaternion
from blender_addon.core.export.must3r import align_sim3, padding


def _rotation(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def test_quaternions_rebuild_their_rotations():
    rng = np.random.default_rng(1)
    for r in [_rotation(rng) for _ in range(200)] + [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0])]:
        w, x, y, z = rotation_to_quaternion(r)
        back = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                         [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                         [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
        assert np.abs(back - r).max() < 1e-12 and w >= 0


@pytest.mark.parametrize("w, h", [(512, 512), (512, 384), (640, 480), (300, 500), (1, 1), (1000, 200)])
def test_padding_makes_exactly_4_3_with_the_least_pixels(w, h):
    left, top, right, bottom = padding(w, h)
    width, height = w + left + right, h + top + bottom
    assert width * 3 == height * 4 and min(left, top, right, bottom) >= 0
    assert abs(left - right) <= 1 and abs(top - bottom) <= 1
    k = width // 4
    assert (k - 1) * 4 < w or (k - 1) * 3 < h, "a smaller 4:3 canvas would hold the image"


def test_sim3_recovers_a_known_similarity():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(12, 3))
    s, r, t = 0.37, _rotation(rng), rng.normal(size=3)
    got_s, got_r, got_t = align_sim3(points, s * points @ r.T + t)
    assert abs(got_s - s) < 1e-12 and np.abs(got_r - r).max() < 1e-12 and np.abs(got_t - t).max() < 1e-12
