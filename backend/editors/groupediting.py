"""The groupediting editor: the GroupEditing model (Wan2.1-VACE + Ge-RoPE) behind the server's editor interface.

Loading happens once, when the worker builds the editor (see :mod:`backend.groupediting.loader`); a missing or
incomplete model directory raises ``model_not_ready`` there, with a message pointing to docs/models.md.

A job maps onto one :class:`~backend.groupediting.pipeline.GroupEditingPipeline` call:

* views and masks as they are (uint8 (H_i, W_i, 3) and bool (H_i, W_i)); outputs come back at the input sizes,
  and outside each mask dilated by ``mask_dilation`` model pixels the input pixels are returned bit-identical;
* Ge-RoPE from exact ViewSet correspondences when the job carries the ``position`` pass *and* the cameras
  (:func:`view_geometry`); otherwise grid coordinates (Identity-RoPE, where the preset uses it, from the masks);
* progress ``("text" | "encode" | "denoise" | "decode", step, total)``, one ``"denoise"`` call per step;
  cancellation is checked between steps;
* live previews (when the worker sets :attr:`Editor.preview`): the pipeline's cheap latent previews, N uint8
  images at latent resolution, about every tenth denoising step (:func:`preview_every`).

This module imports no torch until an editor is built, so the editor registry stays cheap to import.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInput, ModelNotReady
from .base import CancelCheck, EditInput, Editor, Progress

if TYPE_CHECKING:
    from ..groupediting.correspondence import ViewGeometry
    from ..groupediting.loader import LoadSettings

logger = logging.getLogger(__name__)

#: Default total pixels of a group: the release's four 528 x 528 views (the pipeline's default too).
DEFAULT_PIXEL_BUDGET = 4 * 528 * 528


@dataclass(frozen=True)
class Sampling:
    """Sampling defaults of the server; a job's ``options`` may override each field by name.

    ``steps``: denoising steps. ``guidance``: classifier-free guidance scale (off at <= 1). ``seed``: noise seed
    (noise is drawn on the CPU: the same seed gives the same edit). ``pixel_budget``: total pixels of the group at
    model resolution. ``mask_dilation``: model pixels the edit region grows by. ``flow_sigma``: Ge-RoPE blur in
    tokens. ``reference_view``: the view displacements point to. ``shift``: flow shift (None: the scheduler's).
    ``conditioning_scale``: VACE hint scale. ``negative_prompt``: what guidance steers away from.
    """

    steps: int = 50
    guidance: float = 5.0
    seed: int = 0
    pixel_budget: int = DEFAULT_PIXEL_BUDGET
    mask_dilation: int = 5
    flow_sigma: float = 1.0
    reference_view: int = 0
    shift: float | None = None
    conditioning_scale: float = 1.0
    negative_prompt: str = ""

    def with_options(self, options: dict[str, Any]) -> Sampling:
        """These defaults with a job's ``options`` applied; unknown names and bad values raise InvalidInput."""
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InvalidInput(f"unknown option(s) {', '.join(unknown)} for the groupediting editor; known: "
                               f"{', '.join(known)}")
        changes: dict[str, Any] = {}
        for name, value in options.items():
            default = getattr(self, name)
            try:
                if name == "negative_prompt":
                    changes[name] = str(value)
                elif value is None and name == "shift":
                    changes[name] = None
                elif isinstance(default, int) and not isinstance(default, bool):
                    if isinstance(value, bool) or float(value) != int(value):
                        raise ValueError("not a whole number")
                    changes[name] = int(value)
                else:
                    changes[name] = float(value)
                    if not math.isfinite(changes[name]):
                        raise ValueError("not finite")
            except (TypeError, ValueError) as exc:
                raise InvalidInput(f"option {name}={value!r} is not valid ({exc}); default {default!r}") from exc
        out = replace(self, **changes)
        if out.steps < 1 or out.steps > 1000:
            raise InvalidInput(f"option steps={out.steps}: use 1 to 1000")
        if out.mask_dilation < 0 or out.flow_sigma < 0 or out.conditioning_scale < 0:
            raise InvalidInput("options mask_dilation, flow_sigma and conditioning_scale must not be negative")
        return out


def subject_mask(position: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose world position is set (finite and not exactly 0, the ViewSet's "outside")."""
    return np.isfinite(position).all(axis=-1) & np.any(position != 0, axis=-1)


def view_geometry(group: EditInput) -> list[ViewGeometry] | None:
    """N :class:`ViewGeometry` from the job's ``position`` pass and cameras, or None when either is missing."""
    from ..groupediting.correspondence import ViewGeometry

    positions = group.geometry.get("position")
    if positions is None or group.cameras is None:
        if positions is not None or group.cameras is not None:
            logger.warning("Ge-RoPE needs both the position pass and the cameras; this job has only the %s: "
                           "grid coordinates are used", "position pass" if positions is not None else "cameras")
        return None
    return [ViewGeometry(position=np.asarray(p, np.float32), mask=subject_mask(np.asarray(p)),
                         K=np.asarray(k, np.float64), camera_to_world=np.asarray(c2w, np.float64))
            for p, (k, c2w) in zip(positions, group.cameras)]


def preview_every(steps: int) -> int:
    """Denoising steps between two live previews: about ten previews a job (and always the last step)."""
    return max(1, steps // 10)


class GroupEditingEditor(Editor):
    """Edits a group of views with the GroupEditing model (see the module docstring).

    Args (server flags in parentheses; see docs/models.md):
        model_dir: diffusers Wan2.1-VACE directory (``--model-dir``). Required.
        weights: GroupEditing safetensors file, release or our format (``--weights``); None: the base alone.
        dtype: ``bf16``, ``fp16`` or ``fp32`` (``--dtype``); None: bf16 on CUDA, fp32 on the CPU.
        offload: ``none``, ``model``, ``sequential`` or ``group`` (``--offload``).
        device: ``auto``, ``cpu`` or ``cuda`` (``--device``).
        rope_preset: ``release``, ``paper`` or ``grid`` (``--rope-preset``); None: the model config's.
        attention_backend: a diffusers attention backend name (``--attention-backend``).
        vram_check: refuse to load when the free GPU memory is below the estimate (``--no-vram-check`` turns it off).
        threads: torch CPU threads (``--threads``); None: torch's default.
        steps, guidance, seed, pixel_budget, mask_dilation, flow_sigma, negative_prompt: :class:`Sampling` defaults.
        weights_layout, lora_scale, vae_tiling, vae_slicing: passed to the loader.
    """

    name = "groupediting"

    def __init__(
        self,
        model_dir: str | Path | None = None,
        weights: str | Path | None = None,
        dtype: str | None = None,
        offload: str = "none",
        device: str = "auto",
        rope_preset: str | None = None,
        attention_backend: str | None = None,
        vram_check: bool = True,
        threads: int | None = None,
        weights_layout: str = "auto",
        lora_scale: float = 1.0,
        vae_tiling: bool = False,
        vae_slicing: bool = False,
        **sampling: Any,
    ) -> None:
        if model_dir is None:
            raise ModelNotReady("the groupediting editor needs --model-dir (the diffusers Wan2.1-VACE directory); "
                                "see docs/models.md for what to download")
        self.sampling = Sampling().with_options(sampling)
        import torch

        from ..groupediting.loader import LoadSettings, cached_pipeline

        if threads:
            torch.set_num_threads(int(threads))
        self.settings: LoadSettings = LoadSettings(
            model_dir=Path(model_dir).expanduser(), weights=Path(weights).expanduser() if weights else None,
            dtype=dtype, offload=offload, device=device, rope_preset=rope_preset, attention_backend=attention_backend,
            weights_layout=weights_layout, lora_scale=float(lora_scale), vae_tiling=vae_tiling,
            vae_slicing=vae_slicing, vram_check=vram_check)
        self.pipeline = cached_pipeline(self.settings)

    def info(self) -> dict[str, Any]:
        s = self.settings
        return {
            "name": self.name, "model": str(s.model_dir), "weights": str(s.weights) if s.weights else None,
            "device": s.resolved_device(), "dtype": str(s.resolved_dtype()).removeprefix("torch."),
            "offload": s.offload, "rope_preset": self.pipeline.transformer.config.rope_preset,
            "geometry_passes": ["position"], "cameras": True,
            "defaults": {"steps": self.sampling.steps, "guidance": self.sampling.guidance, "seed": self.sampling.seed,
                         "pixel_budget": self.sampling.pixel_budget},
        }

    def edit(self, group: EditInput, instruction: str, options: dict[str, Any], progress: Progress,
             cancel: CancelCheck) -> list[np.ndarray]:
        """N uint8 (H_i, W_i, 3) edited views; input pixels kept exactly outside the dilated masks."""
        group.check()
        if group.reference is not None:
            raise InvalidInput("the groupediting editor does not use a reference image: describe the look in the "
                               "instruction (the classical editor transfers a reference's colours)")
        opts = self.sampling.with_options(options)
        geometry = view_geometry(group)
        logger.info("groupediting: %d views, %d steps, seed %d, %s coordinates", len(group.images), opts.steps,
                    opts.seed, "Ge-RoPE" if geometry is not None else "grid")
        out = self.pipeline(
            group.images, [np.asarray(m, bool) for m in group.masks], instruction, opts.negative_prompt,
            geometry=geometry, reference_view=opts.reference_view, flow_sigma=opts.flow_sigma,
            num_inference_steps=opts.steps, guidance_scale=opts.guidance, shift=opts.shift, seed=opts.seed,
            pixel_budget=opts.pixel_budget, mask_dilation=opts.mask_dilation,
            conditioning_scale=opts.conditioning_scale, keep_unmasked=True, progress=progress, cancel=cancel,
            preview=self.preview, preview_every=preview_every(opts.steps),
        )
        return out.images
