"""The consistency score of a group of views, from the capture's exact geometry (bpy-free; docs/exports.md).

Every view's object pixels are carried into every other view through the ``position`` pass (the surface point at
each pixel centre) and the other camera; where that view sees the same point (inside its object mask, and its
``depth`` at that pixel agrees: not occluded), the two colours are compared, the other view's sampled bilinearly
from object pixels only. Per view pair: the PSNR over those co-visible pixels and a disagreement image (in the first
view's frame); overall: ``consistency_db``, the PSNR of all co-visible pixels of all pairs (higher: more consistent).

The second figure, :func:`texel_spread`, looks from the texture's side: how far apart the views' samples of each
texel lie when the bake gathers them (the weighted standard deviation per texel, its RMS over the seen texels, in
8-bit levels): what a bake would average away.

What views of one object can share is what does not depend on the view: on diffuse surfaces under the capture's
light the lit views agree closely; highlights and reflections move between views and lower the score of the capture
itself, which is the ceiling an edit of it can reach (``groupedit score`` reports both).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .format.cameras import Camera

#: Disagreement images show the absolute difference this many times brighter.
DISAGREEMENT_GAIN = 4
#: A point counts as seen by the other view when its depth there is within this many pixel footprints of the
#: other view's depth pass (the footprint: depth / focal length).
DEPTH_TOLERANCE_PX = 3.0


@dataclass
class PairScore:
    """Views ``a`` and ``b``: the co-visible ``pixels`` (of ``a``) and their PSNR in dB (NaN when none)."""

    a: str
    b: str
    pixels: int
    psnr_db: float


@dataclass
class ConsistencyReport:
    """``consistency_db``: the PSNR of every co-visible pixel of every pair; ``pairs``: per pair; ``worst_pair``."""

    consistency_db: float = math.nan
    pixels: int = 0
    pairs: list[PairScore] = field(default_factory=list)
    worst_pair: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"{p.a} ~ {p.b}: {p.psnr_db:.1f} dB on {p.pixels} co-visible pixels" for p in self.pairs if p.pixels]
        out.append(f"consistency: {self.consistency_db:.1f} dB over {self.pixels} co-visible pixels of "
                   f"{sum(p.pixels > 0 for p in self.pairs)} view pairs (worst {self.worst_pair})")
        return out


def _bilinear(image: np.ndarray, valid: np.ndarray, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (H, W, C) sampled at pixel coordinates (u, v) (pixel centres at +0.5), and whether all four taps
    lie in ``valid`` (H, W)."""
    h, w = valid.shape
    x, y = u - 0.5, v - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    inside = (x0 >= 0) & (y0 >= 0) & (x0 + 1 < w) & (y0 + 1 < h)
    x0, y0 = np.where(inside, x0, 0), np.where(inside, y0, 0)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    ok = inside.copy()
    out = np.zeros((len(u), image.shape[2]), np.float64)
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        ok &= valid[y0 + dy, x0 + dx]
        out += wgt * image[y0 + dy, x0 + dx]
    return out, ok


