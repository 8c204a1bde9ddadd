"""The GroupEditing transformer: Wan2.1-VACE with per-token RoPE coordinates and geometry tokens.

:class:`GroupEditingTransformer` subclasses diffusers' ``WanVACETransformer3DModel`` and adds no parameters:
its state dict has exactly the stock names (``patch_embedding.*``, ``vace_patch_embedding.*``,
``condition_embedder.*``, ``blocks.{i}.attn1.to_q.weight``, ``vace_blocks.{j}.proj_in.*``, ``proj_out.*``, ...), so
diffusers-format Wan2.1-VACE checkpoints load unchanged; the 1.3B and 14B models are only configs.

What it adds, all optional (with none of them, the output equals the stock model's bit for bit):

* ``rope_coords`` / ``vace_rope_coords``: per-token ``(t, h, w)`` coordinates (token units) for the main blocks and
  the VACE blocks separately; the rotary tables are built by :func:`~.rope.rope_from_coordinates`. Which coordinates
  each branch gets, and their rounding, is the recipe's business (:mod:`.recipe`, :mod:`.coordinates`).
* ``geometry_tokens`` ``(B, G, C_g)`` with ``geometry_coords`` ``(B, G, 3)``: in every *main* block's
  self-attention, after the block's norm and modulation, the tokens are resized on the channel axis to the model
  width by parameter-free linear interpolation, projected with the block's own ``to_k`` / ``to_v`` (plus
  ``norm_k`` and RoPE at their coordinates) and attended to as extra keys/values; no queries are computed for them.
  This equals the public release's "append to the sequence, attend, drop again" (a test checks it) at a
  fraction of the cost. VACE blocks do not see them (as in the release).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.transformers.transformer_wan_vace import WanVACETransformer3DModel
from diffusers.utils import apply_lora_scale

from .rope import grid_coordinates, rope_from_coordinates

logger = logging.getLogger(__name__)


class GeometryRotary(NamedTuple):
    """What a main block's self-attention receives as ``rotary_emb`` when geometry tokens are present.

    ``cos``/``sin``: (B|1, S, 1, D) tables of the latent tokens. ``geometry``: (B, G, inner_dim) tokens already
    resized to the model width. ``geometry_cos``/``geometry_sin``: (B|1, G, 1, D) their tables.
    """

    cos: torch.Tensor
    sin: torch.Tensor
    geometry: torch.Tensor
    geometry_cos: torch.Tensor
    geometry_sin: torch.Tensor


def _apply_rotary(x: torch.Tensor, freqs_cos: torch.Tensor, freqs_sin: torch.Tensor) -> torch.Tensor:
    """Wan's interleaved rotary on ``x`` (B, S, heads, D); the same arithmetic as diffusers' WanAttnProcessor."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    cos = freqs_cos[..., 0::2]
    sin = freqs_sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out.type_as(x)


