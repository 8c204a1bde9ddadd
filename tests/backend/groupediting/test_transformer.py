import numpy as np
import pytest
import torch
from diffusers import WanVACETransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttnProcessor

from backend.groupediting.coordinates import chain_coordinates
from backend.groupediting.rope import grid_coordinates, rope_from_coordinates
from backend.groupediting.transformer import GeometryRotary, GroupEditingAttnProcessor, GroupEditingTransformer

from .tiny import TINY_TRANSFORMER, tiny_transformer

F_, H_, W_ = 3, 8, 10  # latent frames and size: a 4 x 5 token grid per frame


def _inputs(batch: int = 2, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return dict(
        hidden_states=torch.randn(batch, 16, F_, H_, W_, generator=g),
        timestep=torch.full((batch,), 700.0),
        encoder_hidden_states=torch.randn(batch, 7, 32, generator=g),
        control_hidden_states=torch.randn(batch, 96, F_, H_, W_, generator=g),
    )


def _run(model: torch.nn.Module, **kw: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(**_inputs(), **kw, return_dict=False)[0]


@pytest.fixture(scope="module")
def models() -> tuple[GroupEditingTransformer, WanVACETransformer3DModel]:
    ours = tiny_transformer()
    stock = WanVACETransformer3DModel(**TINY_TRANSFORMER).eval()
    stock.load_state_dict(ours.state_dict())
    return ours, stock


def test_state_dict_names_are_the_stock_ones(models):
    ours, stock = models
    assert list(ours.state_dict()) == list(stock.state_dict())


def test_without_coordinates_output_equals_stock_exactly(models):
    ours, stock = models
    assert torch.equal(_run(ours), _run(stock))


def test_grid_and_zero_displacement_coordinates_equal_stock(models):
    ours, stock = models
    expected = _run(stock)
    grid = grid_coordinates(F_, H_ // 2, W_ // 2)
    assert torch.equal(_run(ours, rope_coords=grid, vace_rope_coords=grid), expected)
    zero = torch.from_numpy(chain_coordinates((H_ // 2, W_ // 2), np.zeros((F_ - 1, 4, 5, 2), np.float32)))[None]
    assert torch.equal(_run(ours, rope_coords=zero, vace_rope_coords=zero), expected)


def test_branch_coordinates_act_separately_and_only_relatively(models):
    ours, _ = models
    base = _run(ours)
    noise = torch.randn(1, F_ * 20, 3, generator=torch.Generator().manual_seed(0))
    warped = grid_coordinates(F_, H_ // 2, W_ // 2) + 0.3 * noise
    vace_only = _run(ours, vace_rope_coords=warped)
    main_only = _run(ours, rope_coords=warped, vace_rope_coords=grid_coordinates(F_, H_ // 2, W_ // 2))
    assert not torch.allclose(vace_only, base) and not torch.allclose(main_only, base)
    assert not torch.allclose(vace_only, main_only)
    # A constant shift of every coordinate changes no attention score.
    shift = torch.tensor([2.0, -1.5, 3.25])
    shifted = _run(ours, rope_coords=warped + shift, vace_rope_coords=warped + shift)
    assert torch.allclose(_run(ours, rope_coords=warped, vace_rope_coords=warped), shifted, atol=1e-4)


def test_geometry_keys_values_equal_concatenate_then_slice():
    """The processor's extra K/V path equals the release: append tokens, full self-attention, drop them."""
    model = tiny_transformer()
    attn = model.blocks[1].attn1
    g = torch.Generator().manual_seed(3)
    b, s, n_geo, dim = 2, 20, 9, 24
    x = torch.randn(b, s, dim, generator=g)
    geometry = torch.randn(1, n_geo, dim, generator=g)
    coords = torch.rand(1, s, 3, generator=g) * 4
    geo_coords = torch.rand(1, n_geo, 3, generator=g) * 4
    cos, sin = rope_from_coordinates(coords, 12)
    gcos, gsin = rope_from_coordinates(geo_coords, 12)
    with torch.no_grad():
        ours = GroupEditingAttnProcessor()(attn, x, rotary_emb=GeometryRotary(cos, sin, geometry, gcos, gsin))
        joint = torch.cat([x, geometry.expand(b, -1, -1)], dim=1)
        reference = WanAttnProcessor()(attn, joint, None, None, (torch.cat([cos, gcos], 1), torch.cat([sin, gsin], 1)))
        plain = GroupEditingAttnProcessor()(attn, x, rotary_emb=(cos, sin))
        stock = WanAttnProcessor()(attn, x, None, None, (cos, sin))
    assert torch.allclose(ours, reference[:, :s], atol=1e-6)
    assert torch.equal(plain, stock)
    assert not torch.allclose(ours, plain)
    # Fused projections give the same keys and values.
    attn.fuse_projections()
    with torch.no_grad():
        fused = GroupEditingAttnProcessor()(attn, x, rotary_emb=GeometryRotary(cos, sin, geometry, gcos, gsin))
    attn.unfuse_projections()
    assert torch.allclose(fused, ours, atol=1e-6)


def test_geometry_tokens_through_the_model(models):
    ours, _ = models
    g = torch.Generator().manual_seed(5)
    tokens = torch.randn(1, 2 * 9, 40, generator=g)  # 40 channels, resized to the width (24) without parameters
    coords = torch.from_numpy(np.stack(np.meshgrid([0, 2], np.arange(3), np.arange(3), indexing="ij"), -1)
                              .reshape(-1, 3).astype(np.float32))[None]
    out = _run(ours, geometry_tokens=tokens, geometry_coords=coords)
    assert out.shape == _run(ours).shape and not torch.allclose(out, _run(ours))
    with pytest.raises(ValueError, match="together"):
        _run(ours, geometry_tokens=tokens)


def test_save_and_load_roundtrip(tmp_path):
    model = tiny_transformer()
    model.save_pretrained(tmp_path)
    loaded = GroupEditingTransformer.from_pretrained(tmp_path)
    assert isinstance(loaded.blocks[0].attn1.processor, GroupEditingAttnProcessor)
    assert torch.equal(_run(loaded), _run(model))


def test_bad_coordinates():
    with pytest.raises(ValueError, match="rope_coords"):
        _run(tiny_transformer(), rope_coords=torch.zeros(1, 7, 3))
