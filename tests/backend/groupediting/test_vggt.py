"""Our VGGT aggregator: checkpoint names and loading, its 2-D RoPE, the release's preprocessing, token shapes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from backend.errors import InvalidInput, ModelNotReady
from backend.groupediting.geometry_tokens import TokenCache, compute_geometry_tokens, vggt_image
from backend.groupediting.vggt import AggregatorConfig, VGGTAggregator, load_vggt_aggregator, rope_2d
from backend.viewdata import token_array

from .tiny import TINY_VGGT, save_tiny_vggt, tiny_vggt

BLOCK = ["norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
         "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
         "mlp.fc2.bias", "ls2.gamma"]
QK_NORM = ["attn.q_norm.weight", "attn.q_norm.bias", "attn.k_norm.weight", "attn.k_norm.bias"]


def vggt_names(depth: int, trunk_depth: int) -> set[str]:
    """The aggregator's tensor names as VGGT's code lays them out (``aggregator.py``, ``vision_transformer.py``,
    ``layers/block.py``, ``layers/attention.py``), written out here independently of our module."""
    names = {"camera_token", "register_token", "patch_embed.cls_token", "patch_embed.pos_embed",
             "patch_embed.register_tokens", "patch_embed.mask_token", "patch_embed.patch_embed.proj.weight",
             "patch_embed.patch_embed.proj.bias", "patch_embed.norm.weight", "patch_embed.norm.bias"}
    names |= {f"patch_embed.blocks.{i}.{n}" for i in range(trunk_depth) for n in BLOCK}
    names |= {f"{kind}.{i}.{n}" for kind in ("frame_blocks", "global_blocks") for i in range(depth)
              for n in BLOCK + QK_NORM}
    return names


def test_state_dict_names_and_shapes_are_vggts():
    model = VGGTAggregator(AggregatorConfig(depth=2, trunk_depth=1, embed_dim=64, head_dim=16, mlp_hidden=128))
    sd = model.state_dict()
    assert set(sd) == vggt_names(2, 1)
    assert sd["camera_token"].shape == (1, 2, 1, 64) and sd["register_token"].shape == (1, 2, 4, 64)
    assert sd["patch_embed.pos_embed"].shape == (1, 1 + 37 * 37, 64)
    assert sd["patch_embed.patch_embed.proj.weight"].shape == (64, 3, 14, 14)
    assert sd["frame_blocks.0.attn.q_norm.weight"].shape == (16,)
    full = AggregatorConfig()
    assert (full.num_heads, full.special_tokens, full.grid) == (16, 5, 37)


def test_tiny_checkpoint_loads_completely_and_skips_the_heads(tmp_path: Path):
    path = save_tiny_vggt(tmp_path / "VGGT-1B" / "model.safetensors", seed=3)
    loaded = load_vggt_aggregator(path.parent)  # a folder holding model.safetensors
    assert loaded.config == TINY_VGGT
    reference = tiny_vggt(seed=3)
    for name, value in reference.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name
    cache = tmp_path / "hub" / "snapshots" / "abc123"
    cache.mkdir(parents=True)
    (cache / "model.safetensors").write_bytes(path.read_bytes())
    assert load_vggt_aggregator(tmp_path / "hub").config == TINY_VGGT  # a Hugging Face cache folder


def test_a_missing_or_unexpected_tensor_is_refused_by_name(tmp_path: Path):
    tensors = load_file(str(save_tiny_vggt(tmp_path / "full.safetensors")))
    missing = dict(tensors)
    del missing["aggregator.global_blocks.1.attn.k_norm.bias"]
    save_file(missing, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ModelNotReady, match=r"1 missing \(first: aggregator\.global_blocks\.1\.attn\.k_norm\.bias\)"):
        load_vggt_aggregator(tmp_path / "missing.safetensors")
    extra = dict(tensors, **{"aggregator.frame_blocks.0.attn.extra": torch.zeros(2)})
    save_file(extra, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ModelNotReady, match="unexpected .*aggregator.frame_blocks.0.attn.extra"):
        load_vggt_aggregator(tmp_path / "extra.safetensors")
    save_file({"depth_head.x": torch.zeros(1)}, str(tmp_path / "heads.safetensors"))
    with pytest.raises(ModelNotReady, match="no 'aggregator"):
        load_vggt_aggregator(tmp_path / "heads.safetensors")
    with pytest.raises(ModelNotReady, match="does not exist"):
        load_vggt_aggregator(tmp_path / "nowhere")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelNotReady, match="not a readable"):
        load_vggt_aggregator(tmp_path / "junk.safetensors")


def reference_rope(tokens: torch.Tensor, positions: torch.Tensor, base: float = 100.0) -> torch.Tensor:
    """VGGT's ``RotaryPositionEmbedding2D`` as its code computes it: an integer table of (cos, sin) looked up by
    ``F.embedding``, vertical half then horizontal half, ``x cos + rotate_half(x) sin``."""
    dim = tokens.shape[-1] // 2
    inv = 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
    angles = torch.einsum("i,j->ij", torch.arange(int(positions.max()) + 1).float(), inv)
    angles = torch.cat((angles, angles), dim=-1)
    cos, sin = angles.cos(), angles.sin()

    def one(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        c = torch.nn.functional.embedding(pos, cos)[:, None]
        s = torch.nn.functional.embedding(pos, sin)[:, None]
        x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
        return x * c + torch.cat((-x2, x1), dim=-1) * s

    v, h = tokens.chunk(2, dim=-1)
    return torch.cat([one(v, positions[..., 0]), one(h, positions[..., 1])], dim=-1)


def test_rope_2d_equals_vggts_table_lookup():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 11, 16, generator=g)
    pos = torch.randint(0, 38, (2, 11, 2), generator=g)
    assert torch.allclose(rope_2d(x, pos, 100.0), reference_rope(x, pos), atol=1e-6)


def test_aggregator_forward_shapes_special_tokens_and_positions():
    model = tiny_vggt()
    images = torch.rand(1, 3, 3, 518, 518, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(images)
    assert out.shape == (1, 3, 5 + 37 * 37, 2 * TINY_VGGT.embed_dim)
    pos = model.positions(1, torch.device("cpu"))[0]
    assert pos[:5].abs().sum() == 0 and pos[5].tolist() == [1, 1] and pos[-1].tolist() == [37, 37]
    with torch.no_grad():
        swapped = model(images[:, [1, 0, 2]])  # the first view has its own camera token: order matters
    assert not torch.allclose(swapped[0, 1], out[0, 0])
    with pytest.raises(ValueError, match="518"):
        model(torch.rand(1, 2, 3, 224, 224))


def test_release_preprocessing_white_outside_the_mask_and_padded():
    img = np.full((300, 200, 3), 40, np.uint8)
    keep = np.zeros((300, 200), bool)
    keep[100:200, 50:150] = True
    x = vggt_image(img, keep)
    assert x.shape == (3, 518, 518)
    new_w = round(200 * (518 / 300) / 14) * 14  # longest side 518, the other a multiple of 14
    pad = (518 - new_w) // 2
    assert torch.all(x[:, :, :pad] == 1.0) and torch.all(x[:, :, pad + new_w:] == 1.0)  # white padding
    assert torch.all(x[:, 5:100, pad + 5 : pad + new_w - 5] == 1.0)  # white outside the mask
    assert torch.allclose(x[:, 259, 259], torch.full((3,), 40 / 255), atol=1e-6)  # the view inside it


def test_geometry_tokens_drop_the_special_tokens_and_are_cached():
    model = tiny_vggt()
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (64, 80, 3), np.uint8) for _ in range(2)]
    keep = [np.ones((64, 80), bool)] * 2
    tokens = compute_geometry_tokens(model, images, keep)
    assert tokens.shape == (1, 2 * 37 * 37, 2 * TINY_VGGT.embed_dim) and tokens.dtype == torch.float32
    with torch.no_grad():
        full = model(torch.stack([vggt_image(im, k) for im, k in zip(images, keep)])[None])
    assert torch.equal(tokens[0, :1369], full[0, 0, 5:])
    cache, calls = TokenCache(size=1), []
    hook = model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        first = cache.get(model, images, keep)
        assert cache.get(model, images, keep) is first and len(calls) == 1
        cache.get(model, images[::-1], keep)
        cache.get(model, images, keep)
        assert len(calls) == 3  # evicted by the other order
    finally:
        hook.remove()


@pytest.mark.parametrize("shape", [(1, 3, 1374, 8), (3, 1374, 8), (1, 3, 1369, 8), (3 * 1369, 8), (1, 3 * 1374, 8)])
def test_release_token_arrays_of_any_layout(shape):
    a = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    out = token_array(a, 3)
    per_view = a.reshape(3, -1, 8)
    assert out.shape == (3 * 1369, 8) and np.array_equal(out.reshape(3, 1369, 8), per_view[:, -1369:])


def test_bad_token_arrays_are_refused():
    for bad, message in ((np.zeros((1, 2, 1374, 8)), "do not fit 3 views"), (np.zeros((3, 100, 8)), "do not fit"),
                         (np.zeros((3, 1369, 8), np.int64), "finite floats"),
                         (np.full((3, 1369, 8), np.nan), "finite floats")):
        with pytest.raises(InvalidInput, match=message):
            token_array(bad, 3)
