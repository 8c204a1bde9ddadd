"""GroupEditingPipeline: one instruction, N views + masks in, N consistently edited views out.

The pipeline orchestrates; the pieces live in their own modules:

1. :func:`check_inputs` - clear :class:`~backend.errors.InvalidInput` messages for bad groups and options.
2. Text: UMT5 embeddings of the instruction and the negative prompt, cached per ``(prompt, negative)`` in a small
   LRU (the text encoder is a large share of memory and time; a session re-uses instructions).
3. Views: resized jointly to a global pixel budget (:mod:`.budget`); views of different sizes are placed at the
   top-left of one common canvas (the padding is kept grey and never edited) and cropped again afterwards.
4. Conditioning (:mod:`.conditioning`): one latent frame per view; VACE context of the grey-filled, dilated edit
   region. RoPE coordinates per branch from geometry (:mod:`.correspondence`), as the transformer's
   ``rope_preset`` asks: Ge-RoPE displacement to a reference view, Identity-RoPE box offsets, or the grid.
5. Flow-matching sampling with classifier-free guidance (negative and positive in one batch of 2), a progress
   callback per step, cancellation checked between steps, and an optional cheap preview (a linear latent -> RGB
   map fitted on this group's own conditioning latents, applied to the predicted clean latents).
6. Decoding frame by frame, back to each view's original size and order; outside the dilated mask the original
   pixels are kept (``keep_unmasked``).
"""

from __future__ import annotations

import html
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler
from diffusers.hooks import apply_group_offloading
from diffusers.utils.torch_utils import get_module_execution_device, randn_tensor

from ..errors import Cancelled, InvalidInput, ModelNotReady, OutOfMemory
from .budget import SIDE_MULTIPLE, budget_sizes, resize_image, resize_mask
from .conditioning import (
    FILL_GREY,
    decode_views,
    dilate_mask,
    fit_latent_rgb,
    latent_preview,
    prepare_frames,
    to_uint8,
    vace_context,
)
from .correspondence import ViewGeometry, ge_rope_displacements, identity_offsets, token_coordinates
from .transformer import GroupEditingTransformer

logger = logging.getLogger(__name__)

#: ``progress(stage, step, total)``; stages: "text", "encode", "denoise", "decode".
ProgressFn = Callable[[str, int, int], None]
#: ``preview(step, images)`` with N uint8 (h, w, 3) images at latent resolution.
PreviewFn = Callable[[int, list[np.ndarray]], None]
CancelFn = Callable[[], bool]

#: Default total pixels of a group: the release's four 528 x 528 views.
DEFAULT_PIXEL_BUDGET = 4 * 528 * 528


@dataclass
class GroupEditingOutput:
    """``images``: N uint8 (H_i, W_i, 3) in the input order and sizes. ``model_sizes``: the (H', W') each view was
    generated at. ``latents``: the final latents (1, z, N, h, w) on the CPU."""

    images: list[np.ndarray]
    model_sizes: list[tuple[int, int]]
    latents: torch.Tensor


@dataclass(frozen=True)
class SamplingOptions:
    """Everything about one edit that is not data or a callback (see :meth:`GroupEditingPipeline.__call__`)."""

    reference_view: int = 0
    flow_sigma: float = 1.0
    clamp_coordinates: bool = False
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    shift: float | None = None
    seed: int = 0
    pixel_budget: int = DEFAULT_PIXEL_BUDGET
    allow_upscale: bool = True
    mask_dilation: int = 5
    conditioning_scale: float = 1.0
    max_sequence_length: int = 512
    keep_unmasked: bool = True
    preview_every: int = 1