class GroupEditingAttnProcessor:
    """Self-attention processor for the main blocks: stock Wan self-attention, plus geometry keys/values.

    With ``rotary_emb`` a plain ``(cos, sin)`` pair (or None) it computes exactly what ``WanAttnProcessor`` does
    for self-attention. With a :class:`GeometryRotary` it appends the geometry tokens' keys and values.
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: Any,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | GeometryRotary | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attn.add_k_proj is not None:
            raise ValueError("GroupEditingAttnProcessor handles self-attention only")
        if getattr(attn, "fused_projections", False):
            query, key, value = attn.to_qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        query = attn.norm_q(query).unflatten(2, (attn.heads, -1))
        key = attn.norm_k(key).unflatten(2, (attn.heads, -1))
        value = value.unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            query = _apply_rotary(query, rotary_emb[0], rotary_emb[1])
            key = _apply_rotary(key, rotary_emb[0], rotary_emb[1])

        parallel_config = self._parallel_config
        if isinstance(rotary_emb, GeometryRotary):
            geometry = rotary_emb.geometry.to(hidden_states.dtype)
            if geometry.shape[0] != hidden_states.shape[0]:
                geometry = geometry.expand(hidden_states.shape[0], -1, -1)
            if getattr(attn, "fused_projections", False):
                weight_kv = attn.to_qkv.weight.chunk(3, dim=0)
                bias_kv = attn.to_qkv.bias.chunk(3, dim=0)
                key_g = F.linear(geometry, weight_kv[1], bias_kv[1])
                value_g = F.linear(geometry, weight_kv[2], bias_kv[2])
            else:
                key_g, value_g = attn.to_k(geometry), attn.to_v(geometry)
            key_g = attn.norm_k(key_g).unflatten(2, (attn.heads, -1))
            value_g = value_g.unflatten(2, (attn.heads, -1))
            key_g = _apply_rotary(key_g, rotary_emb.geometry_cos, rotary_emb.geometry_sin)
            key = torch.cat([key, key_g], dim=1)
            value = torch.cat([value, value_g], dim=1)
            parallel_config = None  # the extra keys are not sharded with the sequence

        hidden_states = dispatch_attention_fn(
            query, key, value, attn_mask=attention_mask, dropout_p=0.0, is_causal=False,
            backend=self._attention_backend, parallel_config=parallel_config,
        )
        hidden_states = hidden_states.flatten(2, 3).type_as(query)
        hidden_states = attn.to_out[0](hidden_states)
        return attn.to_out[1](hidden_states)


class GroupEditingTransformer(WanVACETransformer3DModel):
    """``WanVACETransformer3DModel`` + per-branch RoPE coordinates + geometry keys/values (see module doc).

    The config is ``WanVACETransformer3DModel``'s, unchanged."""

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        vace_layers: list[int] = [0, 5, 10, 15, 20, 25, 30, 35],  # noqa: B006 (diffusers' default, never mutated)
        vace_in_channels: int = 96,
    ) -> None:
        super().__init__(
            patch_size=patch_size, num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim,
            in_channels=in_channels, out_channels=out_channels, text_dim=text_dim, freq_dim=freq_dim,
            ffn_dim=ffn_dim, num_layers=num_layers, cross_attn_norm=cross_attn_norm, qk_norm=qk_norm, eps=eps,
            image_dim=image_dim, added_kv_proj_dim=added_kv_proj_dim, rope_max_seq_len=rope_max_seq_len,
            pos_embed_seq_len=pos_embed_seq_len, vace_layers=vace_layers, vace_in_channels=vace_in_channels,
        )
        for block in self.blocks:
            block.attn1.set_processor(GroupEditingAttnProcessor())

    def _rotary(self, coords: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_from_coordinates(coords.to(device), self.config.attention_head_dim)

    @apply_lora_scale("attention_kwargs")
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.LongTensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        control_hidden_states: torch.Tensor | None = None,
        control_hidden_states_scale: torch.Tensor | None = None,
        rope_coords: torch.Tensor | None = None,
        vace_rope_coords: torch.Tensor | None = None,
        geometry_tokens: torch.Tensor | None = None,
        geometry_coords: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor | Transformer2DModelOutput | tuple[torch.Tensor]:
        """Denoise one step.

        Args:
            hidden_states: (B, C, F, H, W) noisy latents; F latent frames (one per view), H, W latent pixels.
            timestep: (B,) timesteps.
            encoder_hidden_states: (B, L, text_dim) text embeddings.
            encoder_hidden_states_image: unused by VACE checkpoints (kept for signature compatibility).
            control_hidden_states: (B, vace_in_channels, F, H, W) VACE context.
            control_hidden_states_scale: (len(vace_layers),) per-hint scales (default ones).
            rope_coords: (B|1, S, 3) main-branch token coordinates, S = F*(H/p_h)*(W/p_w), token order
                frame-major; None: the stock grid table (computed from grid coordinates, which is equal, when the
                grid is longer than ``rope_max_seq_len``).
            vace_rope_coords: (B|1, S, 3) VACE-branch coordinates; None: the main branch's table.
            geometry_tokens: (B|1, G, C_g) geometry tokens (any channel count), extra keys/values of the main blocks.
            geometry_coords: (B|1, G, 3) their coordinates (required with ``geometry_tokens``).
            return_dict, attention_kwargs: as in diffusers.

        Returns:
            (B, C, F, H, W) flow prediction (in a ``Transformer2DModelOutput`` unless ``return_dict`` is False).
        """
        batch_size, _, num_frames, height, width = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        post_f, post_h, post_w = num_frames // p_t, height // p_h, width // p_w
        seq_len = post_f * post_h * post_w
        if control_hidden_states is None:
            raise ValueError("control_hidden_states (the VACE context) is required")

        if control_hidden_states_scale is None:
            control_hidden_states_scale = control_hidden_states.new_ones(len(self.config.vace_layers))
        scales = torch.unbind(control_hidden_states_scale)
        if len(scales) != len(self.config.vace_layers):
            raise ValueError(f"control_hidden_states_scale has {len(scales)} entries, "
                             f"expected {len(self.config.vace_layers)} (one per VACE layer)")
        for name, coords in (("rope_coords", rope_coords), ("vace_rope_coords", vace_rope_coords)):
            if coords is not None and (coords.ndim != 3 or coords.shape[1:] != (seq_len, 3)
                                       or coords.shape[0] not in (1, batch_size)):
                raise ValueError(f"{name} must be (B or 1, {seq_len}, 3), got {tuple(coords.shape)}")
        if (geometry_tokens is None) != (geometry_coords is None):
            raise ValueError("geometry_tokens and geometry_coords must be given together")

        # 1. Rotary tables per branch.
        device = hidden_states.device
        if rope_coords is None and max(post_f, post_h, post_w) > self.config.rope_max_seq_len:
            rope_coords = grid_coordinates(post_f, post_h, post_w, device=device)  # beyond the stock table
        main_rotary = self.rope(hidden_states) if rope_coords is None else self._rotary(rope_coords, device)
        vace_rotary = main_rotary if vace_rope_coords is None else self._rotary(vace_rope_coords, device)
        block_rotary: tuple[torch.Tensor, ...] = main_rotary
        if geometry_tokens is not None:
            if geometry_tokens.ndim != 3 or geometry_coords.shape != (*geometry_tokens.shape[:2], 3):
                raise ValueError(f"geometry_tokens must be (B, G, C) and geometry_coords (B, G, 3); got "
                                 f"{tuple(geometry_tokens.shape)} and {tuple(geometry_coords.shape)}")
            inner_dim = self.config.num_attention_heads * self.config.attention_head_dim
            geometry = F.interpolate(geometry_tokens.to(device=device, dtype=torch.float32), size=inner_dim,
                                     mode="linear", align_corners=False).to(hidden_states.dtype)
            g_cos, g_sin = self._rotary(geometry_coords, device)
            block_rotary = GeometryRotary(main_rotary[0], main_rotary[1], geometry, g_cos, g_sin)

        # 2. Patch embeddings.
        hidden_states = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2)
        control = self.vace_patch_embedding(control_hidden_states).flatten(2).transpose(1, 2)
        padding = control.new_zeros(batch_size, hidden_states.size(1) - control.size(1), control.size(2))
        control = torch.cat([control, padding], dim=1)

        # 3. Time and text embeddings.
        temb, timestep_proj, encoder_hidden_states, encoder_hidden_states_image = self.condition_embedder(
            timestep, encoder_hidden_states, encoder_hidden_states_image
        )
        timestep_proj = timestep_proj.unflatten(1, (6, -1))
        if encoder_hidden_states_image is not None:
            encoder_hidden_states = torch.concat([encoder_hidden_states_image, encoder_hidden_states], dim=1)

        checkpoint = torch.is_grad_enabled() and self.gradient_checkpointing

        def run(block: torch.nn.Module, *args: Any) -> Any:
            return self._gradient_checkpointing_func(block, *args) if checkpoint else block(*args)

        # 4. VACE hints, then the main blocks with the hints added after their layers.
        hints: list[tuple[torch.Tensor, torch.Tensor]] = []
        for i, block in enumerate(self.vace_blocks):
            conditioning, control = run(block, hidden_states, encoder_hidden_states, control, timestep_proj,
                                        vace_rotary)
            hints.append((conditioning, scales[i]))
        hints.reverse()
        for i, block in enumerate(self.blocks):
            hidden_states = run(block, hidden_states, encoder_hidden_states, timestep_proj, block_rotary)
            if i in self.config.vace_layers:
                hint, scale = hints.pop()
                hidden_states = hidden_states + hint.to(hidden_states.device) * scale

        # 5. Output norm, projection, unpatchify.
        shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        shift, scale = shift.to(hidden_states.device), scale.to(hidden_states.device)
        hidden_states = (self.norm_out(hidden_states.float()) * (1 + scale) + shift).type_as(hidden_states)
        hidden_states = self.proj_out(hidden_states)
        hidden_states = hidden_states.reshape(batch_size, post_f, post_h, post_w, p_t, p_h, p_w, -1)
        hidden_states = hidden_states.permute(0, 7, 1, 4, 2, 5, 3, 6)
        output = hidden_states.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)
