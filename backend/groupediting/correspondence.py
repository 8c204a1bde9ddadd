"""Ge-RoPE displacement fields and Identity-RoPE offsets from rendered geometry (numpy only).

Conventions:

* **Cameras**: pinhole intrinsics ``K`` (3x3, pixels: ``fx, fy, cx, cy``) and an OpenCV camera-to-world pose
  (4x4; camera +X right, +Y down, +Z forward).
* **Pixels**: continuous ``(u, v)``, ``u`` right, ``v`` down, origin at the top-left *corner* of the image, so
  the centre of pixel (row ``i``, column ``j``) is ``(j + 0.5, i + 0.5)``. Position passes hold the world point
  seen at each pixel centre.
* **Tokens**: a view of ``H x W`` pixels becomes a grid of ``h x w`` tokens (``h = H / 16`` for Wan: VAE factor 8
  times patch 2). Token (row ``a``, column ``b``) covers the pixels ``[a H/h, (a+1) H/h) x [b W/w, (b+1) W/w)``
  and has the RoPE coordinates ``(a, b)``; a continuous pixel ``(u, v)`` therefore sits at the token coordinates
  ``(v h/H - 0.5, u w/W - 0.5)``. All displacements and offsets below are ``(dh, dw)`` in these *token units*.

Exact Ge-RoPE (the ``exact`` and ``paper`` recipes, :mod:`.recipe`): for consecutive views ``t`` and ``r = t + 1``
(the release's chain: every view points to the next one, the last view is the anchor), the displacement of pixel
``p`` is ``Δ_{t→r}(p) = π_r(P_t(p)) - p``: where the surface point seen at ``p`` lands in view ``r``, kept only
where that point is visible in ``r`` (``r``'s own position pass at the landing pixel agrees with it to within a few
pixel footprints). Background and unmatched pixels carry no displacement. The pixel field is pooled to the token
grid (mean over the valid pixels of each token) and smoothed by a masked, normalised Gaussian blur (``σ`` in
tokens), then restricted to tokens that show the subject. The release instead fits a thin-plate spline between
mask contours (:mod:`.contour_flow`) and smooths it heavily (:mod:`.coordinates`); exact dense flow needs far less
smoothing, hence the small default ``σ``.

Identity-RoPE: each view's coordinates are taken relative to its subject's mask bounding box, ``grid - o`` with
``o`` the box's top-left corner in token units, so a subject point keeps its phase wherever the subject sits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInput

logger = logging.getLogger(__name__)

#: Pixels per token side for Wan2.1 (VAE spatial factor 8 x transformer patch 2).
PIXELS_PER_TOKEN = 16


@dataclass(frozen=True)
class ViewGeometry:
    """One view's geometry: world positions, where they are valid, and its camera.

    ``position``: (H, W, 3) float world point at each pixel centre. ``mask``: (H, W) bool, True where
    ``position`` is valid (the subject). ``K``: (3, 3) intrinsics in pixels. ``camera_to_world``: (4, 4) OpenCV pose.
    """

    position: np.ndarray
    mask: np.ndarray
    K: np.ndarray
    camera_to_world: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` in pixels."""
        return int(self.mask.shape[0]), int(self.mask.shape[1])

    def check(self, index: int = 0) -> None:
        """Raise :class:`InvalidInput` unless the arrays have consistent shapes."""
        if self.mask.ndim != 2:
            raise InvalidInput(f"view {index}: mask must be (H, W), got {self.mask.shape}")
        if self.position.shape != (*self.mask.shape, 3):
            raise InvalidInput(f"view {index}: position must be (H, W, 3) = {(*self.mask.shape, 3)}, "
                               f"got {self.position.shape}")
        if np.asarray(self.K).shape != (3, 3):
            raise InvalidInput(f"view {index}: K must be 3x3, got {np.asarray(self.K).shape}")
        if np.asarray(self.camera_to_world).shape != (4, 4):
            raise InvalidInput(f"view {index}: camera_to_world must be 4x4, "
                               f"got {np.asarray(self.camera_to_world).shape}")


@dataclass(frozen=True)
class DisplacementField:
    """A token-grid displacement field to the reference view.

    ``delta``: (h, w, 2) float32 ``(dh, dw)`` in token units, 0 where the token shows no subject.
    ``weight``: (h, w) float32 fraction of the token's pixels with a valid, visible correspondence (before blur).
    """

    delta: np.ndarray
    weight: np.ndarray