def _clean_prompt(text: str) -> str:
    """Wan's prompt cleaning without the optional ``ftfy``: HTML unescape, collapse whitespace."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


def check_inputs(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    prompt: str,
    num_inference_steps: int,
    guidance_scale: float,
    pixel_budget: int,
    geometry: Sequence[ViewGeometry] | None = None,
    reference_view: int = 0,
    geometry_tokens: torch.Tensor | None = None,
    geometry_coords: torch.Tensor | None = None,
) -> None:
    """Raise :class:`InvalidInput` with a clear message unless the request is well formed."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("the instruction is empty: say what the edit should do")
    if not images:
        raise InvalidInput("a group needs at least one view")
    if len(images) != len(masks):
        raise InvalidInput(f"{len(images)} images but {len(masks)} masks: send one mask per view")
    for i, (im, m) in enumerate(zip(images, masks)):
        im, m = np.asarray(im), np.asarray(m)
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise InvalidInput(f"view {i}: image must be uint8 RGB (H, W, 3), got {im.dtype} {im.shape}")
        if m.shape != im.shape[:2]:
            raise InvalidInput(f"view {i}: mask is {m.shape} but the image is {im.shape[:2]}")
        if min(im.shape[:2]) < SIDE_MULTIPLE:
            raise InvalidInput(f"view {i}: {im.shape[1]}x{im.shape[0]} is too small (at least {SIDE_MULTIPLE} px)")
    if not any(np.asarray(m, bool).any() for m in masks):
        raise InvalidInput("every mask is empty: there is nothing to edit")
    if int(num_inference_steps) < 1:
        raise InvalidInput(f"num_inference_steps must be at least 1, got {num_inference_steps}")
    if not np.isfinite(guidance_scale) or guidance_scale < 0:
        raise InvalidInput(f"guidance_scale must be a non-negative number, got {guidance_scale}")
    if pixel_budget < len(images) * SIDE_MULTIPLE**2:
        raise InvalidInput(f"pixel budget {pixel_budget} is too small for {len(images)} views")
    if geometry is not None:
        if len(geometry) != len(images):
            raise InvalidInput(f"geometry for {len(geometry)} views but {len(images)} images")
        for i, (g, im) in enumerate(zip(geometry, images)):
            g.check(i)
            if g.size != im.shape[:2]:
                raise InvalidInput(f"view {i}: geometry is {g.size} but the image is {im.shape[:2]}")
        if not 0 <= reference_view < len(images):
            raise InvalidInput(f"reference view {reference_view} is out of range for {len(images)} views")
    if (geometry_tokens is None) != (geometry_coords is None):
        raise InvalidInput("geometry tokens need their coordinates (and the other way round)")
    if geometry_tokens is not None:
        if geometry_tokens.ndim != 3 or geometry_tokens.shape[0] != 1:
            raise InvalidInput(f"geometry tokens must be (1, G, C), got {tuple(geometry_tokens.shape)}")
        if tuple(geometry_coords.shape) != (1, geometry_tokens.shape[1], 3):
            raise InvalidInput(f"geometry coordinates must be (1, {geometry_tokens.shape[1]}, 3), "
                               f"got {tuple(geometry_coords.shape)}")


