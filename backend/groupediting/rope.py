"""Wan rotary position tables from arbitrary per-token coordinates.

Wan splits each attention head's channels into three rotary groups, time, height and width:
``h_dim = w_dim = 2 * (head_dim // 6)`` and ``t_dim = head_dim - h_dim - w_dim``. Within a group of ``d``
channels, channel pair ``k`` (channels ``2k`` and ``2k + 1``) rotates by the angle ``pos * theta ** (-2k / d)``.
diffusers' ``WanRotaryPosEmbed`` tabulates these angles for the integer positions ``0 .. max_seq_len - 1`` and
gathers them on the (frame, row, column) grid of the latent; :func:`rope_from_coordinates` computes the same
angles for any real-valued positions instead, so that a token may sit anywhere (warped by Ge-RoPE, shifted by
Identity-RoPE, or placed by hand as the geometry tokens are).

Coordinates are in *token units* of the post-patch grid: token (frame ``f``, row ``i``, column ``j``) of the
stock grid has coordinates ``(f, i, j)``.

The coordinates are used as real positions, ``angle = pos * freq``; on the integer grid the tables equal the
stock ones exactly. (The release indexes an integer frequency bank with floored coordinates: the recipes floor the
coordinates before they get here, :mod:`.coordinates`.)
"""

from __future__ import annotations

import torch


def rope_split(attention_head_dim: int) -> tuple[int, int, int]:
    """Channel counts ``(t_dim, h_dim, w_dim)`` of Wan's rotary groups for one head."""
    h_dim = w_dim = 2 * (attention_head_dim // 6)
    return attention_head_dim - h_dim - w_dim, h_dim, w_dim


def rope_from_coordinates(
    coords: torch.Tensor,
    attention_head_dim: int,
    theta: float = 10000.0,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary ``(cos, sin)`` tables for tokens at arbitrary ``(t, h, w)`` positions.

    Args:
        coords: ``(B, S, 3)`` float tensor, per-token ``(t, h, w)`` positions in token units (see module doc).
            ``B`` may be 1 to share one table across a batch (e.g. the two halves of classifier-free guidance).
        attention_head_dim: channels per attention head (``WanTransformer3DModel.config.attention_head_dim``).
        theta: RoPE base (Wan uses 10000).
        dtype: dtype of the returned tables. Angles are always computed in float64, as diffusers does.

    Returns:
        ``(freqs_cos, freqs_sin)``, each ``(B, S, 1, attention_head_dim)``, laid out exactly as diffusers'
        ``WanRotaryPosEmbed.forward`` returns them (each angle repeated for the two channels of its pair,
        groups concatenated t, h, w), so they can be passed as ``rotary_emb`` to ``WanAttnProcessor``.
        On the integer grid they equal the stock tables bit for bit.
    """
    if coords.ndim != 3 or coords.shape[-1] != 3:
        raise ValueError(f"coords must have shape (B, S, 3), got {tuple(coords.shape)}")
    pos = coords.to(torch.float64)
    cos_parts: list[torch.Tensor] = []
    sin_parts: list[torch.Tensor] = []
    for axis, dim in enumerate(rope_split(attention_head_dim)):
        if dim == 0:
            continue
        # Same expression and dtype as diffusers.models.embeddings.get_1d_rotary_pos_embed (float64 path).
        freqs = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim))
        angles = pos[..., axis, None] * freqs  # (B, S, dim / 2)
        cos_parts.append(angles.cos().repeat_interleave(2, dim=-1).float())
        sin_parts.append(angles.sin().repeat_interleave(2, dim=-1).float())
    freqs_cos = torch.cat(cos_parts, dim=-1).unsqueeze(2).to(dtype)
    freqs_sin = torch.cat(sin_parts, dim=-1).unsqueeze(2).to(dtype)
    return freqs_cos, freqs_sin


def grid_coordinates(
    num_frames: int, height: int, width: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """The stock grid as coordinates: ``(1, F*H*W, 3)`` float32, token order frame-major, then row, then column.

    This is the order in which ``WanTransformer3DModel`` flattens its patch embedding (``flatten(2)`` of
    ``(B, C, F, H, W)``), so ``rope_from_coordinates(grid_coordinates(F, H, W), d)`` equals ``rope(hidden_states)``.
    """
    if min(num_frames, height, width) <= 0:
        raise ValueError(f"grid sizes must be positive, got {(num_frames, height, width)}")
    f, h, w = torch.meshgrid(
        torch.arange(num_frames, dtype=torch.float32, device=device),
        torch.arange(height, dtype=torch.float32, device=device),
        torch.arange(width, dtype=torch.float32, device=device),
        indexing="ij",
    )
    return torch.stack([f, h, w], dim=-1).reshape(1, -1, 3)

