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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """A readable summary, one line per view and an overall line."""
        out = [f"{v.name}: {v.psnr_db:.1f} dB ({v.off_share:.1%} of its object pixels off by more than 8 levels)"
               for v in self.views]
        out.append(f"closed loop (restyled asset re-rendered vs edited views): {self.psnr_db:.1f} dB overall, "
                   f"worst {self.worst_view}")
        return out


def closed_loop(names: list[str], edited: list[np.ndarray], rendered: list[np.ndarray], masks: list[np.ndarray]
                ) -> tuple[LoopReport, list[np.ndarray]]:
    """Compare edited views with re-renders of the restyled asset: the report and N uint8 error images
    (``|edited - rendered|`` times :data:`ERROR_GAIN`, black off the object).

    ``edited`` / ``rendered``: N uint8 sRGB (H, W, 3) of the same sizes; ``masks``: N bool (H, W) object pixels.
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
    return report, errors
