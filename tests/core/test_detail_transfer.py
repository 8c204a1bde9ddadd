"""Detail transfer: what a bake blurs away of the original comes back, mapped like the edit maps colours."""

import numpy as np
import pytest

from blender_addon.core.bake.detail_transfer import transfer_detail
from blender_addon.core.errors import InvalidInputError
from blender_addon.core.bake.uv_raster import rasterise_uv

from .test_bake import FRONT, quad_mesh

SIZE = 64


@pytest.fixture(scope="module")
def surface():
    return rasterise_uv(quad_mesh([(FRONT, (0.0, 0.0, 1.0, 1.0))]), SIZE)


def _blur(surface, values: np.ndarray) -> np.ndarray:
    """A 5 x 5 box blur in texture space (what a bake from coarse views does to a texture), per texel."""
    img = np.zeros((SIZE, SIZE, values.shape[1]))
    img[surface.rows, surface.cols] = values
    padded = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode="edge")
    out = sum(padded[dy:dy + SIZE, dx:dx + SIZE] for dy in range(5) for dx in range(5)) / 25.0
    return out[surface.rows, surface.cols].astype(np.float32)


def _detailed(surface, seed: int) -> np.ndarray:
    """A texture with one-texel detail on a smooth gradient, linear values in 0.05..0.6."""
    rng = np.random.default_rng(seed)
    smooth = 0.1 + 0.3 * surface.uv[:, :1] * np.array([[1.0, 0.5, 0.2]])
    return (smooth + rng.uniform(0.0, 0.2, (len(surface.rows), 3))).astype(np.float32)


def test_a_colour_mapping_edit_gets_the_original_detail_back(surface):
    base = _detailed(surface, 0)
    mapping = np.array([[0.1, 0.7, 0.0], [0.0, 0.2, 0.8], [0.6, 0.0, 0.1]], np.float32)  # channels rotated
    truth = base @ mapping.T + np.float32(0.05)
    guide, value = _blur(surface, base), _blur(surface, truth)  # the bakes of the original and of the edit
    known = np.ones(len(base), bool)
    got = transfer_detail(surface, guide, value, base, known, ridge=1e-9)  # exact: no pull towards identity
    err = np.abs(got - truth).max()
    assert err < 1e-3, err
    # neither the bake alone nor the original plus the baked change has the edited texture's detail
    assert np.abs(value - truth).max() > 50 * err
    assert np.abs(base + value - guide - truth).max() > 50 * err


def test_detail_the_edit_adds_on_a_plain_original_is_kept_as_baked(surface):
    base = np.full((len(surface.rows), 3), 0.3, np.float32)
    pattern = _detailed(surface, 1)
    value = _blur(surface, pattern)
    got = transfer_detail(surface, base.copy(), value, base, np.ones(len(base), bool))
    assert np.allclose(got, value, atol=1e-6)


def test_only_known_texels_are_fitted(surface):
    base = _detailed(surface, 2)
    guide, value = _blur(surface, base), _blur(surface, base * np.float32(0.5))
    known = surface.uv[:, 0] < 0.5
    got = transfer_detail(surface, guide, value, base, known, ridge=1e-9)
    noisy = guide.copy(), value.copy()
    for a in noisy:
        a[~known] = np.random.default_rng(3).uniform(0, 1, ((~known).sum(), 3))
    got_noisy = transfer_detail(surface, noisy[0], noisy[1], base, known, ridge=1e-9)
    assert np.allclose(got[known], got_noisy[known], atol=1e-6)
    assert np.abs(got[known] - base[known] * 0.5).max() < 1e-3


def test_shapes_are_checked(surface):
    n = len(surface.rows)
    with pytest.raises(InvalidInputError, match="detail transfer"):
        transfer_detail(surface, np.zeros((n, 3)), np.zeros((n - 1, 3)), np.zeros((n, 3)), np.ones(n, bool))


def test_noise_of_mean_is_the_variance_of_each_texels_mean(surface):
    from blender_addon.core.bake.detail_transfer import noise_of_mean

    rng = np.random.default_rng(4)
    n = len(surface.rows)
    views = rng.integers(1, 6, n).astype(np.float64)
    variance = 0.01  # of one view's sample
    spread = variance * (views - 1.0) / views  # what the samples' spread about their mean is on average
    got = noise_of_mean(surface, spread, views, np.ones(n, bool))
    assert np.allclose(got, variance / views, rtol=1e-6)
    # texels seen once tell nothing of the spread, but get their window's noise
    assert got[views == 1].min() > 0.9 * variance
    # one view weighing far more than the others (n close to 1) still tells the spread, a little
    dominated = np.full(n, 1.1)
    got = noise_of_mean(surface, variance * (1.0 - 1.0 / dominated), dominated, np.ones(n, bool))
    assert np.allclose(got, variance / dominated, rtol=1e-6)
    # where a whole region is seen by one view only (under a pole of the rig), its noise is the texture's, not none
    left = surface.uv[:, 0] < 0.5
    views = np.where(left, 1.0, 3.0)
    got = noise_of_mean(surface, np.where(left, 0.0, variance * 2.0 / 3.0), views, np.ones(n, bool))
    assert np.allclose(got[left], variance, rtol=1e-6), (got[left].min(), got[left].max())
    assert np.allclose(got[~left], variance / 3.0, rtol=1e-6)


def test_noise_the_views_do_not_agree_on_is_dropped_and_detail_they_agree_on_kept(surface):
    rng = np.random.default_rng(5)
    n = len(surface.rows)
    base = _detailed(surface, 6)
    mapping = np.array([[0.1, 0.7, 0.0], [0.0, 0.2, 0.8], [0.6, 0.0, 0.1]], np.float32)
    truth = base @ mapping.T + np.float32(0.05)
    guide = _blur(surface, base)
    sigma = 0.02
    value = _blur(surface, truth) + rng.normal(0.0, sigma, (n, 3)).astype(np.float32)
    known = np.ones(n, bool)
    # windows of 24 x 24 texels, as at a 1024 texture (12 parameters fitted on enough texels to average the noise)
    kept = transfer_detail(surface, guide, value, base, known, tile=8, ridge=1e-9)
    filtered = transfer_detail(surface, guide, value, base, known, np.full(n, sigma**2, np.float32), tile=8,
                               ridge=1e-9)
    rms = lambda x: float(np.sqrt(np.mean((x - truth) ** 2)))  # noqa: E731
    assert rms(filtered) < 0.5 * rms(kept), (rms(filtered), rms(kept))  # measured: 0.32
    # an edit that paints a pattern the original does not have, which every view shows alike, stays as baked
    plain = np.full((n, 3), 0.3, np.float32)
    pattern = _blur(surface, _detailed(surface, 7))
    got = transfer_detail(surface, plain.copy(), pattern, plain, known, np.full(n, 1e-6, np.float32), tile=8)
    assert np.abs(got - pattern).max() < 0.05 * float(pattern.std()), np.abs(got - pattern).max()
