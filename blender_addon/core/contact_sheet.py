"""Contact sheets: many views tiled into one image for a quick look."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .errors import InvalidInputError


def fit(image: np.ndarray, size: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to fit a ``size`` x ``size`` tile (box filter down, nearest up), centred."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    rows = np.minimum((np.arange(nh) + 0.5) / scale, h - 1e-6).astype(int)
    cols = np.minimum((np.arange(nw) + 0.5) / scale, w - 1e-6).astype(int)
    if scale < 1:  # average the source pixels that fall into each target pixel
        f = np.cumsum(np.cumsum(np.pad(image.astype(np.float64), ((1, 0), (1, 0), (0, 0))), 0), 1)
        r = np.linspace(0, h, nh + 1).round().astype(int)
        c = np.linspace(0, w, nw + 1).round().astype(int)
        area = np.outer(np.diff(r), np.diff(c))[..., None]
        sums = f[r[1:]][:, c[1:]] - f[r[:-1]][:, c[1:]] - f[r[1:]][:, c[:-1]] + f[r[:-1]][:, c[:-1]]
        small = np.rint(sums / np.maximum(area, 1)).astype(np.uint8)
    else:
        small = image[rows][:, cols]
    tile = np.full((size, size, image.shape[2]), 255, np.uint8)
    top, left = (size - nh) // 2, (size - nw) // 2
    tile[top : top + nh, left : left + nw] = small
    return tile


def contact_sheet(images: Sequence[np.ndarray], tile: int = 256, columns: int | None = None, gap: int = 4) -> np.ndarray:
    """Tile uint8 RGB images (any sizes) into one RGB uint8 sheet with ``columns`` per row (default: square-ish)."""
    if not images:
        raise InvalidInputError("a contact sheet needs at least one image")
    n = len(images)
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    sheet = np.full((rows * tile + (rows + 1) * gap, columns * tile + (columns + 1) * gap, 3), 255, np.uint8)
    for i, img in enumerate(images):
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        r, c = divmod(i, columns)
        y, x = gap + r * (tile + gap), gap + c * (tile + gap)
        sheet[y : y + tile, x : x + tile] = fit(img[..., :3], tile)
    return sheet
