"""Ge-RoPE flow from masks alone, as the public release computes it: a thin-plate spline between mask contours.

For two views with masks ``a`` and ``b`` (the dilated edit masks), the release:

1. takes the largest external contour of each mask (OpenCV ``findContours`` with ``RETR_EXTERNAL`` and
   ``CHAIN_APPROX_NONE``, largest by ``contourArea``), as ``(x, y)`` pixel points;
2. normalises each contour for matching: centred on its mean and rotated onto its principal axes (SVD);
3. matches every point of ``a``'s contour to the nearest point of ``b``'s contour in those normalised frames;
4. fits a thin-plate spline (kernel ``d² log(d² + 1e-6)``, affine part, ``λ = 1e-3`` on the whole diagonal)
   from ``a``'s contour points to their matches, in pixels;
5. evaluates it at ``a``'s foreground pixels: the displacement ``(dx, dy) = TPS(x, y) - (x, y)``; 0 elsewhere.

Two deliberate differences, both in the matching step only (the spline is fitted to the original pixel points):

* an SVD gives each principal axis up to its sign, and the release takes whatever sign it returns for each view,
  so a contour is now and then matched to a mirrored or half-turned copy of the other (a uniform 15 % scale of a
  test shape already flips an axis, and the flow is then tens of pixels off). Here ``b``'s axes take the signs, of
  the four combinations, under which its normalised contour lies closest to ``a``'s (mean nearest-point distance);
* the normalised contours are also divided by their RMS radius, so that views at different distances (the object
  larger in one) match point to point instead of inner points to outer ones.

For two views of one size and orientation the matches, and so the flow, are the release's.

Pixel coordinates are integer pixel indices ``(x, y)`` = (column, row), as OpenCV reports contour points; the
displacement is in pixels of the same image. Everything runs in float32 as in the release (which runs it on a GPU
with torch; the same operations run here on any torch device).

Cost: the spline solve is cubic in the contour length; contours longer than ``max_points`` are subsampled evenly
along their length (the release uses every point; below the cap the result is the release's).
Evaluation is restricted to the pixels a caller names (``at``): the token-grid resize reads only a few pixels per
token, so computing the field there alone gives the same grid values (to float32 rounding) at a fraction of the
cost.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import cv2
import numpy as np
import torch

logger = logging.getLogger(__name__)

#: Thin-plate-spline regularisation the release uses.
TPS_LAMBDA = 1e-3
#: Longest contour used as is; longer ones are subsampled evenly (bounded cost on large masks).
MAX_CONTOUR_POINTS = 2048


def largest_contour(mask: np.ndarray, max_points: int = MAX_CONTOUR_POINTS) -> np.ndarray:
    """(P, 2) float32 ``(x, y)`` points of the largest external contour of a bool (H, W) mask; (0, 2) if empty.

    More than ``max_points`` points are thinned to every ``ceil(P / max_points)``-th one.
    """
    binary = np.ascontiguousarray(np.asarray(mask, bool).astype(np.uint8) * 255)
    contours, _ = cv2.findContours(binary, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return np.zeros((0, 2), np.float32)
    points = max(contours, key=cv2.contourArea).reshape(-1, 2).astype(np.float32)
    if len(points) > max_points:
        points = points[:: -(-len(points) // max_points)]
    return points


def _normalise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred points rotated onto their principal axes, the centre, and the rotation (the release's PCA step)."""
    centre = points.mean(axis=0)
    centred = points - centre
    _, _, vh = np.linalg.svd(centred)
    return centred @ vh.T, centre, vh


def _unit(points: torch.Tensor) -> torch.Tensor:
    """Points divided by their RMS distance from the origin (matching only)."""
    return points / points.pow(2).sum(-1).mean().sqrt().clamp_min(1e-6)


def _best_signs(normal_a: torch.Tensor, normal_b: torch.Tensor) -> torch.Tensor:
    """(2,) signs for ``b``'s principal axes that bring its normalised contour closest to ``a``'s."""
    best, signs = None, None
    for sy in (1.0, -1.0):
        for sx in (1.0, -1.0):
            flip = torch.tensor([sy, sx], dtype=normal_a.dtype, device=normal_a.device)
            cost = torch.cdist(normal_a, normal_b * flip).min(dim=1).values.mean()
            if best is None or cost < best:
                best, signs = cost, flip
    return signs


