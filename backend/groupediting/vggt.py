"""VGGT's aggregator, written from its public description, for the GroupEditing geometry tokens.

Only the aggregator is needed (the release feeds its last layer to the DiT); the camera, depth, point and track
heads are not built. Parameter names are VGGT's own, so the ``aggregator.*`` tensors of ``facebook/VGGT-1B``'s
``model.safetensors`` load without renaming (:func:`load_vggt_aggregator`):

* ``patch_embed``: a DINOv2 ViT with registers (``dinov2_vitl14_reg`` for VGGT-1B): ``patch_embed.proj`` (conv
  14 x 14), ``cls_token``, ``pos_embed`` (for 518 x 518 input, 1 + 37²), ``register_tokens``, ``mask_token``,
  ``blocks.N`` (pre-norm blocks: ``norm1``, ``attn.qkv``, ``attn.proj``, ``ls1.gamma``, ``norm2``, ``mlp.fc1``,
  ``mlp.fc2``, ``ls2.gamma``; LayerNorm eps 1e-6), ``norm``; its normalised patch tokens are the aggregator's input.
  The trunk reuses the same block class as the aggregator (transformers' DINOv2-with-registers would need its own
  parameter names, which changed between transformers versions, and a split of the fused ``qkv``).
* ``frame_blocks.N`` / ``global_blocks.N``: the same blocks with ``attn.q_norm`` / ``attn.k_norm`` (LayerNorm over
  the head dimension) and 2-D rotary embeddings (base 100; y on the first half of each head, x on the second,
  rotate-half form); LayerNorm eps 1e-5. They alternate, frame attention (within each view) then global attention
  (across all views), ``depth`` times.
* ``camera_token`` (1, 2, 1, C) and ``register_token`` (1, 2, R, C): index 0 for the first view, 1 for the others;
  prepended to each view's patch tokens (``5 = 1 + R`` special tokens for VGGT-1B), position 0, patches at their
  (row + 1, column + 1).

Input: images (B, S, 3, H, W) in [0, 1] (normalised inside with ImageNet's mean and std), H = W = ``img_size``.
Output of :meth:`VGGTAggregator.forward`: the last layer's tokens, the frame and global attention outputs
concatenated, (B, S, 1 + R + P, 2C); P = (H / 14)², 2C = 2048 for VGGT-1B.

The architecture facts come from VGGT's public code (facebookresearch/vggt, ``aggregator.py``, ``layers/``) and
the release's copy of it; the code here is our own.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelNotReady
from .sources import DOCS, download_hint

logger = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Name prefix of the aggregator's tensors in VGGT's checkpoint.
PREFIX = "aggregator."


@dataclass(frozen=True)
class AggregatorConfig:
    """Shape of a VGGT aggregator (defaults: VGGT-1B). ``head_dim`` is shared by the trunk and the aggregator."""

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    trunk_depth: int = 24
    head_dim: int = 64
    mlp_hidden: int = 4096
    num_register_tokens: int = 4
    rope_base: float = 100.0

    @property
    def num_heads(self) -> int:
        return self.embed_dim // self.head_dim

    @property
    def special_tokens(self) -> int:
        """Camera + register tokens per view (5 for VGGT-1B)."""
        return 1 + self.num_register_tokens

    @property
    def grid(self) -> int:
        """Patches per side (37 for VGGT-1B)."""
        return self.img_size // self.patch_size


def rope_2d(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """VGGT's 2-D rotary embedding of ``x`` (B, heads, N, D) at integer ``positions`` (B, N, 2) = (y, x).

    The first half of each head's channels rotates with y, the second with x; within a half of ``d`` channels,
    frequency ``base ** (-2k / d)`` for k < d/2, laid out ``cat(angles, angles)`` and applied as
    ``x cos + rotate_half(x) sin`` with ``rotate_half(v) = cat(-v2, v1)``.
    """
    half = x.shape[-1] // 2
    inv_freq = 1.0 / (base ** (torch.arange(0, half, 2, device=x.device).float() / half))
    out = []
    for axis, part in enumerate(x.chunk(2, dim=-1)):
        angles = positions[..., axis].float()[..., None] * inv_freq  # (B, N, half / 2)
        angles = torch.cat([angles, angles], dim=-1)[:, None].to(x.dtype)  # (B, 1, N, half)
        p1, p2 = part.chunk(2, dim=-1)
        out.append(part * angles.cos() + torch.cat([-p2, p1], dim=-1) * angles.sin())
    return torch.cat(out, dim=-1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused ``qkv``, optional per-head LayerNorm on q and k, optional 2-D RoPE."""

    def __init__(self, dim: int, head_dim: int, qk_norm: bool, rope_base: float | None) -> None:
        super().__init__()
        self.heads, self.head_dim, self.rope_base = dim // head_dim, head_dim, rope_base
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if self.rope_base is not None and positions is not None:
            q, k = rope_2d(q, positions, self.rope_base), rope_2d(k, positions, self.rope_base)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with layer scales: ``x + ls1(attn(norm1(x)))``, then ``x + ls2(mlp(norm2(x)))``."""

    def __init__(self, config: AggregatorConfig, eps: float, qk_norm: bool, rope: bool) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, config.head_dim, qk_norm, config.rope_base if rope else None)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, config.mlp_hidden)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x), positions))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchProjection(nn.Module):
    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, config.embed_dim, config.patch_size, stride=config.patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DinoTrunk(nn.Module):
    """The DINOv2-with-registers ViT that embeds each image: returns its normalised patch tokens (B, P, C)."""

    def __init__(self, config: AggregatorConfig) -> None:
        super().__init__()
        c = config.embed_dim
        self.patch_embed = PatchProjection(config)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.grid**2, c))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, c))
        self.mask_token = nn.Parameter(torch.zeros(1, c))  # part of the checkpoint; unused at inference
        self.blocks = nn.ModuleList(Block(config, 1e-6, qk_norm=False, rope=False)
                                    for _ in range(config.trunk_depth))
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.num_register_tokens = config.num_register_tokens

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(images)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1), x], dim=1) + self.pos_embed
        x = torch.cat([x[:, :1], self.register_tokens.expand(len(x), -1, -1), x[:, 1:]], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 1 + self.num_register_tokens:]


class VGGTAggregator(nn.Module):
    """VGGT's aggregator (see the module doc); :meth:`forward` returns the last layer only."""

    def __init__(self, config: AggregatorConfig = AggregatorConfig()) -> None:
        super().__init__()
        self.config = config
        c, r = config.embed_dim, config.num_register_tokens
        self.patch_embed = DinoTrunk(config)
        self.frame_blocks = nn.ModuleList(Block(config, 1e-5, qk_norm=True, rope=True) for _ in range(config.depth))
        self.global_blocks = nn.ModuleList(Block(config, 1e-5, qk_norm=True, rope=True) for _ in range(config.depth))
        self.camera_token = nn.Parameter(torch.zeros(1, 2, 1, c))
        self.register_token = nn.Parameter(torch.zeros(1, 2, r, c))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        """Where the weights are (diffusers' pipelines ask their components)."""
        return self.camera_token.device

    @property
    def dtype(self) -> torch.dtype:
        return self.camera_token.dtype

    @staticmethod
    def _per_view(token: torch.Tensor, b: int, s: int) -> torch.Tensor:
        """(1, 2, X, C) -> (B*S, X, C): index 0 for the first view, 1 for the rest."""
        first = token[:, :1].expand(b, 1, *token.shape[2:])
        rest = token[:, 1:].expand(b, s - 1, *token.shape[2:])
        return torch.cat([first, rest], dim=1).reshape(b * s, *token.shape[2:])

    def positions(self, count: int, device: torch.device) -> torch.Tensor:
        """(count, special + P, 2) long: 0 for the special tokens, (row + 1, column + 1) for the patches."""
        g = self.config.grid
        yx = torch.cartesian_prod(torch.arange(g, device=device), torch.arange(g, device=device)) + 1
        special = torch.zeros(self.config.special_tokens, 2, dtype=yx.dtype, device=device)
        return torch.cat([special, yx])[None].expand(count, -1, -1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, S, 3, H, W) in [0, 1] -> the last layer's tokens (B, S, special + P, 2C)."""
        b, s, ch, h, w = images.shape
        size = self.config.img_size
        if ch != 3 or h != size or w != size:
            raise ValueError(f"images must be (B, S, 3, {size}, {size}), got {tuple(images.shape)}")
        x = ((images - self.mean) / self.std).reshape(b * s, 3, h, w)
        patches = self.patch_embed(x)
        tokens = torch.cat([self._per_view(self.camera_token, b, s), self._per_view(self.register_token, b, s),
                            patches], dim=1)
        p, c = tokens.shape[1:]
        pos = self.positions(b * s, images.device)
        frame = glob = tokens
        for frame_block, global_block in zip(self.frame_blocks, self.global_blocks):
            frame = frame_block(tokens.reshape(b * s, p, c), pos)
            glob = global_block(frame.reshape(b, s * p, c), pos.reshape(b, s * p, 2))
            tokens = glob
        return torch.cat([frame.reshape(b, s, p, c), glob.reshape(b, s, p, c)], dim=-1)