def consistency(names: list[str], images: list[np.ndarray], cameras: list[Camera], positions: list[np.ndarray],
                masks: list[np.ndarray], depths: list[np.ndarray]) -> tuple[ConsistencyReport, dict[tuple[int, int], np.ndarray]]:
    """Score the views ``images`` (N uint8 (H_i, W_i, 3)) of one capture (its ``cameras``, ``position`` (H, W, 3),
    ``mask`` (H, W) and planar ``depth`` (H, W) passes): the report and, per pair (i, j) with i < j, a uint8
    disagreement image in view i's frame (``|image_i - image_j carried to i|`` times :data:`DISAGREEMENT_GAIN`,
    black where view j does not see view i's surface)."""
    n = len(images)
    if not (n == len(cameras) == len(positions) == len(masks) == len(depths) == len(names)):
        raise InvalidInputError("the score needs one image, camera, position, mask and depth pass per view")
    for name, image, cam in zip(names, images, cameras):
        k = cam.intrinsics
        if image.shape[:2] != (k.height, k.width):
            raise InvalidInputError(f"view {name}: the image is {image.shape[1]}x{image.shape[0]}, its camera "
                                    f"{k.width}x{k.height}")
    report, disagreement = ConsistencyReport(), {}
    squared, count = 0.0, 0
    for i in range(n):
        rows, cols = np.nonzero(masks[i])
        points = positions[i][rows, cols].astype(np.float64)
        colour_i = images[i][rows, cols, :3].astype(np.float64)
        for j in range(i + 1, n):
            uv, z = cameras[j].project(points)
            depth_j, _ = _bilinear(depths[j][..., None].astype(np.float64), masks[j], uv[:, 0], uv[:, 1])
            fx = cameras[j].intrinsics.fx
            sampled, seen = _bilinear(images[j][..., :3].astype(np.float64), masks[j], uv[:, 0], uv[:, 1])
            seen &= (z > 0) & (np.abs(depth_j[:, 0] - z) <= DEPTH_TOLERANCE_PX * np.maximum(z, 1e-9) / fx)
            diff = colour_i[seen] - sampled[seen]
            pixels = int(seen.sum())
            mse = float((diff ** 2).mean()) if pixels else math.nan
            report.pairs.append(PairScore(names[i], names[j], pixels,
                                          math.nan if not pixels else (math.inf if mse == 0 else
                                                                       10 * math.log10(255.0 ** 2 / mse))))
            squared += float((diff ** 2).sum())
            count += diff.size
            image = np.zeros(images[i].shape[:2] + (3,), np.uint8)
            image[rows[seen], cols[seen]] = np.clip(np.abs(diff) * DISAGREEMENT_GAIN, 0, 255).astype(np.uint8)
            disagreement[(i, j)] = image
    report.pixels = count // 3
    if count:
        mse = squared / count
        report.consistency_db = math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
    scored = [p for p in report.pairs if p.pixels]
    if scored:
        worst = min(scored, key=lambda p: p.psnr_db)
        report.worst_pair = f"{worst.a} ~ {worst.b}"
    return report, disagreement


def viewset_consistency(vs: Any, images: list[np.ndarray]) -> tuple[ConsistencyReport, dict[tuple[int, int], np.ndarray]]:
    """:func:`consistency` of ``images`` (the ViewSet's order) with the ViewSet ``vs``'s geometry passes."""
    return consistency([v.name for v in vs.views], images, [v.camera for v in vs.views],
                       [vs.load(v, "position") for v in vs.views], [vs.load(v, "mask") for v in vs.views],
                       [vs.load(v, "depth") for v in vs.views])


def texel_spread(vs: Any, images: list[np.ndarray], size: int = 512) -> float:
    """RMS over the texels of a ``size``² texture of the ViewSet ``vs`` of the weighted standard deviation of the
    views' samples (``images``: N uint8 (H, W, 3), sRGB levels) as the bake gathers them; NaN when no texel is seen
    or the mesh has no UV map."""
    from .bake.gather import BakeView, gather
    from .bake.uv_raster import rasterise_uv

    mesh = vs.mesh()
    if mesh.uvs.shape[1] != 3:
        return math.nan
    surface = rasterise_uv(mesh, size)
    views = []
    for v, image in zip(vs.views, images):
        x = image[..., :3].astype(np.float32)
        views.append(BakeView(v.camera, np.concatenate([x, x * x], axis=2), vs.load(v, "position"), vs.load(v, "mask"),
                              vs.load(v, "uv"), vs.load(v, "normal")))
    g = gather(surface, views)
    seen = g.seen
    if not seen.any():
        return math.nan
    mean, square = g.value[seen, :3], g.value[seen, 3:]
    variance = np.clip(square - mean * mean, 0.0, None).mean(axis=1)
    return float(np.sqrt(variance.mean()))
