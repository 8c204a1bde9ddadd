"""Image comparison for bake diagnostics: PSNR, SSIM and island-border bands, on masked texels."""

from __future__ import annotations

import math

import numpy as np


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB of uint8 images (H, W, C) over ``mask`` (inf when identical, nan when the mask is empty)."""
    if not mask.any():
        return float("nan")
    mse = float(((a[mask].astype(np.float64) - b[mask].astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def _box(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window (edges padded by reflection), per channel."""
    p = np.pad(x, ((r + 1, r), (r + 1, r)) + ((0, 0),) * (x.ndim - 2), mode="reflect")
    c = p.cumsum(0).cumsum(1)
    k = 2 * r + 1
    return (c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]) / (k * k)


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray, radius: int = 3) -> float:
    """Mean SSIM (7x7 box windows, per channel, on 0..255 values) over ``mask``."""
    if not mask.any():
        return float("nan")
    x, y = a.astype(np.float64), b.astype(np.float64)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mx, my = _box(x, radius), _box(y, radius)
    vx, vy = _box(x * x, radius) - mx**2, _box(y * y, radius) - my**2
    cxy = _box(x * y, radius) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(s.mean(axis=-1)[mask].mean())


def erode(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` shrunk by ``steps`` texels (4-neighbourhood): the interior away from island borders."""
    m = mask.copy()
    for _ in range(steps):
        n = m.copy()
        n[1:] &= m[:-1]
        n[:-1] &= m[1:]
        n[:, 1:] &= m[:, :-1]
        n[:, :-1] &= m[:, 1:]
        n[0, :] = n[-1, :] = n[:, 0] = n[:, -1] = False
        m = n
    return m