# ------------------------------------------------------------------------------------------------------ loading
def config_from_shapes(shapes: dict[str, tuple[int, ...]]) -> AggregatorConfig:
    """The aggregator's shape from its tensors' shapes (names without the ``aggregator.`` prefix)."""
    def count(prefix: str) -> int:
        return len({k.split(".")[len(prefix.split("."))] for k in shapes if k.startswith(prefix + ".")})

    try:
        embed = shapes["camera_token"][-1]
        patch = shapes["patch_embed.patch_embed.proj.weight"][-1]
        grid = math.isqrt(shapes["patch_embed.pos_embed"][1] - 1)
        return AggregatorConfig(
            img_size=grid * patch, patch_size=patch, embed_dim=embed, depth=count("frame_blocks"),
            trunk_depth=count("patch_embed.blocks"), head_dim=shapes["frame_blocks.0.attn.q_norm.weight"][0],
            mlp_hidden=shapes["frame_blocks.0.mlp.fc1.weight"][0],
            num_register_tokens=shapes["register_token"][2])
    except (KeyError, IndexError) as exc:
        raise ModelNotReady(f"not a VGGT checkpoint: no aggregator tensor {exc} (expected the "
                            f"'{PREFIX}*' tensors of facebook/VGGT-1B's model.safetensors; see {DOCS})") from exc


