"""GroupEditingPipeline: one instruction, N views + masks in, N consistently edited views out.

The pipeline orchestrates; the pieces live in their own modules, and a :class:`~.recipe.Recipe` (chosen by
:attr:`EditSettings.preset <.settings.EditSettings>`) decides what the model is given:

1. :func:`check_inputs`: clear :class:`~backend.errors.InvalidInput` messages for bad groups.
2. Text (:mod:`.prompt`): the recipe's prompt built from a description of the result (given, or derived from the
   instruction), and its negative prompt; UMT5 embeddings cached per text in a small LRU.
3. Views: resized jointly to a global pixel budget (:mod:`.budget`); views of different sizes are placed at the
   top-left of one common canvas (the padding is grey and never edited) and cropped again afterwards.
4. Conditioning (:mod:`.conditioning`): one latent frame per view; the VACE context of the grey-filled, dilated edit
   region. RoPE coordinates per branch (:mod:`.coordinates`): Ge-RoPE along the view chain from the contour flow or
   the exact position-pass correspondences, Identity-RoPE where the recipe uses it. Geometry tokens
   (:mod:`.geometry_tokens`): given with the job, or computed by the VGGT aggregator when one is loaded.
5. Euler flow-matching sampling with the recipe's sigmas and classifier-free guidance (negative and positive in
   one batch of 2), a progress callback per step, cancellation checked between steps, and an optional cheap
   preview (a linear latent -> RGB map fitted on this group's own conditioning latents).
6. Decoding frame by frame, back to each view's original size and order; the edit is pasted into the original
   inside the dilated mask and feathered into it just outside (:func:`~.conditioning.paste_back`).

The output carries ``metadata``: the preset and every resolved value (text encoded, sampler and its first and last
sigma, the source of the Ge-RoPE flow and of the geometry tokens), so a result says exactly how it was made.
"""

from __future__ import annotations

import html
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKLWan, DiffusionPipeline
from diffusers.hooks import apply_group_offloading
from diffusers.schedulers import FlowMatchEulerDiscreteScheduler
from diffusers.utils.torch_utils import get_module_execution_device, randn_tensor

from ..errors import Cancelled, InvalidInput, ModelNotReady, OutOfMemory
from .budget import SIDE_MULTIPLE, budget_sizes, resize_image, resize_mask
from .conditioning import (
    FILL_GREY,
    decode_views,
    dilate_mask,
    fit_latent_rgb,
    latent_preview,
    paste_back,
    prepare_frames,
    to_uint8,
    vace_context,
)
from .coordinates import GroupLayout, geometry_token_coordinates, rope_coordinates
from .correspondence import ViewGeometry
from .geometry_tokens import TokenCache
from .prompt import EditText, edit_text
from .settings import EditSettings
from .transformer import GroupEditingTransformer
from .vggt import VGGTAggregator

logger = logging.getLogger(__name__)

#: ``progress(stage, step, total)``; stages: "text", "encode", "geometry", "denoise", "decode".
ProgressFn = Callable[[str, int, int], None]
#: ``preview(step, images)`` with N uint8 (h, w, 3) images at latent resolution.
PreviewFn = Callable[[int, list[np.ndarray]], None]
CancelFn = Callable[[], bool]


@dataclass
class GroupEditingOutput:
    """``images``: N uint8 (H_i, W_i, 3) in the input order and sizes. ``model_sizes``: the (H', W') each view was
    generated at. ``latents``: the final latents (1, z, N, h, w) on the CPU. ``metadata``: how the edit was made
    (JSON-ready; see the module doc)."""

    images: list[np.ndarray]
    model_sizes: list[tuple[int, int]]
    latents: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)


