"""The editor interface: a group of views + masks + one instruction in, one edited image per view out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import Cancelled, InvalidInput

#: ``progress(stage, step, total)``; may be called often, must be cheap.
Progress = Callable[[str, int, int], None]
#: Returns True when the job should stop; editors check it between steps.
CancelCheck = Callable[[], bool]
#: ``preview(step, images)``: N uint8 (h_i, w_i, 3) sRGB images, a cheap look at the edit so far (any size:
#: latent resolution is fine). ``step`` counts like progress's. May be throttled or dropped by the receiver.
Preview = Callable[[int, list[np.ndarray]], None]


@dataclass
class EditInput:
    """One group of views to edit.

    ``images``: N uint8 arrays (H_i, W_i, 3), sRGB. ``masks``: N bool arrays (H_i, W_i), True where the
    edit applies. ``reference``: an optional uint8 (H, W, 3) style/colour reference image.
    ``geometry``: optional per-view arrays from the ViewSet by pass name, each a list of N arrays at the views'
    sizes (``position``: float32 (H_i, W_i, 3) world point at each pixel centre, 0 outside the object).
    ``cameras``: optional N pairs ``(K, camera_to_world)``: K float64 (3, 3) intrinsics in pixels of the image
    (origin at the top-left corner, v down), camera_to_world float64 (4, 4) rigid OpenCV pose (+Z forward).
    ``description``: optional text saying what the result should show ("red leather jacket"); ``subject``: optional
    label of what the views show (the object's name). ``geometry_tokens``: optional float32 (N*P, C) precomputed
    geometry tokens (VGGT aggregator patch tokens, P per view; see :func:`backend.viewdata.token_array`).
    """

    images: list[np.ndarray]
    masks: list[np.ndarray]
    reference: np.ndarray | None = None
    geometry: dict[str, list[np.ndarray]] = field(default_factory=dict)
    cameras: list[tuple[np.ndarray, np.ndarray]] | None = None
    description: str | None = None
    subject: str | None = None
    geometry_tokens: np.ndarray | None = None

    def check(self) -> None:
        """Raise :class:`InvalidInput` unless images and masks are a consistent group."""
        if not self.images:
            raise InvalidInput("a job needs at least one view")
        if len(self.images) != len(self.masks):
            raise InvalidInput(f"{len(self.images)} images but {len(self.masks)} masks: send one mask per view")
        for i, (img, m) in enumerate(zip(self.images, self.masks)):
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
                raise InvalidInput(f"view {i}: image must be RGB 8-bit, got {img.dtype} {img.shape}")
            if m.shape != img.shape[:2]:
                raise InvalidInput(f"view {i}: mask is {m.shape[1]}x{m.shape[0]} but the image is {img.shape[1]}x{img.shape[0]}")
        for name, arrays in self.geometry.items():
            if len(arrays) != len(self.images):
                raise InvalidInput(f"{len(arrays)} {name} arrays for {len(self.images)} views: send one per view")
            for i, (a, img) in enumerate(zip(arrays, self.images)):
                if a.shape[:2] != img.shape[:2]:
                    raise InvalidInput(f"view {i}: {name} is {a.shape[1]}x{a.shape[0]} but the image is "
                                       f"{img.shape[1]}x{img.shape[0]}")
        if self.cameras is not None:
            if len(self.cameras) != len(self.images):
                raise InvalidInput(f"{len(self.cameras)} cameras for {len(self.images)} views: send one per view")
            for i, (k, c2w) in enumerate(self.cameras):
                if np.shape(k) != (3, 3) or np.shape(c2w) != (4, 4):
                    raise InvalidInput(f"view {i}: camera K must be 3x3 and camera_to_world 4x4, got "
                                       f"{np.shape(k)} and {np.shape(c2w)}")


@dataclass
class EditResult:
    """What an editor returns: N uint8 (H_i, W_i, 3) ``images`` in the input's order and sizes, and ``metadata``
    (JSON-ready: how the edit was made, reported with the job's result)."""

    images: list[np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, value: EditResult | list[np.ndarray]) -> EditResult:
        """An :class:`EditResult` from what :meth:`Editor.edit` returned (editors may return a plain image list)."""
        return value if isinstance(value, EditResult) else cls(list(value))


class Editor(ABC):
    """Edits a group of views consistently. Subclasses set ``name`` and implement :meth:`edit`.

    ``preview``: set by the server's worker for the duration of a job (None otherwise, and for callers that do
    not want previews). Editors that can show intermediate results call :meth:`send_preview`; the others need
    nothing, so the :meth:`edit` signature is unchanged.
    """

    name: str = ""
    preview: Preview | None = None

    def send_preview(self, step: int, images: list[np.ndarray]) -> None:
        """Hand ``images`` (N uint8 (h, w, 3)) to :attr:`preview` when one is set; a no-op otherwise."""
        if self.preview is not None:
            self.preview(step, images)

    def info(self) -> dict[str, Any]:
        """What the health endpoint reports about this editor (model, weights, device)."""
        return {"name": self.name, "model": None, "weights": None, "device": "cpu", "dtype": None}

    @abstractmethod
    def edit(self, group: EditInput, instruction: str, options: dict[str, Any], progress: Progress,
             cancel: CancelCheck) -> EditResult | list[np.ndarray]:
        """N uint8 (H_i, W_i, 3) images, in the input's order and sizes, as an :class:`EditResult` (with metadata)
        or a plain list."""


def check_cancel(cancel: CancelCheck) -> None:
    """Raise :class:`Cancelled` when ``cancel()`` says so (call between steps)."""
    if cancel():
        raise Cancelled("the job was cancelled")
