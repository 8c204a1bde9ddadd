"""Per-token RoPE coordinates of a group, as a :class:`~.recipe.Recipe` asks for them.

The group is a pseudo-video of N frames on one canvas of ``h x w`` tokens (views of different sizes sit at the
top-left of the canvas). A token's coordinates are ``(t, a, b)`` in token units (see :mod:`.correspondence`).

Ge-RoPE follows the release's chain: frame ``i < N - 1`` takes the positions its tokens have in frame ``i + 1``
(``grid + Δ_{i→i+1}``), the last frame is the anchor and keeps the grid; time keeps the grid. The displacement
comes from the exact position-pass correspondences (:func:`~.correspondence.exact_chain_displacements`, masked
blur) or from the release's mask-contour flow (:func:`~.contour_flow.chain_flows`, then
:func:`release_token_flow`: bilinear to the grid, ``/16``, Gaussian kernel 21 / σ 11 with zero padding over the
whole grid). Then, as the release indexes its integer frequency bank, every warped ``(a, b)`` is clamped to the
range the view's own grid spans and rounded down (``floor(clamp(grid + Δ))``).

Identity-RoPE (the ``paper`` recipe) subtracts each view's subject-box corner ``o_i`` first; the displacement then
connects box-relative positions (``Δ - (o_{i+1} - o_i)`` where a correspondence exists) and the clamp range moves
with the box (``[-o_i, h - 1 - o_i]``).

The geometry tokens' coordinates are the release's: ``t = round(linspace(0, F-1, G_f))``,
``a = round(linspace(0, h-1, 37))``, ``b = round(linspace(0, w-1, 37))`` (:func:`geometry_token_coordinates`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidInput
from .contour_flow import chain_flows
from .correspondence import PIXELS_PER_TOKEN, ViewGeometry, exact_chain_displacements, identity_offsets
from ..viewdata import TOKEN_SIDE
from .recipe import BranchCoordinates, Recipe


@dataclass(frozen=True)
class GroupLayout:
    """Where the views sit: ``sizes`` N model sizes ``(H_i, W_i)`` in pixels (multiples of 16) on a ``canvas``
    ``(H, W)`` (the largest of each side); ``grid`` the canvas in tokens; ``view_grids`` each view in tokens."""

    sizes: tuple[tuple[int, int], ...]
    canvas: tuple[int, int]

    @property
    def n(self) -> int:
        return len(self.sizes)

    @property
    def grid(self) -> tuple[int, int]:
        return self.canvas[0] // PIXELS_PER_TOKEN, self.canvas[1] // PIXELS_PER_TOKEN

    @property
    def view_grids(self) -> list[tuple[int, int]]:
        return [(h // PIXELS_PER_TOKEN, w // PIXELS_PER_TOKEN) for h, w in self.sizes]


@dataclass(frozen=True)
class RopeCoordinates:
    """The coordinates of both branches: ``main`` / ``vace`` (S, 3) float32 or None (the stock grid), the
    source of the Ge-RoPE displacement (``"contours"``, ``"positions"`` or ``"none"``), and ``moved``: how many
    tokens the displacement actually moved to another integer position (after smoothing, clamp and floor; 0 means
    Ge-RoPE changed nothing for this group)."""

    main: np.ndarray | None
    vace: np.ndarray | None
    flow_source: str
    moved: int = 0


def gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    """The release's normalised 1-D Gaussian: ``exp(-(i - size//2)² / (2σ²))`` for i in 0..size-1, summing to 1."""
    k = torch.tensor([math.exp(-((i - size // 2) ** 2) / (2 * sigma**2)) for i in range(size)], dtype=torch.float32)
    return k / k.sum()


def release_token_flow(flows_px: np.ndarray, grid: tuple[int, int], kernel: int = 21, sigma: float = 11.0
                       ) -> np.ndarray:
    """The release's smoothing of pixel flows: (N-1, 2, H, W) ``(dx, dy)`` pixels -> (N-1, h, w, 2) ``(dh, dw)``
    tokens: bilinear resize (``align_corners=False``) to ``grid``, divided by 16, then a ``kernel`` x ``kernel``
    Gaussian of std ``sigma`` (normalised) with zero padding over the whole grid."""
    if len(flows_px) == 0:
        return np.zeros((0, *grid, 2), np.float32)
    flow = torch.from_numpy(np.ascontiguousarray(flows_px, np.float32))
    flow = F.interpolate(flow, size=grid, mode="bilinear", align_corners=False) / float(PIXELS_PER_TOKEN)
    k1 = gaussian_kernel(kernel, sigma)
    k2 = (k1[:, None] * k1[None, :])[None, None]
    n = flow.shape[0]
    blurred = F.conv2d(flow.reshape(n * 2, 1, *grid), k2, padding=kernel // 2).reshape(n, 2, *grid)
    return blurred.permute(0, 2, 3, 1).flip(-1).numpy().astype(np.float32)  # (dx, dy) -> (dh, dw)


def token_cover(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: tokens of ``grid`` that contain any pixel of the (H, W) ``mask``."""
    m = np.asarray(mask, bool)
    rows = np.minimum(((np.arange(m.shape[0]) + 0.5) * grid[0] / m.shape[0]).astype(np.int64), grid[0] - 1)
    cols = np.minimum(((np.arange(m.shape[1]) + 0.5) * grid[1] / m.shape[1]).astype(np.int64), grid[1] - 1)
    out = np.zeros(grid, bool)
    ii, jj = np.nonzero(m)
    out[rows[ii], cols[jj]] = True
    return out


def chain_coordinates(grid: tuple[int, int], displacements: np.ndarray, offsets: np.ndarray | None = None
                      ) -> np.ndarray:
    """``floor(clamp(grid - o + Δ))`` for a chain of N frames: (N*h*w, 3) float32, frame-major.

    ``displacements``: (N-1, h, w, 2) ``(dh, dw)`` token units, frame ``i``'s move to frame ``i + 1`` (the last
    frame keeps the grid). ``offsets``: optional (N, 2) box corners ``o`` (Identity-RoPE). ``(a, b)`` are clamped
    to ``[-o, (h, w) - 1 - o]`` (the view's own grid) and floored; ``t`` is the frame index.
    """
    h, w = grid
    n = len(displacements) + 1
    if displacements.shape[1:] != (h, w, 2):
        raise InvalidInput(f"displacements must be (N-1, {h}, {w}, 2), got {displacements.shape}")
    o = np.zeros((n, 2), np.float32) if offsets is None else np.asarray(offsets, np.float32)
    if o.shape != (n, 2):
        raise InvalidInput(f"offsets must be ({n}, 2), got {o.shape}")
    # float32 throughout, as the release computes grid + flow before its integer cast (floor of a float64 sum can
    # differ where the float32 sum rounds onto an integer)
    t, a, b = np.meshgrid(np.arange(n, dtype=np.float32), np.arange(h, dtype=np.float32),
                          np.arange(w, dtype=np.float32), indexing="ij")
    ab = np.stack([a, b], axis=-1)
    ab[:-1] += displacements.astype(np.float32)
    lo = -o[:, None, None, :]
    ab = np.clip(ab + lo, lo, lo + np.array([h - 1, w - 1], np.float32))
    return np.concatenate([t[..., None], np.floor(ab)], axis=-1).reshape(-1, 3).astype(np.float32)


def _on_canvas(field: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    out = np.zeros((*grid, 2), np.float32)
    out[: field.shape[0], : field.shape[1]] = field
    return out


def rope_coordinates(
    recipe: Recipe,
    layout: GroupLayout,
    flow_masks: Sequence[np.ndarray],
    geometry: Sequence[ViewGeometry] | None = None,
    flow_sigma: float | None = None,
) -> RopeCoordinates:
    """Both branches' coordinates for one group, as ``recipe`` says (see the module doc).

    Args:
        recipe: the preset.
        layout: model sizes and canvas.
        flow_masks: N bool (H, W) canvas masks the contour flow is fitted on (the dilated edit masks, as the
            release) and whose boxes Identity-RoPE takes.
        geometry: optional N :class:`ViewGeometry` at the views' *input* sizes (exact flow).
        flow_sigma: masked-blur std in tokens for exact flow (default: the recipe's).
    """
    kinds: set[BranchCoordinates] = {recipe.main, recipe.vace} - {"grid"}
    if not kinds or recipe.flow == "none":
        return RopeCoordinates(None, None, "none")
    grid = layout.grid
    offsets = None
    if recipe.identity:
        # the box of what is edited (the job's masks: an edit region's, or the whole object's), as the paper boxes its
        # segmented subject; canvas masks hold each view at the top left, so its token units are the view's too
        offsets = identity_offsets(list(flow_masks), [grid] * layout.n)
    if recipe.flow == "positions" and geometry is not None:
        sigma = recipe.flow_sigma if flow_sigma is None else float(flow_sigma)
        fields = exact_chain_displacements(geometry, layout.view_grids, sigma=sigma, offsets=offsets)
        flows = np.stack([_on_canvas(f.delta, grid) for f in fields]) if fields else np.zeros((0, *grid, 2))
        source = "positions"
    else:
        flows = release_token_flow(chain_flows(flow_masks, grid), grid, recipe.blur_kernel, recipe.blur_sigma)
        if offsets is not None:  # box-relative where the view shows its subject
            for i in range(len(flows)):
                flows[i][token_cover(flow_masks[i], grid)] -= (offsets[i + 1] - offsets[i]).astype(np.float32)
        source = "contours"
    out = {}
    if "ge" in kinds:
        out["ge"] = chain_coordinates(grid, flows)
    if "ge_identity" in kinds:
        out["ge_identity"] = chain_coordinates(grid, flows, offsets)
    kind = "ge" if "ge" in kinds else "ge_identity"
    still = chain_coordinates(grid, np.zeros_like(flows, np.float32), offsets if kind == "ge_identity" else None)
    moved = int((out[kind] != still).any(axis=-1).sum())
    return RopeCoordinates(out.get(recipe.main), out.get(recipe.vace), source, moved)


def geometry_token_coordinates(num_frames: int, grid: tuple[int, int], num_geometry_frames: int,
                               side: int = TOKEN_SIDE) -> np.ndarray:
    """RoPE coordinates the release gives its geometry tokens (``num_geometry_frames`` x ``side`` x ``side``).

    ``t = round(linspace(0, F-1, num_geometry_frames))``, ``a = round(linspace(0, h-1, side))``,
    ``b = round(linspace(0, w-1, side))``; returns (num_geometry_frames*side*side, 3) float32, frame-major.
    """
    h, w = grid
    tt = np.round(np.linspace(0, num_frames - 1, num_geometry_frames))
    hh = np.round(np.linspace(0, h - 1, side))
    ww = np.round(np.linspace(0, w - 1, side))
    t, a, b = np.meshgrid(tt, hh, ww, indexing="ij")
    return np.stack([t, a, b], axis=-1).reshape(-1, 3).astype(np.float32)