def _clean_prompt(text: str) -> str:
    """Wan's prompt cleaning without the optional ``ftfy``: HTML unescape, collapse whitespace."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


def token_side(tokens: torch.Tensor, num_views: int) -> int | None:
    """The side of each view's square token grid in (1, N*side*side, C) geometry tokens, or None if they are not
    shaped so."""
    if tokens.ndim != 3 or tokens.shape[0] != 1:
        return None
    side = int(round((tokens.shape[1] / num_views) ** 0.5))
    return side if side * side * num_views == tokens.shape[1] else None


def check_inputs(
    images: Sequence[np.ndarray],
    masks: Sequence[np.ndarray],
    instruction: str,
    settings: EditSettings,
    geometry: Sequence[ViewGeometry] | None = None,
    geometry_tokens: torch.Tensor | None = None,
) -> None:
    """Raise :class:`InvalidInput` with a clear message unless the request is well formed."""
    if not isinstance(instruction, str) or not instruction.strip():
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
    if settings.pixel_budget < len(images) * SIDE_MULTIPLE**2:
        raise InvalidInput(f"pixel budget {settings.pixel_budget} is too small for {len(images)} views")
    if geometry is not None:
        if len(geometry) != len(images):
            raise InvalidInput(f"geometry for {len(geometry)} views but {len(images)} images")
        for i, (g, im) in enumerate(zip(geometry, images)):
            g.check(i)
            if g.size != im.shape[:2]:
                raise InvalidInput(f"view {i}: geometry is {g.size} but the image is {im.shape[:2]}")
    if geometry_tokens is not None and token_side(geometry_tokens, len(images)) is None:
        raise InvalidInput(f"geometry tokens must be (1, N*side*side, C) for {len(images)} views, "
                           f"got {tuple(geometry_tokens.shape)}")


def model_canvas(images: Sequence[np.ndarray], masks: Sequence[np.ndarray], pixel_budget: int
                 ) -> tuple[GroupLayout, list[np.ndarray], list[np.ndarray]]:
    """The views at model resolution (within ``pixel_budget``, sides multiples of 16) on one canvas, each at its
    top left, the rest grey: (layout, N uint8 canvases, N bool masks)."""
    sizes = budget_sizes([tuple(im.shape[:2]) for im in images], pixel_budget)
    layout = GroupLayout(tuple(sizes), (max(h for h, _ in sizes), max(w for _, w in sizes)))
    model_images, model_masks = [], []
    for im, m, size in zip(images, masks, sizes):
        pad_im = np.full((*layout.canvas, 3), FILL_GREY, np.uint8)
        pad_m = np.zeros(layout.canvas, bool)
        pad_im[: size[0], : size[1]] = resize_image(np.asarray(im), size)
        pad_m[: size[0], : size[1]] = resize_mask(np.asarray(m, bool), size)
        model_images.append(pad_im)
        model_masks.append(pad_m)
    return layout, model_images, model_masks


class GroupEditingPipeline(DiffusionPipeline):
    """Consistent multi-view editing with a GroupEditing (Wan2.1-VACE) transformer.

    Components: ``tokenizer`` (UMT5 tokenizer), ``text_encoder`` (``UMT5EncoderModel``), ``vae``
    (``AutoencoderKLWan``), ``transformer`` (:class:`GroupEditingTransformer`) and, optionally,
    ``geometry_encoder`` (:class:`~.vggt.VGGTAggregator`; None: no geometry tokens unless a job brings them).
    The sampler is the recipe's (:mod:`.recipe`), not a component.
    """

    model_cpu_offload_seq = "text_encoder->transformer->vae"
    _optional_components = ["geometry_encoder"]
    text_cache_size = 8
    check_inputs = staticmethod(check_inputs)

    def __init__(
        self,
        tokenizer: Any,
        text_encoder: Any,
        vae: AutoencoderKLWan,
        transformer: GroupEditingTransformer,
        geometry_encoder: VGGTAggregator | None = None,
    ) -> None:
        super().__init__()
        self.register_modules(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                              geometry_encoder=geometry_encoder)
        self._text_cache: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor | None]] = OrderedDict()
        self.token_cache = TokenCache()

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
        encoder's layers streamed to ``device`` on a side CUDA stream; the VAE moves to ``device``). The geometry
        encoder is small (about 0.9 B parameters) and stays on ``device``.
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
        if offload is not None and self.geometry_encoder is not None:
            self.geometry_encoder.to(device)
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

    # -------------------------------------------------------------------------------------------------- call
    @torch.no_grad()
    def __call__(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        instruction: str,
        *,
        settings: EditSettings = EditSettings(),
        description: str | None = None,
        subject: str | None = None,
        geometry: Sequence[ViewGeometry] | None = None,
        geometry_tokens: torch.Tensor | None = None,
        max_sequence_length: int = 512,
        progress: ProgressFn | None = None,
        cancel: CancelFn | None = None,
        preview: PreviewFn | None = None,
        preview_every: int = 1,
    ) -> GroupEditingOutput:
        """Edit a group of views.

        Args:
            images: N uint8 (H_i, W_i, 3) sRGB views (sizes may differ).
            masks: N bool (H_i, W_i), True where the edit applies.
            instruction: what the artist asked for.
            settings: preset and per-edit values (:class:`~.settings.EditSettings`; ``None`` fields: the preset's).
            description / subject: what the result shows, and the object's name (:func:`~.prompt.edit_text`).
            geometry: optional N :class:`ViewGeometry` (world positions, subject masks, cameras) for exact Ge-RoPE.
            geometry_tokens: optional (1, N*side², C) tokens (e.g. from the release's files); without them the
                ``geometry_encoder`` computes them when there is one.
            max_sequence_length: text tokens (Wan: 512).
            progress: ``progress(stage, step, total)``. cancel: checked between steps; raises :class:`Cancelled`.
            preview: ``preview(step, images)`` every ``preview_every`` steps.

        Returns:
            :class:`GroupEditingOutput` with N uint8 images in the input order and sizes, and the metadata.
        """
        check_inputs(images, masks, instruction, settings, geometry, geometry_tokens)
        for name in ("tokenizer", "text_encoder", "vae", "transformer"):
            if getattr(self, name, None) is None:
                raise ModelNotReady(f"the GroupEditing pipeline has no {name} loaded")
        resolved = settings.resolved()
        text = edit_text(resolved.recipe, instruction, len(images), description, subject, resolved.negative_prompt)
        try:
            return self._run(images, masks, text, resolved, geometry, geometry_tokens, max_sequence_length,
                             progress or (lambda *a: None), cancel or (lambda: False), preview,
                             max(1, int(preview_every)))
        except torch.OutOfMemoryError as exc:
            raise OutOfMemory(f"out of GPU memory: lower the pixel budget or enable offloading ({exc})") from exc
        finally:
            self.maybe_free_model_hooks()

    def _run(
        self, images: Sequence[np.ndarray], masks: Sequence[np.ndarray], text: EditText, s: EditSettings,
        geometry: Sequence[ViewGeometry] | None, geometry_tokens: torch.Tensor | None, max_sequence_length: int,
        progress: ProgressFn, cancel: CancelFn, preview: PreviewFn | None, preview_every: int,
    ) -> GroupEditingOutput:
        device = self._execution_device
        dtype = self.transformer.dtype
        recipe = s.recipe
        n = len(images)
        steps, guidance = int(s.steps), float(s.guidance)
        cfg = guidance > 1.0

        def check_cancel() -> None:
            if cancel():
                raise Cancelled("the job was cancelled")

        # Text.
        progress("text", 0, 1)
        positive, negative = self.encode_prompt(text.prompt, text.negative_prompt if cfg else None,
                                                max_sequence_length, device, dtype)
        prompt_embeds = torch.cat([negative, positive]) if cfg else positive
        progress("text", 1, 1)
        check_cancel()

        # Views at model resolution on one canvas.
        orig_sizes = [tuple(im.shape[:2]) for im in images]
        layout, model_images, model_masks = model_canvas(images, masks, s.pixel_budget)
        sizes = list(layout.sizes)
        logger.info("group of %d views at %s (canvas %s), preset %s, %d steps, guidance %.2f", n, sizes,
                    layout.canvas, recipe.name, steps, guidance)

        progress("encode", 0, 1)
        video, vmask = prepare_frames(model_images, model_masks, dilation=s.mask_dilation)
        dilated = [f.numpy() > 0.5 for f in vmask[0, 0]]
        video, vmask = video.to(device), vmask.to(device)
        context, inactive = vace_context(self.vae, video, vmask)
        context = context.to(dtype)
        rgb_map = fit_latent_rgb(inactive, video * (1.0 - vmask)) if preview is not None else None
        progress("encode", 1, 1)
        check_cancel()

        # RoPE coordinates per branch; geometry tokens.
        coords = rope_coordinates(recipe, layout, dilated, geometry, s.flow_sigma)
        main_coords = None if coords.main is None else torch.from_numpy(coords.main)[None].to(device)
        vace_coords = None if coords.vace is None else torch.from_numpy(coords.vace)[None].to(device)
        tokens_source = "job" if geometry_tokens is not None else "off"
        if geometry_tokens is None and self.geometry_encoder is not None:
            progress("geometry", 0, 1)
            keep = [dilate_mask(np.asarray(m, bool), int(round(s.mask_dilation * o[0] / z[0])))
                    for m, o, z in zip(masks, orig_sizes, sizes)]
            geometry_tokens = self.token_cache.get(self.geometry_encoder, [np.asarray(im) for im in images], keep)
            tokens_source = "vggt"
            progress("geometry", 1, 1)
            check_cancel()
        geometry_coords = None
        if geometry_tokens is not None:
            side = token_side(geometry_tokens, n)
            geometry_coords = torch.from_numpy(geometry_token_coordinates(n, layout.grid, n, side))[None].to(device)
            geometry_tokens = geometry_tokens.to(device)

        # Sampling: Euler flow matching with the recipe's sigmas.
        scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0)  # the recipe's sigmas come shifted already
        scheduler.set_timesteps(sigmas=recipe.sampler.sigmas(steps, s.shift).tolist(), device=device)
        timesteps = scheduler.timesteps
        shape = (1, self.transformer.config.in_channels, n, layout.canvas[0] // 8, layout.canvas[1] // 8)
        latents = randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(s.seed),
                               device=torch.device("cpu"), dtype=torch.float32).to(device)
        batch = 2 if cfg else 1
        control = context.expand(batch, -1, -1, -1, -1)
        scales = torch.full((len(self.transformer.config.vace_layers),), float(s.conditioning_scale),
                            device=device, dtype=dtype)
        for i, t in enumerate(timesteps):
            check_cancel()
            model_t = t.to(torch.bfloat16).float() if recipe.sampler.timestep_bf16 else t
            pred = self.transformer(
                hidden_states=latents.to(dtype).expand(batch, -1, -1, -1, -1), timestep=model_t.expand(batch),
                encoder_hidden_states=prompt_embeds, control_hidden_states=control, control_hidden_states_scale=scales,
                rope_coords=main_coords, vace_rope_coords=vace_coords, geometry_tokens=geometry_tokens,
                geometry_coords=geometry_coords, return_dict=False,
            )[0].float()
            if cfg:
                uncond, cond = pred.chunk(2)
                pred = uncond + guidance * (cond - uncond)
            if preview is not None and ((i + 1) % preview_every == 0 or i + 1 == len(timesteps)):
                x0 = latents - float(scheduler.sigmas[i]) * pred  # x_t = (1-σ) x0 + σ ε, v = ε - x0
                preview(i + 1, latent_preview(x0, rgb_map))
            latents = scheduler.step(pred, t, latents, return_dict=False)[0]
            progress("denoise", i + 1, len(timesteps))
        check_cancel()

        # Decode, crop, restore sizes, paste into the original.
        progress("decode", 0, 1)
        frames = to_uint8(decode_views(self.vae, latents))
        progress("decode", 1, 1)
        out = []
        for frame, size, orig, im, m in zip(frames, sizes, orig_sizes, images, masks):
            edited = resize_image(np.ascontiguousarray(frame[: size[0], : size[1]]), orig)
            radius = int(round(s.mask_dilation * orig[0] / size[0]))
            out.append(paste_back(np.asarray(im), edited, np.asarray(m, bool), radius, s.feather))
        sigmas = scheduler.sigmas[:-1]
        metadata = {
            "preset": recipe.name, "settings": {k: v for k, v in s.to_dict().items() if k != "negative_prompt"},
            "text": text.to_dict(),
            "sampler": {"kind": "euler flow matching", "steps": steps, "guidance": guidance, "shift": float(s.shift),
                        "sigma_first": float(sigmas[0]), "sigma_last": float(sigmas[-1]),
                        "timestep_bf16": recipe.sampler.timestep_bf16},
            "ge_rope": {"flow_source": coords.flow_source, "main": recipe.main, "vace": recipe.vace,
                        "tokens_moved": coords.moved,
                        "smoothing": {"contours": f"gaussian k {recipe.blur_kernel} sigma {recipe.blur_sigma}, zero "
                                                  "padding", "positions": f"masked, sigma {s.flow_sigma} tokens",
                                      "none": "none"}[coords.flow_source]},
            "geometry_tokens": tokens_source, "model_sizes": [list(z) for z in sizes],
        }
        return GroupEditingOutput(images=out, model_sizes=sizes, latents=latents.cpu(), metadata=metadata)