def project(points: np.ndarray, K: np.ndarray, camera_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points (..., 3) to continuous pixels ``(u, v)`` (..., 2) and camera-frame depth z (...).

    Points with ``z <= 0`` (behind the camera) get NaN pixel coordinates.
    """
    c2w = np.asarray(camera_to_world, dtype=np.float64)
    r, t = c2w[:3, :3], c2w[:3, 3]
    pc = (np.asarray(points, dtype=np.float64) - t) @ r  # world -> camera: R^T (p - t)
    z = pc[..., 2]
    k = np.asarray(K, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = k[0, 0] * pc[..., 0] / z + k[0, 1] * pc[..., 1] / z + k[0, 2]
        v = k[1, 1] * pc[..., 1] / z + k[1, 2]
    uv = np.stack([u, v], axis=-1)
    uv[z <= 0] = np.nan
    return uv, z


def pixel_correspondence(
    src: ViewGeometry, ref: ViewGeometry, tolerance_px: float = 2.0
) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel of ``src`` lands in ``ref``, and whether it is visible there.

    Args:
        src, ref: the two views.
        tolerance_px: a correspondence is kept when some valid reference pixel within one pixel of the landing
            point (3x3 neighbourhood of the pixel containing it) holds a world point within
            ``tolerance_px`` reference pixel footprints (``z / min(fx, fy)`` world units at the point's depth z)
            of the source point. Occluded points land on a nearer surface and fail this test.

    Returns:
        ``uv``: (H_s, W_s, 2) float64 continuous reference pixel coordinates ``(u, v)`` (NaN where undefined);
        ``valid``: (H_s, W_s) bool, the source pixel is subject, projects in front of and inside the reference
        image, and is visible there.
    """
    hs, ws = src.size
    hr, wr = ref.size
    uv, z = project(src.position, ref.K, ref.camera_to_world)
    valid = src.mask.astype(bool) & np.isfinite(uv).all(axis=-1) & (z > 0)
    u, v = uv[..., 0], uv[..., 1]
    valid &= (u >= 0) & (u < wr) & (v >= 0) & (v < hr)
    col = np.clip(np.floor(np.nan_to_num(u)).astype(np.int64), 0, wr - 1)
    row = np.clip(np.floor(np.nan_to_num(v)).astype(np.int64), 0, hr - 1)
    ref_pos = np.asarray(ref.position, dtype=np.float64)
    ref_mask = ref.mask.astype(bool)
    src_pos = np.asarray(src.position, dtype=np.float64)
    best = np.full((hs, ws), np.inf)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            rr = np.clip(row + dr, 0, hr - 1)
            cc = np.clip(col + dc, 0, wr - 1)
            d = np.linalg.norm(ref_pos[rr, cc] - src_pos, axis=-1)
            d[~ref_mask[rr, cc]] = np.inf
            best = np.minimum(best, d)
    k = np.asarray(ref.K, dtype=np.float64)
    footprint = np.where(z > 0, z, np.inf) / min(k[0, 0], k[1, 1])
    valid &= best <= tolerance_px * footprint
    return uv, valid


def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) unnormalised Gaussian weights of std ``sigma`` (3σ support; identity when ``sigma <= 0``)."""
    if sigma <= 0:
        return np.eye(n)
    x = np.arange(n, dtype=np.float64)
    d = x[:, None] - x[None, :]
    g = np.exp(-0.5 * (d / sigma) ** 2)
    g[np.abs(d) > np.ceil(3.0 * sigma)] = 0.0
    return g


def masked_blur(values: np.ndarray, weight: np.ndarray, sigma: float, eps: float = 1e-6) -> np.ndarray:
    """Masked, normalised Gaussian blur: ``G*(w v) / G*w`` (0 where ``G*w <= eps``).

    ``values``: (h, w, C); ``weight``: (h, w) non-negative; ``sigma`` in grid cells (0 disables the blur,
    returning ``values`` where ``weight > 0`` and 0 elsewhere).
    """
    gh, gw = gaussian_matrix(values.shape[0], sigma), gaussian_matrix(values.shape[1], sigma)
    num = np.einsum("ab,bcC,dc->adC", gh, values * weight[..., None], gw)
    den = gh @ weight @ gw.T
    out = np.zeros_like(num)
    ok = den > eps
    out[ok] = num[ok] / den[ok][:, None]
    return out


def _pool(values: np.ndarray, weight: np.ndarray, grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean of per-pixel ``values`` (H, W, C) over each token of ``grid``; and the mean weight."""
    hh, ww = weight.shape
    h, w = grid
    ti = np.minimum(((np.arange(hh) + 0.5) * h / hh).astype(np.int64), h - 1)
    tj = np.minimum(((np.arange(ww) + 0.5) * w / ww).astype(np.int64), w - 1)
    idx = (ti[:, None] * w + tj[None, :]).ravel()
    wf = weight.ravel().astype(np.float64)
    count = np.bincount(idx, minlength=h * w).astype(np.float64)
    wsum = np.bincount(idx, weights=wf, minlength=h * w)
    pooled = np.zeros((h * w, values.shape[-1]))
    flat = values.reshape(-1, values.shape[-1])
    for c in range(values.shape[-1]):
        s = np.bincount(idx, weights=flat[:, c] * wf, minlength=h * w)
        pooled[:, c] = np.divide(s, wsum, out=np.zeros_like(s), where=wsum > 0)
    return pooled.reshape(h, w, -1), (wsum / np.maximum(count, 1)).reshape(h, w)