def _tps_kernel(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d2 = torch.cdist(x, y, p=2) ** 2
    return d2 * torch.log(d2 + 1e-6)


def tps_displacement(
    mask_from: np.ndarray, mask_to: np.ndarray, at: np.ndarray | None = None,
    max_points: int = MAX_CONTOUR_POINTS, device: str | torch.device = "cpu",
) -> np.ndarray:
    """The release's contour thin-plate-spline flow from ``mask_from`` to ``mask_to`` (see the module doc).

    Args:
        mask_from, mask_to: bool (H, W) masks of the two views (the same size).
        at: optional bool (H, W): evaluate only at these pixels (and the foreground of ``mask_from``).
        max_points: contour length cap (see :func:`largest_contour`).
        device: torch device of the solve.

    Returns:
        (2, H, W) float32 ``(dx, dy)`` in pixels, 0 outside ``mask_from`` (and outside ``at``). All zero when either
        mask has no contour.
    """
    mask_from, mask_to = np.asarray(mask_from, bool), np.asarray(mask_to, bool)
    h, w = mask_from.shape
    out = np.zeros((2, h, w), np.float32)
    c1, c2 = largest_contour(mask_from, max_points), largest_contour(mask_to, max_points)
    if len(c1) == 0 or len(c2) == 0:
        return out
    p1, centre1, r1 = _normalise(c1)
    p2, centre2, r2 = _normalise(c2)
    t = dict(dtype=torch.float32, device=device)
    p1t, p2t = torch.as_tensor(p1, **t), torch.as_tensor(p2, **t)
    signs = _best_signs(_unit(p1t), _unit(p2t))
    p2t, r2t = p2t * signs, torch.as_tensor(r2, **t) * signs[:, None]
    nearest = torch.argmin(((_unit(p1t)[:, None] - _unit(p2t)[None]) ** 2).sum(-1), dim=1)
    src = p1t @ torch.as_tensor(r1, **t) + torch.as_tensor(centre1, **t)
    dst = p2t[nearest] @ r2t + torch.as_tensor(centre2, **t)
    n = len(src)
    ones = torch.ones((n, 1), **t)
    p = torch.cat([ones, src], dim=1)
    system = torch.cat([torch.cat([_tps_kernel(src, src), p], dim=1),
                        torch.cat([p.T, torch.zeros((3, 3), **t)], dim=1)], dim=0)
    system = system + TPS_LAMBDA * torch.eye(n + 3, **t)
    rhs = torch.cat([dst, torch.zeros((3, 2), **t)], dim=0)
    try:
        weights = torch.linalg.solve(system, rhs)
    except RuntimeError:  # singular (degenerate contours): the release falls back to the pseudo-inverse
        weights = torch.linalg.pinv(system) @ rhs
    where = mask_from if at is None else mask_from & np.asarray(at, bool)
    ys, xs = np.nonzero(where)
    if len(ys) == 0:
        return out
    xy = torch.as_tensor(np.stack([xs, ys], axis=1), **t)
    mapped = torch.cat([_tps_kernel(xy, src), torch.ones((len(xy), 1), **t), xy], dim=1) @ weights
    moved = (mapped - xy).cpu().numpy()
    out[0, ys, xs] = moved[:, 0]
    out[1, ys, xs] = moved[:, 1]
    return out


def bilinear_taps(size: int, out_size: int) -> np.ndarray:
    """Indices of the input samples ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    reads along one axis when resizing ``size`` samples to ``out_size`` (sorted, unique)."""
    scale = size / out_size
    src = np.maximum((np.arange(out_size) + 0.5) * scale - 0.5, 0.0)
    lo = np.floor(src).astype(np.int64)
    return np.unique(np.concatenate([np.minimum(lo, size - 1), np.minimum(lo + 1, size - 1)]))


def chain_flows(masks: Sequence[np.ndarray], grid: tuple[int, int] | None = None,
                max_points: int = MAX_CONTOUR_POINTS) -> np.ndarray:
    """Contour flows between consecutive views, as the release stores them: (N-1, 2, H, W) float32 ``(dx, dy)``
    pixels, flow ``i`` from view ``i`` to view ``i + 1``.

    ``grid``: the token grid ``(h, w)`` the flows will be resized to; when given, the spline is evaluated only at
    the pixels that resize reads (:func:`bilinear_taps`), which leaves the resized values unchanged.
    """
    if len(masks) < 2:
        h, w = np.shape(masks[0]) if masks else (0, 0)
        return np.zeros((0, 2, h, w), np.float32)
    h, w = np.shape(masks[0])
    at = None
    if grid is not None:
        at = np.zeros((h, w), bool)
        at[np.ix_(bilinear_taps(h, grid[0]), bilinear_taps(w, grid[1]))] = True
    flows = [tps_displacement(masks[i], masks[i + 1], at, max_points) for i in range(len(masks) - 1)]
    return np.stack(flows).astype(np.float32)
