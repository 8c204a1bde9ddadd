import math

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKLWan

from backend.errors import InvalidInput
from backend.groupediting.budget import budget_sizes, fit_to_budget, restore_sizes
from backend.groupediting.conditioning import (
    FILL_GREY,
    decode_views,
    dilate_mask,
    encode_views,
    fit_latent_rgb,
    latent_preview,
    prepare_frames,
    unshuffle_mask,
    vace_context,
)

from .tiny import TINY_VAE, synthetic_group


@pytest.fixture(scope="module")
def vae() -> AutoencoderKLWan:
    torch.manual_seed(0)
    return AutoencoderKLWan(**TINY_VAE).eval()


def test_dilation_is_the_releases_ellipse():
    """The release dilates with cv2.getStructuringElement(MORPH_ELLIPSE, (11, 11)): rows of half-widths
    0, 3, 4, 5, 5, 5, 5, 5, 4, 3, 0 (the Euclidean disk would have 0, 3, 4, 4, 4, 5, 4, 4, 4, 3, 0)."""
    m = np.zeros((21, 21), bool)
    m[10, 10] = True
    d = dilate_mask(m, 5)
    half = [int(row.sum()) // 2 for row in d[5:16]]
    assert half == [0, 3, 4, 5, 5, 5, 5, 5, 4, 3, 0]
    assert d[10, 15] and d[5, 10] and d[8, 15] and not d[14, 14]
    assert np.array_equal(dilate_mask(m, 0), m)
    edge = np.zeros((8, 8), bool)
    edge[0, 0] = True
    assert dilate_mask(edge, 2).sum() == 7  # one quadrant of the 5 x 5 ellipse: nothing wraps or reflects


def test_prepare_frames_fills_the_dilated_region_with_grey():
    images, masks = synthetic_group(3)
    video, mask = prepare_frames(images, masks, dilation=5)
    assert video.shape == (1, 3, 3, 64, 64) and mask.shape == (1, 1, 3, 64, 64)
    for n in range(3):
        d = dilate_mask(masks[n], 5)
        assert torch.equal(mask[0, 0, n].bool(), torch.from_numpy(d))
        grey = FILL_GREY / 127.5 - 1.0
        assert torch.allclose(video[0, :, n][:, torch.from_numpy(d)], torch.tensor(grey))
        assert torch.allclose(video[0, :, n][:, ~torch.from_numpy(d)],
                              torch.from_numpy(images[n][~d].T.astype(np.float32) / 127.5 - 1.0))
    with pytest.raises(InvalidInput):
        prepare_frames(images, masks[:2])


def test_n_views_make_n_latent_frames_each_encoded_alone(vae):
    images, masks = synthetic_group(5)
    video, _ = prepare_frames(images, masks)
    with torch.no_grad():
        latents = encode_views(vae, video)
        alone = [encode_views(vae, video[:, :, n : n + 1]) for n in range(5)]
        as_video = vae.encode(video).latent_dist.mode()  # the causal VAE compresses 4 frames into one
    assert latents.shape == (1, 16, 5, 8, 8)
    assert as_video.shape[2] == 2
    for n in range(5):
        assert torch.allclose(latents[:, :, n], alone[n][:, :, 0], atol=1e-5)
    with torch.no_grad():
        decoded = decode_views(vae, latents)
    assert decoded.shape == (1, 3, 5, 64, 64) and decoded.abs().max() <= 1.0


def test_mask_unshuffle_layout():
    mask = torch.rand(1, 1, 2, 16, 24)
    out = unshuffle_mask(mask)
    assert out.shape == (1, 64, 2, 2, 3)
    for a, b, n, i, j in [(0, 0, 0, 0, 0), (3, 5, 1, 1, 2), (7, 7, 0, 1, 1)]:
        assert out[0, a * 8 + b, n, i, j] == mask[0, 0, n, 8 * i + a, 8 * j + b]


def test_vace_context_has_96_channels_per_view(vae):
    images, masks = synthetic_group(2)
    video, mask = prepare_frames(images, masks)
    with torch.no_grad():
        context, inactive = vace_context(vae, video, mask)
    assert context.shape == (1, 96, 2, 8, 8)
    assert torch.equal(context[:, :16], inactive)
    assert torch.equal(context[:, 32:], unshuffle_mask(mask))  # no temporal resize: one mask per view


def test_latent_rgb_preview_fits_its_own_conditioning(vae):
    images, masks = synthetic_group(2)
    video, mask = prepare_frames(images, masks)
    with torch.no_grad():
        latents = encode_views(vae, video)
    w = fit_latent_rgb(latents, video)
    previews = latent_preview(latents, w)
    assert len(previews) == 2 and previews[0].shape == (8, 8, 3) and previews[0].dtype == np.uint8
    target = torch.nn.functional.avg_pool2d(video[0].transpose(0, 1), 8)
    approx = torch.from_numpy(np.stack(previews)).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert (approx - target).abs().mean() < (target - target.mean()).abs().mean()


@pytest.mark.parametrize(
    "sizes,budget,expected",
    [
        ([(528, 528)] * 4, 4 * 528 * 528, [(528, 528)] * 4),
        ([(1024, 1024)] * 4, 1024 * 1024, [(512, 512)] * 4),
        ([(1080, 1920)], 1024 * 1024, [(768, 1360)]),  # s = 0.7111: 768.0 -> 768, 1365.3 -> 1360
        ([(100, 100)] * 2, 2 * 64 * 64, [(64, 64)] * 2),
    ],
)
def test_budget_sizes(sizes, budget, expected):
    out = budget_sizes(sizes, budget)
    assert all(h % 16 == 0 and w % 16 == 0 for h, w in out)
    assert sum(h * w for h, w in out) <= budget
    assert out == expected


def test_budget_rounding_is_nearest_multiple_then_shrinks_to_fit():
    # 3 x 300 x 300 at a budget of 3 * 256²: s = 0.8533, 256.0 -> 256 exactly.
    assert budget_sizes([(300, 300)] * 3, 3 * 256 * 256) == [(256, 256)] * 3
    # 2 x 200 x 200 at 2 * 100²: s = 0.5, 100 -> nearest 96 (6.25 -> 6); fits, so it stays 96.
    assert budget_sizes([(200, 200)] * 2, 2 * 100 * 100) == [(96, 96)] * 2
    # 1 x 110 x 110 at 104²: s = 0.945, 104 -> 6.5 rounds up to 112 (too big), shrinks until 96 fits.
    s = math.sqrt(104 * 104 / (110 * 110))
    assert 16 * math.floor(110 * s / 16 + 0.5) == 112
    assert budget_sizes([(110, 110)], 104 * 104) == [(96, 96)]
    # Mixed sizes share one scale: ratios are kept up to the rounding.
    mixed = budget_sizes([(400, 400), (200, 400), (800, 600)], 3 * 256 * 256)
    assert abs(mixed[2][0] / mixed[0][0] - 2.0) < 0.1 and abs(mixed[1][1] / mixed[1][0] - 2.0) < 0.2
    # No upscaling when asked.
    assert budget_sizes([(64, 80)], 4 * 528 * 528, allow_upscale=False) == [(64, 80)]
    with pytest.raises(InvalidInput):
        budget_sizes([(64, 64)] * 4, 100)


def test_fit_to_budget_and_back_keeps_sizes_and_order():
    images, masks = synthetic_group(2)
    images.append(np.zeros((50, 90, 3), np.uint8))
    masks.append(np.ones((50, 90), bool))
    small, small_masks, sizes = fit_to_budget(images, masks, 3 * 32 * 32)
    assert [im.shape[:2] for im in small] == sizes == [m.shape for m in small_masks]
    back = restore_sizes(small, [im.shape[:2] for im in images])
    assert [b.shape for b in back] == [im.shape for im in images]