def _pixel_token_coords(size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Token coordinates ``(a, b)`` of every pixel centre of an (H, W) image on an (h, w) grid: (H, W, 2)."""
    hh, ww = size
    h, w = grid
    a = (np.arange(hh) + 0.5) * h / hh - 0.5
    b = (np.arange(ww) + 0.5) * w / ww - 0.5
    return np.stack(np.meshgrid(a, b, indexing="ij"), axis=-1)


def identity_offsets(masks: Sequence[np.ndarray], token_grids: Sequence[tuple[int, int]]) -> np.ndarray:
    """Identity-RoPE offsets: each view's subject box top-left corner in token units.

    Args:
        masks: N bool (H_i, W_i) subject masks.
        token_grids: N ``(h_i, w_i)`` token grids the views are resized to.

    Returns:
        (N, 2) float32 ``(o_h, o_w) = (y1 h / H, x1 w / W)`` with ``y1, x1`` the first row / column of the mask
        (the box's top-left pixel *corner*), so that ``grid - o`` is 0 at the token whose corner is the box corner.
        Views with an empty mask get ``(0, 0)``.
    """
    if len(masks) != len(token_grids):
        raise InvalidInput(f"{len(masks)} masks but {len(token_grids)} token grids")
    out = np.zeros((len(masks), 2), np.float32)
    for n, (m, (h, w)) in enumerate(zip(masks, token_grids)):
        m = np.asarray(m, bool)
        if not m.any():
            continue
        rows = np.flatnonzero(m.any(axis=1))
        cols = np.flatnonzero(m.any(axis=0))
        out[n] = (rows[0] * h / m.shape[0], cols[0] * w / m.shape[1])
    return out


def exact_chain_displacements(
    views: Sequence[ViewGeometry],
    token_grids: Sequence[tuple[int, int]],
    sigma: float = 1.0,
    tolerance_px: float = 2.0,
    offsets: np.ndarray | None = None,
) -> list[DisplacementField]:
    """Exact Ge-RoPE displacements between consecutive views, ``i -> i + 1``, on each source view's token grid.

    Args:
        views: N views in group order.
        token_grids: N ``(h_i, w_i)`` token grids (the sizes the views are resized to for the model).
        sigma: std of the masked normalised Gaussian blur, in tokens (0: none).
        tolerance_px: visibility tolerance, in target pixel footprints (see :func:`pixel_correspondence`).
        offsets: optional (N, 2) Identity-RoPE box offsets ``o``: the field then becomes ``Δ - (o_{i+1} - o_i)``
            where a correspondence exists, so that ``grid - o_i + Δ'`` is the target's box-relative position.

    Returns:
        N - 1 :class:`DisplacementField` in token units, ``(dh, dw)``: field ``i`` on view ``i``'s grid, giving each
        token the position of its surface point in view ``i + 1``; 0 outside the subject. (The last view is the
        anchor and has no field.)
    """
    if len(views) != len(token_grids):
        raise InvalidInput(f"{len(views)} views but {len(token_grids)} token grids")
    for i, v in enumerate(views):
        v.check(i)
    if offsets is not None and np.shape(offsets) != (len(views), 2):
        raise InvalidInput(f"offsets must be ({len(views)}, 2), got {np.shape(offsets)}")
    fields: list[DisplacementField] = []
    for n in range(len(views) - 1):
        view, target, grid, target_grid = views[n], views[n + 1], token_grids[n], token_grids[n + 1]
        _, cover = _pool(np.zeros((*view.size, 1)), view.mask.astype(np.float64), grid)
        uv, valid = pixel_correspondence(view, target, tolerance_px)
        own = _pixel_token_coords(view.size, grid)
        landing = np.stack([np.nan_to_num(uv[..., 1]) * target_grid[0] / target.size[0] - 0.5,
                            np.nan_to_num(uv[..., 0]) * target_grid[1] / target.size[1] - 0.5], axis=-1)
        delta_px = landing - own
        if offsets is not None:
            delta_px -= np.asarray(offsets[n + 1], np.float64) - np.asarray(offsets[n], np.float64)
        delta_tok, weight = _pool(delta_px, valid.astype(np.float64), grid)
        smooth = masked_blur(delta_tok, weight, sigma)
        smooth[cover <= 0] = 0.0
        logger.debug("view %d -> %d: %.1f%% of subject pixels matched, mean |Δ| %.2f tokens", n, n + 1,
                     100.0 * valid.sum() / max(int(view.mask.sum()), 1),
                     float(np.linalg.norm(smooth, axis=-1)[cover > 0].mean()) if (cover > 0).any() else 0.0)
        fields.append(DisplacementField(smooth.astype(np.float32), weight.astype(np.float32)))
    return fields
