"""The groupediting editor: the GroupEditing model (Wan2.1-VACE + Ge-RoPE) behind the server's editor interface.

Loading happens once, when the worker builds the editor (see :mod:`backend.groupediting.loader`); a missing or
incomplete model directory raises ``model_not_ready`` there, with a message pointing to docs/models.md.

A job maps onto one :class:`~backend.groupediting.pipeline.GroupEditingPipeline` call:

* settings: the server's defaults (its flags, :class:`~backend.groupediting.settings.EditSettings`) with the job's
  ``options`` on top; the preset defaults to ``release`` (or to the preset a weights file of our own format names
  in its metadata ``preset``);
* views and masks as they are (uint8 (H_i, W_i, 3) and bool (H_i, W_i)); outputs come back at the input sizes,
  the edit feathered into the original just outside each dilated mask and the input bit-identical beyond;
* text: the instruction, the job's description and subject (the prompt is built from them, :mod:`.prompt`);
* exact Ge-RoPE (``exact`` and ``paper`` presets) from the ``position`` pass *and* the cameras
  (:func:`view_geometry`); otherwise, and for the ``release`` preset always, the contour flow of the masks;
* geometry tokens: the job's own (the release's ``.npy`` files), else computed with VGGT when the server has it;
* progress ``("text" | "encode" | "geometry" | "denoise" | "decode", step, total)``, one ``"denoise"`` call per
  step; cancellation is checked between steps; live previews about every tenth step (:func:`preview_every`);
* the result's metadata: preset, every resolved setting, the text encoded, the sampler, the flow and token sources.

This module imports no torch until an editor is built, so the editor registry stays cheap to import.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidInput, ModelNotReady
from .base import CancelCheck, EditInput, Editor, EditResult, Progress

if TYPE_CHECKING:
    from ..groupediting.correspondence import ViewGeometry

logger = logging.getLogger(__name__)


def subject_mask(position: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose world position is set (finite and not exactly 0, the ViewSet's "outside")."""
    return np.isfinite(position).all(axis=-1) & np.any(position != 0, axis=-1)


def view_geometry(group: EditInput) -> list[ViewGeometry] | None:
    """N :class:`ViewGeometry` from the job's ``position`` pass and cameras, or None when either is missing."""
    from ..groupediting.correspondence import ViewGeometry

    positions = group.geometry.get("position")
    if positions is None or group.cameras is None:
        if positions is not None or group.cameras is not None:
            logger.warning("exact Ge-RoPE needs both the position pass and the cameras; this job has only the %s: "
                           "the contour flow is used", "position pass" if positions is not None else "cameras")
        return None
    return [ViewGeometry(position=np.asarray(p, np.float32), mask=subject_mask(np.asarray(p)),
                         K=np.asarray(k, np.float64), camera_to_world=np.asarray(c2w, np.float64))
            for p, (k, c2w) in zip(positions, group.cameras)]


def preview_every(steps: int) -> int:
    """Denoising steps between two live previews: about ten previews a job (and always the last step)."""
    return max(1, steps // 10)


class GroupEditingEditor(Editor):
    """Edits a group of views with the GroupEditing model (see the module docstring).

    Keyword arguments: the server's flags, by name (``model_dir``, ``weights``, ``vggt``, ``dtype``, ``offload``,
    ... :class:`~backend.groupediting.settings.LoadSettings`; ``preset``, ``steps``, ... the edit defaults,
    :class:`~backend.groupediting.settings.EditSettings`): defaults, ranges and help are written there, once.
    ``model_dir`` is required. See docs/models.md.
    """

    name = "groupediting"

    def __init__(self, **config: Any) -> None:
        from ..groupediting.settings import settings_from

        self.settings, self.defaults = settings_from(config)
        if self.settings.model_dir is None:
            raise ModelNotReady("the groupediting editor needs --model-dir (the diffusers Wan2.1-VACE directory); "
                                "see docs/models.md for what to download")
        import torch

        from ..groupediting.loader import cached_pipeline

        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        self.pipeline, self.report = cached_pipeline(self.settings)
        preferred = (self.report.metadata if self.report is not None else {}).get("preset")
        if "preset" not in config and preferred:
            self.defaults = self.defaults.with_options({"preset": preferred})

    def info(self) -> dict[str, Any]:
        from ..groupediting.loader import resolved_device, resolved_dtype
        from ..groupediting.recipe import RECIPES

        s, resolved = self.settings, self.defaults.resolved()
        return {
            "name": self.name, "model": s.model_dir, "weights": s.weights,
            "device": resolved_device(s), "dtype": str(resolved_dtype(s)).removeprefix("torch."),
            "offload": s.offload, "preset": resolved.preset, "presets": {k: r.about for k, r in RECIPES.items()},
            "geometry_tokens": "vggt" if self.pipeline.geometry_encoder is not None else "off",
            "vggt": s.vggt,
            "weights_warnings": self.report.warnings() if self.report is not None else [],
            "geometry_passes": ["position"], "cameras": True,
            "defaults": {k: v for k, v in resolved.to_dict().items() if k != "negative_prompt"},
        }

    def edit(self, group: EditInput, instruction: str, options: dict[str, Any], progress: Progress,
             cancel: CancelCheck) -> EditResult:
        """N uint8 (H_i, W_i, 3) edited views and the metadata of the edit (see the module doc)."""
        import torch

        group.check()
        if group.reference is not None:
            raise InvalidInput("the groupediting editor does not use a reference image: describe the look in the "
                               "instruction (the classical editor transfers a reference's colours)")
        settings = self.defaults.with_options(options)
        geometry = view_geometry(group) if settings.recipe.flow == "positions" else None
        tokens = None if group.geometry_tokens is None else torch.from_numpy(group.geometry_tokens)[None]
        logger.info("groupediting: %d views, preset %s, seed %d", len(group.images), settings.preset, settings.seed)
        out = self.pipeline(
            group.images, [np.asarray(m, bool) for m in group.masks], instruction, settings=settings,
            description=group.description, subject=group.subject, geometry=geometry, geometry_tokens=tokens,
            progress=progress, cancel=cancel, preview=self.preview,
            preview_every=preview_every(settings.resolved().steps or 1),
        )
        return EditResult(out.images, out.metadata)
