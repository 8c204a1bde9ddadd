"""Joint resizing of a group of views to one global pixel budget, and back.

All views are scaled by one factor ``s = sqrt(B / Σ H_i W_i)`` (UniRef-Image-Edit's "global pixel budget"), so
their relative scale is kept and the total token count is about ``B / 256`` (16 x 16 pixels per Wan token).

Rounding (exact): each side becomes ``max(m, m * floor(side * s / m + 0.5))`` with ``m = 16`` (nearest multiple of
16, halves rounded up, never below 16). If the rounded sizes exceed the budget, ``s`` is multiplied by 0.99 and the
sides are rounded again, until they fit (or every side is at its minimum). With ``allow_upscale=False``, ``s`` is
first capped at 1, so small views are never enlarged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..errors import InvalidInput

#: Side multiple required by Wan2.1 (VAE factor 8 x patch 2).
SIDE_MULTIPLE = 16


def _round_side(side: float, multiple: int) -> int:
    return max(multiple, multiple * int(math.floor(side / multiple + 0.5)))


def budget_sizes(
    sizes: Sequence[tuple[int, int]],
    pixel_budget: int,
    multiple: int = SIDE_MULTIPLE,
    allow_upscale: bool = True,
) -> list[tuple[int, int]]:
    """Model sizes ``(H'_i, W'_i)`` of views of sizes ``(H_i, W_i)`` under one global pixel budget.

    Args:
        sizes: N ``(H, W)`` sizes in pixels.
        pixel_budget: total pixels ``B`` for all views together (e.g. ``4 * 528 * 528``).
        multiple: sides become multiples of this (16 for Wan2.1).
        allow_upscale: whether views smaller than the budget may be enlarged.

    Returns:
        N ``(H', W')`` sizes, in the input order (see the module doc for the exact rounding).
    """
    if not sizes:
        raise InvalidInput("no views to size")
    if any(h <= 0 or w <= 0 for h, w in sizes):
        raise InvalidInput(f"view sizes must be positive, got {list(sizes)}")
    if pixel_budget < len(sizes) * multiple * multiple:
        raise InvalidInput(f"a pixel budget of {pixel_budget} is too small for {len(sizes)} views "
                           f"(at least {multiple}x{multiple} pixels each)")
    total = float(sum(h * w for h, w in sizes))
    s = math.sqrt(pixel_budget / total)
    if not allow_upscale:
        s = min(s, 1.0)
    out = [(_round_side(h * s, multiple), _round_side(w * s, multiple)) for h, w in sizes]
    for _ in range(500):
        if sum(h * w for h, w in out) <= pixel_budget or all(h == w == multiple for h, w in out):
            break
        s *= 0.99
        out = [(_round_side(h * s, multiple), _round_side(w * s, multiple)) for h, w in sizes]
    return out


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 (H, W, 3) image to ``size = (H', W')`` (Lanczos; identity when the size is unchanged)."""
    if image.shape[:2] == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.LANCZOS))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a bool (H, W) mask to ``size = (H', W')``: area/bilinear average, then ``>= 0.5``."""
    if mask.shape == tuple(size):
        return mask.astype(bool)
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    resample = Image.Resampling.BOX if size[0] <= mask.shape[0] else Image.Resampling.BILINEAR
    return np.asarray(img.resize((size[1], size[0]), resample)) >= 128


def fit_to_budget(
    images: Sequence[np.ndarray], masks: Sequence[np.ndarray], pixel_budget: int, allow_upscale: bool = True
) -> tuple[list[np.ndarray], list[np.ndarray], list[tuple[int, int]]]:
    """Resize every view and mask to its budget size; returns the images, the masks and the model sizes."""
    sizes = budget_sizes([im.shape[:2] for im in images], pixel_budget, allow_upscale=allow_upscale)
    return ([resize_image(im, s) for im, s in zip(images, sizes)],
            [resize_mask(m, s) for m, s in zip(masks, sizes)], sizes)


def restore_sizes(images: Sequence[np.ndarray], sizes: Sequence[tuple[int, int]]) -> list[np.ndarray]:
    """Resize uint8 (H', W', 3) model outputs back to the original ``(H, W)`` sizes, in order."""
    if len(images) != len(sizes):
        raise InvalidInput(f"{len(images)} images but {len(sizes)} sizes")
    return [resize_image(im, s) for im, s in zip(images, sizes)]