class GroupEditingPipeline(DiffusionPipeline):
    """Consistent multi-view editing with a GroupEditing (Wan2.1-VACE) transformer.

    Components: ``tokenizer`` (UMT5 tokenizer), ``text_encoder`` (``UMT5EncoderModel``), ``vae``
    (``AutoencoderKLWan``), ``scheduler`` (``FlowMatchEulerDiscreteScheduler`` or ``UniPCMultistepScheduler`` with
    flow sigmas), ``transformer`` (:class:`GroupEditingTransformer`).
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    text_cache_size = 8
    check_inputs = staticmethod(check_inputs)

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        vae: AutoencoderKLWan,
        scheduler: FlowMatchEulerDiscreteScheduler | UniPCMultistepScheduler,
        transformer: GroupEditingTransformer,
    ) -> None:
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler,
                              transformer=transformer)
        self._text_cache: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = OrderedDict()

    # ----------------------------------------------------------------------------------------------- options
    def configure(
        self,
        attention_backend: str | None = None,
        vae_tiling: bool = False,
        vae_slicing: bool = False,
        offload: str | None = None,
        device: str | torch.device = "cuda",
        group_offload_blocks: int = 1,
    ) -> "GroupEditingPipeline":
        """Memory and speed options, passed through to diffusers where it supports them.

        ``attention_backend``: a diffusers attention backend name (e.g. ``"native"``, ``"flash"``, ``"sage"``).
        ``vae_tiling`` / ``vae_slicing``: ``AutoencoderKLWan`` tiled / one-view-at-a-time decoding.
        ``offload``: None, ``"model"`` (whole components to ``device`` in turn), ``"sequential"`` (layer by layer,
        slowest, least memory) or ``"group"`` (transformer blocks, ``group_offload_blocks`` at a time, and the text
        encoder's layers streamed to ``device`` on a side CUDA stream; the VAE moves to ``device``).
        """
        if attention_backend:
            self.transformer.set_attention_backend(attention_backend)
        if vae_tiling:
            self.vae.enable_tiling()
        if vae_slicing:
            self.vae.enable_slicing()
        if offload == "model":
            self.enable_model_cpu_offload(device=device)
        elif offload == "sequential":
            self.enable_sequential_cpu_offload(device=device)
        elif offload == "group":
            onload = torch.device(device)
            stream = onload.type == "cuda"
            self.transformer.enable_group_offload(onload_device=onload, offload_type="block_level",
                                                  num_blocks_per_group=group_offload_blocks, use_stream=stream)
            apply_group_offloading(self.text_encoder, onload_device=onload, offload_type="leaf_level",
                                   use_stream=stream)
            self.vae.to(onload)
        elif offload is not None:
            raise InvalidInput(f"unknown offload mode {offload!r}; use 'model', 'sequential' or 'group'")
        return self

    # -------------------------------------------------------------------------------------------------- text
    def _encode_text(self, prompts: list[str], max_sequence_length: int, device: torch.device) -> torch.Tensor:
        tokens = self.tokenizer([_clean_prompt(p) for p in prompts], padding="max_length",
                                max_length=max_sequence_length, truncation=True, add_special_tokens=True,
                                return_attention_mask=True, return_tensors="pt")
        ids, mask = tokens.input_ids, tokens.attention_mask
        encoder_device = get_module_execution_device(self.text_encoder)
        hidden = self.text_encoder(ids.to(encoder_device), mask.to(encoder_device)).last_hidden_state
        hidden = hidden.to(device)
        lengths = mask.sum(dim=1).tolist()
        out = torch.zeros_like(hidden)
        for i, n in enumerate(lengths):  # Wan zeroes the padding positions
            out[i, :n] = hidden[i, :n]
        return out

    def encode_prompt(
        self, prompt: str, negative_prompt: str | None, max_sequence_length: int = 512,
        device: torch.device | None = None, dtype: torch.dtype | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """UMT5 embeddings ``(1, L, text_dim)`` of the prompt and (when not None) the negative prompt, cached."""
        device = device or self._execution_device
        dtype = dtype or self.transformer.dtype
        key = (prompt, negative_prompt, max_sequence_length, str(device), str(dtype))
        if key in self._text_cache:
            self._text_cache.move_to_end(key)
            return self._text_cache[key]
        prompts = [prompt] if negative_prompt is None else [prompt, negative_prompt]
        with torch.no_grad():
            emb = self._encode_text(prompts, max_sequence_length, device).to(dtype)
        value = (emb[:1], emb[1:] if negative_prompt is not None else None)
        self._text_cache[key] = value
        while len(self._text_cache) > self.text_cache_size:
            self._text_cache.popitem(last=False)
        return value

    # ------------------------------------------------------------------------------------------------- views
    def _scheduler(self, shift: float | None) -> Any:
        """A fresh scheduler (no state shared between calls), with ``shift`` applied when given."""
        cls = type(self.scheduler)
        if shift is None:
            return cls.from_config(self.scheduler.config)
        key = "flow_shift" if "flow_shift" in self.scheduler.config else "shift"
        return cls.from_config(self.scheduler.config, **{key: float(shift)})

    def _rope_coordinates(
        self, kind: str, n: int, grid: tuple[int, int], sizes: list[tuple[int, int]],
        geometry: Sequence[ViewGeometry] | None, masks: Sequence[np.ndarray], reference_view: int,
        flow_sigma: float, clamp: bool,
    ) -> torch.Tensor | None:
        """(1, S, 3) coordinates of one kind ("grid", "ge", "ge_identity") on the common canvas, or None (grid)."""
        if kind == "grid":
            return None
        grids = [(h // SIDE_MULTIPLE, w // SIDE_MULTIPLE) for h, w in sizes]
        offsets = None
        if kind == "ge_identity":  # the subject box: the geometry's object mask when there is one, else the edit mask
            offsets = identity_offsets([g.mask for g in geometry] if geometry is not None else masks, grids)
        if geometry is None:
            displacements = None
            if offsets is None:
                return None
        else:
            fields = ge_rope_displacements(geometry, grids, reference=reference_view, sigma=flow_sigma,
                                           box_relative=kind == "ge_identity", offsets=offsets)
            displacements = []
            for f in fields:  # place each view's field on the common canvas (top-left aligned)
                d = np.zeros((*grid, 2), np.float32)
                d[: f.delta.shape[0], : f.delta.shape[1]] = f.delta
                displacements.append(d)
        coords = token_coordinates(n, grid, displacements, offsets, clamp=clamp)
        return torch.from_numpy(coords)[None]

    # -------------------------------------------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        prompt: str,
        negative_prompt: str = "",
        *,
        geometry: Sequence[ViewGeometry] | None = None,
        reference_view: int = 0,
        flow_sigma: float = 1.0,
        clamp_coordinates: bool = False,
        geometry_tokens: torch.Tensor | None = None,
        geometry_coords: torch.Tensor | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 5.0,
        shift: float | None = None,
        seed: int = 0,
        pixel_budget: int = DEFAULT_PIXEL_BUDGET,
        allow_upscale: bool = True,
        mask_dilation: int = 5,
        conditioning_scale: float = 1.0,
        max_sequence_length: int = 512,
        keep_unmasked: bool = True,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        preview: PreviewFn | None = None,
        preview_every: int = 1,
    ) -> GroupEditingOutput:
        """Edit a group of views.

        Args:
            images: N uint8 (H_i, W_i, 3) sRGB views (sizes may differ).
            masks: N bool (H_i, W_i), True where the edit applies.
            prompt / negative_prompt: the instruction and what to avoid (guidance).
            geometry: optional N :class:`ViewGeometry` (world positions, subject masks, cameras) for Ge-RoPE;
                without it, Ge-RoPE coordinates fall back to the grid (Identity-RoPE then uses the edit masks).
            reference_view: the view every displacement points to.
            flow_sigma: Ge-RoPE blur in tokens.
            clamp_coordinates: clip warped coordinates to the grid (the release does).
            geometry_tokens / geometry_coords: optional (1, G, C_g) tokens and (1, G, 3) coordinates.
            num_inference_steps, guidance_scale, shift, seed: sampling (CFG when ``guidance_scale > 1``; ``shift``
                overrides the scheduler's flow shift; noise is drawn on the CPU from ``seed``, so results repeat).
            pixel_budget, allow_upscale: joint resize of the group (:mod:`.budget`).
            mask_dilation: pixels (at model resolution) the edit mask grows by.
            conditioning_scale: scale of the VACE hints.
            max_sequence_length: text tokens (Wan: 512).
            keep_unmasked: paste the original pixels back outside the dilated mask.
            progress: ``progress(stage, step, total)``. cancel: checked between steps; raises :class:`Cancelled`.
            preview: ``preview(step, images)`` every ``preview_every`` steps.

        Returns:
            :class:`GroupEditingOutput` with N uint8 images in the input order and sizes.
        """
        check_inputs(images, masks, prompt, num_inference_steps, guidance_scale, pixel_budget, geometry,
                     reference_view, geometry_tokens, geometry_coords)
        for name in ("tokenizer", "text_encoder", "vae", "scheduler", "transformer"):
            if getattr(self, name, None) is None:
                raise ModelNotReady(f"the GroupEditing pipeline has no {name} loaded")
        opts = SamplingOptions(
            reference_view=reference_view, flow_sigma=flow_sigma, clamp_coordinates=clamp_coordinates,
            num_inference_steps=int(num_inference_steps), guidance_scale=float(guidance_scale), shift=shift,
            seed=int(seed), pixel_budget=int(pixel_budget), allow_upscale=allow_upscale, mask_dilation=mask_dilation,
            conditioning_scale=conditioning_scale, max_sequence_length=max_sequence_length,
            keep_unmasked=keep_unmasked, preview_every=max(1, int(preview_every)),
        )
        try:
            return self._run(images, masks, prompt, negative_prompt, opts, geometry, geometry_tokens, geometry_coords,
                             progress or (lambda *a: None), cancel or (lambda: False), preview)
        except torch.OutOfMemoryError as exc:
            raise OutOfMemory(f"out of GPU memory: lower the pixel budget or enable offloading ({exc})") from exc
        finally:
            self.maybe_free_model_hooks()

    def _run(
        self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], prompt: str, negative_prompt: str,
        opts: SamplingOptions, geometry: Sequence[ViewGeometry] | None, geometry_tokens: torch.Tensor | None,
        geometry_coords: torch.Tensor | None, progress: ProgressFn, cancel: CancelFn, preview: PreviewFn | None,
    ) -> GroupEditingOutput:
        device = self._execution_device
        dtype = self.transformer.dtype
        n = len(images)
        steps, guidance = opts.num_inference_steps, opts.guidance_scale
        cfg = guidance > 1.0

        def check_cancel() -> None:
            if cancel():
                raise Cancelled("the job was cancelled")

        # Text.
        progress("text", 0, 1)
        positive, negative = self.encode_prompt(prompt, negative_prompt if cfg else None, opts.max_sequence_length,
                                                device, dtype)
        text = torch.cat([negative, positive]) if cfg else positive
        progress("text", 1, 1)
        check_cancel()

        # Views at model resolution on one canvas.
        orig_sizes = [tuple(im.shape[:2]) for im in images]
        sizes = budget_sizes(orig_sizes, opts.pixel_budget, allow_upscale=opts.allow_upscale)
        canvas = (max(h for h, _ in sizes), max(w for _, w in sizes))
        model_images, model_masks, edit_masks = [], [], []
        for im, m, s in zip(images, masks, sizes):
            im_s, m_s = resize_image(np.asarray(im), s), resize_mask(np.asarray(m, bool), s)
            pad_im = np.full((*canvas, 3), FILL_GREY, np.uint8)
            pad_m = np.zeros(canvas, bool)
            pad_im[: s[0], : s[1]], pad_m[: s[0], : s[1]] = im_s, m_s
            model_images.append(pad_im)
            model_masks.append(pad_m)
            edit_masks.append(m_s)
        logger.info("group of %d views at %s (canvas %s), %d steps, guidance %.2f", n, sizes, canvas, steps, guidance)

        progress("encode", 0, 1)
        video, vmask = prepare_frames(model_images, model_masks, dilation=opts.mask_dilation)
        video, vmask = video.to(device), vmask.to(device)
        context, inactive = vace_context(self.vae, video, vmask)
        context = context.to(dtype)
        rgb_map = fit_latent_rgb(inactive, video * (1.0 - vmask)) if preview is not None else None
        progress("encode", 1, 1)
        check_cancel()

        # RoPE coordinates per branch.
        grid = (canvas[0] // SIDE_MULTIPLE, canvas[1] // SIDE_MULTIPLE)
        plan = self.transformer.rope_plan
        coords = {kind: self._rope_coordinates(kind, n, grid, sizes, geometry, edit_masks, opts.reference_view,
                                               opts.flow_sigma, opts.clamp_coordinates)
                  for kind in {plan.main, plan.vace}}
        main_coords = coords[plan.main].to(device) if coords[plan.main] is not None else None
        vace_coords = coords[plan.vace].to(device) if coords[plan.vace] is not None else None
        if geometry_tokens is not None:
            geometry_tokens, geometry_coords = geometry_tokens.to(device), geometry_coords.to(device)

        # Sampling.
        scheduler = self._scheduler(opts.shift)
        scheduler.set_timesteps(steps, device=device)
        timesteps = scheduler.timesteps
        num_train = float(scheduler.config.num_train_timesteps)
        shape = (1, self.transformer.config.in_channels, n, canvas[0] // 8, canvas[1] // 8)
        latents = randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(opts.seed),
                               device=torch.device("cpu"), dtype=torch.float32).to(device)
        batch = 2 if cfg else 1
        control = context.expand(batch, -1, -1, -1, -1)
        scales = torch.full((len(self.transformer.config.vace_layers),), float(opts.conditioning_scale),
                            device=device, dtype=dtype)
        for i, t in enumerate(timesteps):
            check_cancel()
            model_in = latents.to(dtype).expand(batch, -1, -1, -1, -1)
            pred = self.transformer(
                hidden_states=model_in, timestep=t.expand(batch), encoder_hidden_states=text,
                control_hidden_states=control, control_hidden_states_scale=scales, rope_coords=main_coords,
                vace_rope_coords=vace_coords, geometry_tokens=geometry_tokens, geometry_coords=geometry_coords,
                return_dict=False,
            )[0].float()
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            if preview is not None and ((i + 1) % opts.preview_every == 0 or i + 1 == len(timesteps)):
                x0 = latents - (float(t) / num_train) * pred  # flow matching: x_t = (1-σ) x0 + σ ε, v = ε - x0
                preview(i + 1, latent_preview(x0, rgb_map))
            latents = scheduler.step(pred, t, latents, return_dict=False)[0]
            progress("denoise", i + 1, len(timesteps))
        check_cancel()

        # Decode, crop, restore sizes, keep the unmasked original.
        progress("decode", 0, 1)
        frames = to_uint8(decode_views(self.vae, latents))
        progress("decode", 1, 1)
        out = []
        for i, (frame, s, o) in enumerate(zip(frames, sizes, orig_sizes)):
            edited = resize_image(np.ascontiguousarray(frame[: s[0], : s[1]]), o)
            if opts.keep_unmasked:
                scale = o[0] / s[0]
                keep = ~dilate_mask(np.asarray(masks[i], bool), int(round(opts.mask_dilation * scale)))
                edited = np.where(keep[..., None], np.asarray(images[i]), edited)
            out.append(edited)
        return GroupEditingOutput(images=out, model_sizes=sizes, latents=latents.cpu())
