import numpy as np
import pytest
import torch
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

from backend.groupediting.coordinates import chain_coordinates
from backend.groupediting.correspondence import identity_offsets
from backend.groupediting.rope import grid_coordinates, rope_from_coordinates, rope_split


@pytest.mark.parametrize("head_dim,max_len,shape", [(12, 32, (3, 5, 7)), (128, 1024, (4, 33, 33)), (64, 64, (2, 9, 4))])
def test_grid_coordinates_equal_stock_table_exactly(head_dim, max_len, shape):
    f, h, w = shape
    stock = WanRotaryPosEmbed(head_dim, (1, 2, 2), max_len)
    cos, sin = stock(torch.zeros(1, 16, f, 2 * h, 2 * w))
    ours_cos, ours_sin = rope_from_coordinates(grid_coordinates(f, h, w), head_dim)
    assert ours_cos.shape == cos.shape == (1, f * h * w, 1, head_dim)
    assert torch.equal(ours_cos, cos) and torch.equal(ours_sin, sin)


def test_split_matches_diffusers():
    stock = WanRotaryPosEmbed(128, (1, 2, 2), 16)
    assert rope_split(128) == (stock.t_dim, stock.h_dim, stock.w_dim) == (44, 42, 42)


def test_zero_displacement_is_the_grid():
    coords = chain_coordinates((5, 6), np.zeros((2, 5, 6, 2), np.float32), np.zeros((3, 2)))
    assert np.array_equal(coords, grid_coordinates(3, 5, 6)[0].numpy())


def test_fractional_coordinates_interpolate_angles():
    grid = grid_coordinates(2, 3, 4)
    frac = grid + torch.tensor([0.0, 0.4, 0.7])
    cont_cos, _ = rope_from_coordinates(frac, 12)
    assert not torch.allclose(cont_cos, rope_from_coordinates(grid, 12)[0])
    # The first h channel pair rotates at frequency 1: angle = h exactly.
    t_dim = rope_split(12)[0]
    assert torch.allclose(cont_cos[0, :, 0, t_dim].double(), torch.cos(frac[0, :, 1].double()), atol=1e-6)


def test_batched_coordinates_and_bad_input():
    coords = torch.rand(2, 10, 3) * 8
    cos, sin = rope_from_coordinates(coords, 24)
    assert cos.shape == sin.shape == (2, 10, 1, 24)
    assert torch.allclose(cos**2 + sin**2, torch.ones_like(cos), atol=1e-6)
    with pytest.raises(ValueError):
        rope_from_coordinates(torch.zeros(10, 3), 24)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos[..., 0::2] - x2 * sin[..., 1::2]
    out[..., 1::2] = x1 * sin[..., 1::2] + x2 * cos[..., 0::2]
    return out


def test_attention_scores_depend_only_on_coordinate_differences():
    torch.manual_seed(0)
    q, k = torch.randn(1, 6, 1, 24, dtype=torch.float64), torch.randn(1, 6, 1, 24, dtype=torch.float64)
    coords = torch.rand(1, 6, 3) * 10
    shifted = coords + torch.tensor([1.0, -3.25, 7.5])
    s1 = torch.einsum("bqhd,bkhd->bqk", _rotate(q, *rope_from_coordinates(coords, 24, dtype=torch.float64)),
                      _rotate(k, *rope_from_coordinates(coords, 24, dtype=torch.float64)))
    s2 = torch.einsum("bqhd,bkhd->bqk", _rotate(q, *rope_from_coordinates(shifted, 24, dtype=torch.float64)),
                      _rotate(k, *rope_from_coordinates(shifted, 24, dtype=torch.float64)))
    assert torch.allclose(s1, s2, atol=1e-4)


def test_identity_rope_gives_a_moving_subject_the_same_phases():
    """The subject's box moves by (1, 2) tokens from view 0 to view 1; its points keep their h/w phases."""
    size, grid = (64, 96), (4, 6)
    masks = [np.zeros(size, bool), np.zeros(size, bool)]
    masks[0][16:48, 16:48] = True  # box corner at token (1, 1)
    masks[1][32:64, 48:80] = True  # box corner at token (2, 3)
    offsets = identity_offsets(masks, [grid, grid])
    assert np.allclose(offsets, [[1, 1], [2, 3]])
    coords = torch.from_numpy(chain_coordinates(grid, np.zeros((1, *grid, 2), np.float32), offsets))[None]
    cos, sin = rope_from_coordinates(coords, 24)
    t_dim = rope_split(24)[0]
    h, w = grid
    for da, db in [(0, 0), (0, 1), (1, 0), (1, 1)]:  # points inside the subject, relative to its corner
        i0 = 0 * h * w + (1 + da) * w + (1 + db)
        i1 = 1 * h * w + (2 + da) * w + (3 + db)
        assert torch.equal(cos[0, i0, 0, t_dim:], cos[0, i1, 0, t_dim:])
        assert torch.equal(sin[0, i0, 0, t_dim:], sin[0, i1, 0, t_dim:])
    # Without the offsets the phases differ.
    plain_cos, _ = rope_from_coordinates(grid_coordinates(2, h, w), 24)
    assert not torch.equal(plain_cos[0, 1 * w + 1, 0, t_dim:], plain_cos[0, h * w + 2 * w + 3, 0, t_dim:])


def test_identity_offsets_in_token_units_for_unaligned_boxes():
    m = np.zeros((64, 64), bool)
    m[10:30, 24:40] = True
    off = identity_offsets([m, np.zeros((64, 64), bool)], [(4, 4), (4, 4)])
    assert np.allclose(off, [[10 / 16, 24 / 16], [0, 0]])
