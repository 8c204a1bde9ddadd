"""Per-token coordinates as the recipes build them, checked against a literal transcription of the release's steps."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backend.errors import InvalidInput
from backend.groupediting.coordinates import (
    GroupLayout,
    chain_coordinates,
    geometry_token_coordinates,
    release_token_flow,
    rope_coordinates,
)
from backend.groupediting.recipe import RECIPES

from .test_pipeline import plane_geometry
from .tiny import moving_group


def release_reference(flows: np.ndarray, h: int, w: int) -> np.ndarray:
    """The release's ``model_fn_wan_video`` flow indexing, transcribed step by step: (N, h, w, 2) integer (row, col)
    positions, the last frame the plain grid."""
    flow = torch.from_numpy(flows).float()
    resized = F.interpolate(flow, size=(h, w), mode="bilinear", align_corners=False) / 16.0
    k, sigma = 21, 11
    kernel = torch.tensor([math.exp(-((i - (k // 2)) ** 2) / (2 * sigma**2)) for i in range(k)])
    kernel = kernel / kernel.sum()
    kernel2 = (kernel[:, None] * kernel[None, :])[None, None]
    for i in range(len(resized)):
        for c in range(2):
            resized[i, c] = F.conv2d(resized[i, c][None, None], kernel2, padding=k // 2)[0, 0]
    grid_h = torch.linspace(0, h - 1, h).view(1, h, 1).expand(1, h, w)
    grid_w = torch.linspace(0, w - 1, w).view(1, 1, w).expand(1, h, w)
    rows = [torch.clamp(grid_h + resized[i, 1], 0, h - 1).long() for i in range(len(resized))] + [grid_h.long()]
    cols = [torch.clamp(grid_w + resized[i, 0], 0, w - 1).long() for i in range(len(resized))] + [grid_w.long()]
    return torch.stack([torch.cat(rows), torch.cat(cols)], dim=-1).numpy()


@pytest.mark.parametrize("n, grid", [(4, (33, 33)), (3, (5, 7)), (2, (12, 20))])
def test_release_flow_indexing_equals_floor_clamp_of_the_blurred_grid(n, grid):
    h, w = grid
    rng = np.random.default_rng(n)
    flows = (rng.normal(0, 40, (n - 1, 2, 16 * h, 16 * w)) * (rng.random((n - 1, 1, 16 * h, 16 * w)) < 0.6))
    flows = flows.astype(np.float32)
    coords = chain_coordinates(grid, release_token_flow(flows, grid)).reshape(n, h, w, 3)
    assert np.array_equal(coords[..., 1:].astype(np.int64), release_reference(flows, h, w))
    assert np.array_equal(coords[..., 0], np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, h, w)))


def test_blur_pads_with_zeros_and_is_the_normalised_gaussian():
    grid = (9, 9)
    flows = np.zeros((1, 2, 144, 144), np.float32)
    flows[0, 0] = 16.0  # one token of dx everywhere
    out = release_token_flow(flows, grid)
    assert np.allclose(out[0, ..., 0], 0.0)  # dh
    centre, corner = out[0, 4, 4, 1], out[0, 0, 0, 1]
    assert corner < centre < 1.0  # zero padding pulls the borders (and, with a kernel wider than the grid, all) down
    kernel = np.exp(-((np.arange(21) - 10) ** 2) / 242.0)
    kernel /= kernel.sum()
    inside = kernel[6:15].sum()  # the 9 taps over the grid of a centre token
    assert np.isclose(centre, inside**2, atol=1e-6)


def test_chain_anchor_clamp_and_identity_range():
    d = np.full((1, 2, 3, 2), 5.7, np.float32)  # far off the grid
    c = chain_coordinates((2, 3), d).reshape(2, 2, 3, 3)
    assert np.array_equal(c[0, ..., 1], np.ones((2, 3))) and np.array_equal(c[0, ..., 2], np.full((2, 3), 2.0))
    assert np.array_equal(c[1, ..., 1:], np.stack(np.meshgrid(np.arange(2.0), np.arange(3.0), indexing="ij"), -1))
    o = np.array([[1.0, 2.0], [0.5, 0.5]])
    rel = chain_coordinates((2, 3), np.zeros((1, 2, 3, 2), np.float32), o).reshape(2, 2, 3, 3)
    assert np.array_equal(rel[0, 0, 0, 1:], [-1.0, -2.0]) and np.array_equal(rel[1, 1, 2, 1:], [0.0, 1.0])
    with pytest.raises(InvalidInput, match="offsets"):
        chain_coordinates((2, 3), d, np.zeros((3, 2)))
    with pytest.raises(InvalidInput, match="displacements"):
        chain_coordinates((2, 3), np.zeros((1, 3, 3, 2), np.float32))


def _masks(n: int, size: int = 64) -> list[np.ndarray]:
    out = []
    for i in range(n):
        m = np.zeros((size, size), bool)
        m[12 + 3 * i : 40 + 3 * i, 10 + 4 * i : 36 + 4 * i] = True
        out.append(m)
    return out


def test_recipes_pick_their_flow_and_branches():
    layout = GroupLayout(((64, 64),) * 2, (64, 64))
    masks = _masks(2)
    release = rope_coordinates(RECIPES["release"], layout, masks)
    assert release.flow_source == "contours" and release.main is None and release.vace.shape == (2 * 16, 3)
    grid = rope_coordinates(RECIPES["grid"], layout, masks)
    assert (grid.main, grid.vace, grid.flow_source) == (None, None, "none")
    exact_no_positions = rope_coordinates(RECIPES["exact"], layout, masks)
    assert exact_no_positions.flow_source == "contours"
    assert np.array_equal(exact_no_positions.vace, release.vace)  # photos fall back to the release recipe
    exact = rope_coordinates(RECIPES["exact"], layout, masks, plane_geometry(2))
    assert exact.flow_source == "positions" and exact.main is None
    paper = rope_coordinates(RECIPES["paper"], layout, masks, plane_geometry(2))
    assert paper.flow_source == "positions" and np.array_equal(paper.main, paper.vace)
    boxed = rope_coordinates(RECIPES["paper"], layout, masks)  # Identity-RoPE from the masks' boxes
    assert boxed.flow_source == "contours" and boxed.main[:, 1:].min() < 0


def test_contour_flow_moves_tokens_along_the_subject():
    """A blob moving 6 tokens right between two 528 px views: the release recipe moves view 0's subject tokens right
    (the heavy blur spreads and shrinks the move, floor keeps whole tokens), never left; the last view is the
    anchor."""
    images, masks = moving_group(2, 528, 96)
    layout = GroupLayout(((528, 528),) * 2, (528, 528))
    coords = rope_coordinates(RECIPES["release"], layout, masks).vace.reshape(2, 33, 33, 3)
    grid = np.stack(np.meshgrid(np.arange(33.0), np.arange(33.0), indexing="ij"), -1)
    moved = coords[0, ..., 1:] - grid
    assert moved[..., 1].max() >= 2 and moved[..., 1].min() >= 0 and np.abs(moved[..., 0]).max() <= 1
    assert moved[14:18, 8:12, 1].mean() >= 1.5  # the subject's middle
    assert np.array_equal(coords[1, ..., 1:], grid)


def test_geometry_token_coordinates():
    g = geometry_token_coordinates(4, (33, 33), 4)
    assert g.shape == (4 * 37 * 37, 3) and g[:, 0].max() == 3 and g[:, 1].max() == 32
    assert np.array_equal(np.unique(g[:, 0]), [0, 1, 2, 3])
    assert np.array_equal(g[:37, 2], np.round(np.linspace(0, 32, 37)))


def test_identity_rope_boxes_what_is_edited():
    """Identity-RoPE takes each view's box from the job's masks (an edit region's where the capture has one), not
    from the whole subject the position pass shows: the anchor view's coordinates are the grid minus its box corner."""
    layout = GroupLayout(((64, 64),) * 2, (64, 64))  # 4 x 4 tokens
    region = [np.zeros((64, 64), bool) for _ in range(2)]
    for m in region:
        m[32:, 16:] = True  # the lower right: box corner at token (2, 1)
    coords = rope_coordinates(RECIPES["paper"], layout, region, plane_geometry(2)).main.reshape(2, 4, 4, 3)
    grid = np.stack(np.meshgrid(np.arange(4.0), np.arange(4.0), indexing="ij"), -1)
    assert np.array_equal(coords[1, ..., 1:], grid - np.array([2.0, 1.0]))
