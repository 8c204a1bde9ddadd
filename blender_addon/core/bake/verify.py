"""The closed loop: does the restyled asset, rendered from the capture's cameras, show what the edited views showed?

The bake's own measure (docs/bake.md): after a restyle, the object is rendered again from every capture camera the
way the capture rendered its colour pass, and each render is compared with that view's edited image on the object's
pixels (the capture's mask). Per view: PSNR in dB and an error image; overall: the PSNR of all object pixels
together. Where an edit shows something no texture can reproduce (a highlight painted into one view only, views
that disagree), the loop cannot close there, and the per-view numbers and error images show where. bpy-free.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..metrics import psnr

#: Error images show the absolute difference this many times brighter.
ERROR_GAIN = 4


@dataclass
class ViewLoop:
    """One view: its ``name``, ``psnr_db`` on its object pixels and the share of those pixels off by more than
    8 levels in some channel (``off_share``)."""

    name: str
    psnr_db: float
    off_share: float


@dataclass
class LoopReport:
    """The closed loop of a restyle: every view's :class:`ViewLoop`, the overall PSNR, the worst view."""

    views: list[ViewLoop] = field(default_factory=list)
    psnr_db: float = math.nan
    worst_view: str = ""
    #: Share of the squared error, on surface places seen by two views or more, that differs between the views
    #: showing the place (what no texture can show: a highlight painted into one view, views that disagree);
    #: the rest is shared by the views (what a better bake could still fix). NaN without positions.
    view_dependent_share: float = math.nan
    #: With an edit region: the re-render against the capture's own colour on the object's pixels outside the region
    #: (the rest of the object, which the restyle must leave as it was). NaN without a region.
    outside_psnr_db: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """A readable summary, one line per view and an overall line."""
        out = [f"{v.name}: {v.psnr_db:.1f} dB ({v.off_share:.1%} of its object pixels off by more than 8 levels)"
               for v in self.views]
        out.append(f"closed loop (restyled asset re-rendered vs edited views): {self.psnr_db:.1f} dB overall, "
                   f"worst {self.worst_view}")
        if not math.isnan(self.outside_psnr_db):
            out.append(f"outside the edit region: {self.outside_psnr_db:.1f} dB against the capture (the rest as it "
                       "was)")
        if not math.isnan(self.view_dependent_share):
            out.append(f"{self.view_dependent_share:.0%} of that error differs between the views showing the same "
                       "place (view-dependent: no texture can show it)")
        return out


def view_dependent_share(errors: list[np.ndarray], positions: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """Share of the squared error (float (H, W, 3) per view, signed) that varies between the views seeing one surface
    place, on the places (world-space voxels about two pixels wide, from ``positions`` (H, W, 3)) that two views or
    more see: sum |e - mean|² / sum |e|² over those places' pixels. NaN when no place is seen twice."""
    pts = [p[m] for p, m in zip(positions, masks)]
    steps = [np.linalg.norm(np.diff(p, axis=1), axis=-1)[m[:, 1:] & m[:, :-1]] for p, m in zip(positions, masks)]
    steps = np.concatenate(steps) if steps else np.zeros(0)
    if not len(steps):
        return math.nan
    voxel = 2.0 * float(np.median(steps)) or 1e-6
    keys = np.concatenate([np.floor(p / voxel).astype(np.int64) for p in pts])
    err = np.concatenate([e[m] for e, m in zip(errors, masks)]).astype(np.float64)
    view = np.concatenate([np.full(len(p), i) for i, p in enumerate(pts)])
    _, place = np.unique(keys, axis=0, return_inverse=True)
    place = place.ravel()
    n = int(place.max()) + 1
    views_seeing = np.zeros(n)
    pairs = np.unique(np.stack([place, view], 1), axis=0)
    np.add.at(views_seeing, pairs[:, 0], 1)
    shared = views_seeing[place] >= 2
    if not shared.any():
        return math.nan
    counts = np.bincount(place[shared], minlength=n)[:, None]
    mean = np.stack([np.bincount(place[shared], err[shared, c], minlength=n) for c in range(err.shape[1])], 1)
    mean = mean / np.maximum(counts, 1)
    total = float((err[shared] ** 2).sum())
    return float(((err[shared] - mean[place[shared]]) ** 2).sum() / total) if total > 0 else 0.0


def closed_loop(names: list[str], edited: list[np.ndarray], rendered: list[np.ndarray], masks: list[np.ndarray],
                positions: list[np.ndarray] | None = None,
                outside: tuple[list[np.ndarray], list[np.ndarray]] | None = None) -> tuple[LoopReport, list[np.ndarray]]:
    """Compare edited views with re-renders of the restyled asset: the report and N uint8 error images
    (``|edited - rendered|`` times :data:`ERROR_GAIN`, black off the object).

    ``edited`` / ``rendered``: N uint8 sRGB (H, W, 3) of the same sizes; ``masks``: N bool (H, W) object pixels;
    ``positions``: N float (H, W, 3) world positions of the pixels, for the view-dependent share of the error;
    ``outside``: (the capture's colour views, the edit region's masks) for a capture with a region: the re-render
    against the capture on the object's pixels outside the region.
    """
    if not (len(names) == len(edited) == len(rendered) == len(masks)):
        raise InvalidInputError("the closed loop needs one edited view, one render and one mask per view")
    report, errors = LoopReport(), []
    squared, count = 0.0, 0
    for name, e, r, m in zip(names, edited, rendered, masks):
        if e.shape != r.shape or e.shape[:2] != m.shape:
            raise InvalidInputError(f"view {name}: edited {e.shape}, render {r.shape} and mask {m.shape} differ")
        diff = np.abs(e[..., :3].astype(np.int16) - r[..., :3].astype(np.int16))
        report.views.append(ViewLoop(name, psnr(e[..., :3], r[..., :3], m),
                                     float((diff.max(axis=2)[m] > 8).mean()) if m.any() else 0.0))
        squared += float((diff[m].astype(np.float64) ** 2).sum())
        count += int(m.sum()) * 3
        errors.append(np.where(m[..., None], np.clip(diff * ERROR_GAIN, 0, 255), 0).astype(np.uint8))
    mse = squared / max(count, 1)
    report.psnr_db = math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)
    report.worst_view = min(report.views, key=lambda v: v.psnr_db).name if report.views else ""
    if outside is not None:
        before, regions = outside
        rest = [m & ~r for m, r in zip(masks, regions)]
        if any(r.any() for r in rest):
            x, y = (np.concatenate([im[..., :3][r] for im, r in zip(images, rest)]) for images in (before, rendered))
            report.outside_psnr_db = psnr(x, y, np.ones(len(x), bool))
    if positions is not None:
        signed = [e[..., :3].astype(np.float32) - r[..., :3].astype(np.float32) for e, r in zip(edited, rendered)]
        report.view_dependent_share = view_dependent_share(signed, positions, masks)
    return report, errors