def find_vggt_file(path: str | Path) -> Path:
    """``model.safetensors`` from a file path, a folder holding it, or a Hugging Face cache folder of VGGT-1B."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    candidates = [p / "model.safetensors"] + sorted((p / "snapshots").glob("*/model.safetensors"), reverse=True)
    for c in candidates:
        if c.is_file():
            return c
    state = "does not exist" if not p.exists() else "holds no model.safetensors"
    raise ModelNotReady(f"--vggt {p} {state}. {download_hint('vggt')}", {"vggt": str(p)})


def load_vggt_aggregator(path: str | Path, device: str | torch.device = "cpu") -> VGGTAggregator:
    """The aggregator of a VGGT checkpoint (float32, eval mode, on ``device``), all or nothing.

    Reads only the ``aggregator.*`` tensors (the heads' are skipped). Every parameter must be present with its
    shape, and no unknown aggregator tensor may be: otherwise :class:`~backend.errors.ModelNotReady` names them.
    """
    from safetensors import safe_open

    file = find_vggt_file(path)
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            keys = [k for k in f.keys() if k.startswith(PREFIX)]
            shapes = {k[len(PREFIX):]: tuple(f.get_slice(k).get_shape()) for k in keys}
            if not shapes:
                raise ModelNotReady(f"{file} holds no '{PREFIX}*' tensors: is it VGGT's model.safetensors? "
                                    f"See {DOCS}")
            model = VGGTAggregator(config_from_shapes(shapes))
            expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
            missing = sorted(set(expected) - set(shapes))
            unexpected = sorted(set(shapes) - set(expected))
            wrong = sorted(f"{k}: file {shapes[k]} vs model {expected[k]}" for k in set(expected) & set(shapes)
                           if shapes[k] != expected[k])
            if missing or unexpected or wrong:
                parts = [f"{len(names)} {what} (first: {', '.join(names[:5])})" for what, names in
                         (("missing", [PREFIX + k for k in missing]), ("unexpected", [PREFIX + k for k in unexpected]),
                          ("of the wrong shape", wrong)) if names]
                raise ModelNotReady(f"{file} does not fit VGGT's aggregator: {'; '.join(parts)}. Download "
                                    f"facebook/VGGT-1B again; see {DOCS}",
                                    {"missing": missing[:10], "unexpected": unexpected[:10]})
            state = {k: f.get_tensor(PREFIX + k) for k in expected}
    except ModelNotReady:
        raise
    except Exception as exc:  # safetensors raises its own types for a damaged file
        raise ModelNotReady(f"{file} is not a readable safetensors file: {exc}. See {DOCS}") from exc
    model.load_state_dict(state, strict=True)
    logger.info("VGGT aggregator loaded from %s (%d tensors, width %d, depth %d)", file, len(state),
                model.config.embed_dim, model.config.depth)
    return model.float().eval().to(device)
