"""Bake views back into a UV texture: per-texel gather with exact visibility, weighting, blending, fill.

For every covered texel (see :mod:`.uv_raster`) and every view: project the texel's world position,
cull (behind, outside the frame, beyond the angle cut-off), test visibility by comparing with the
view's *position pass* at that pixel (a surface point, not a depth: mixed pixels and interpenetrating
parts do not pass), sample the view's colour bilinearly, and weight by the view angle, the pixel
density and the distance from silhouettes, depth jumps and frame edges. Texels no view sees are filled
by a push-pull (pyramid) interpolation from the seen ones; gutters are filled the same way, so the
texture has no empty texel. Colours are blended in linear light.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .cameras import Camera
from .errors import InvalidInputError
from .images import linear_to_srgb, srgb_to_linear, to_uint8
from .uv_raster import TexelSurface
from .viewset import ViewSet


#: uint8 sRGB code -> linear value, for sampling 8-bit views without converting whole images.
_SRGB_TO_LINEAR = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0).astype(np.float64)


@dataclass
class BakeSettings:
    """``mode``: 'blend' (weighted average) or 'best' (the best view wins, feathered).

    ``max_angle_deg``: views that see a surface more obliquely are ignored. ``cos_power``: how much
    frontal views are preferred. ``edge_px``: width of the ramp (pixels) that fades out samples near
    silhouettes, depth jumps and frame edges. ``visibility_tol``: how far (in pixel footprints) the
    view's surface point may lie from the texel's for the texel to count as visible.
    """

    mode: str = "blend"
    max_angle_deg: float = 75.0
    cos_power: float = 4.0
    edge_px: int = 3
    visibility_tol: float = 1.0

    def validate(self) -> None:
        if self.mode not in ("blend", "best"):
            raise InvalidInputError(f"bake mode must be 'blend' or 'best', got {self.mode!r}")
        if not 0 < self.max_angle_deg < 90:
            raise InvalidInputError("the angle cut-off must be between 0 and 90 degrees")


@dataclass
class BakeView:
    """One view to bake from: ``image`` uint8 (H, W, 3) sRGB, ``position`` float (H, W, 3), ``mask`` bool (H, W),
    and optionally ``uv`` float (H, W, 2), whose jumps (UV seams) are kept out of the samples."""

    camera: Camera
    image: np.ndarray
    position: np.ndarray
    mask: np.ndarray
    uv: np.ndarray | None = None


def reliable_distance(view: BakeView, edge_px: int) -> np.ndarray:
    """Per pixel, how many pixels (0..edge_px) it lies inside the reliable region of the view.

    Unreliable: outside the mask, at a depth jump (a neighbour's surface point farther than a few
    pixel footprints along the view axis), or at the frame border.
    """
    cam = view.camera
    depth = (view.position - cam.centre) @ cam.forward
    footprint = np.maximum(depth, 1e-9) / cam.intrinsics.fx
    ok = view.mask.copy()
    # a jump: neighbouring surface points more than 16 footprints apart in depth (steeper than ~86 deg)
    jump_r = np.abs(depth[1:] - depth[:-1]) > 16.0 * np.minimum(footprint[1:], footprint[:-1])
    jump_c = np.abs(depth[:, 1:] - depth[:, :-1]) > 16.0 * np.minimum(footprint[:, 1:], footprint[:, :-1])
    ok[1:] &= ~jump_r
    ok[:-1] &= ~jump_r
    ok[:, 1:] &= ~jump_c
    ok[:, :-1] &= ~jump_c
    ok[0, :] = ok[-1, :] = ok[:, 0] = ok[:, -1] = False
    dist = ok.astype(np.int16)
    cur = ok
    for _ in range(edge_px - 1):  # erode with a 4-neighbourhood; each surviving layer adds 1
        nxt = cur.copy()
        nxt[1:] &= cur[:-1]
        nxt[:-1] &= cur[1:]
        nxt[:, 1:] &= cur[:, :-1]
        nxt[:, :-1] &= cur[:, 1:]
        cur = nxt
        dist += cur
    return dist


def gather_view(surface: TexelSurface, view: BakeView, settings: BakeSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices into the surface's texels, linear RGB (M, 3), weights (M,)) of the texels ``view`` sees."""
    cam = view.camera
    k = cam.intrinsics
    to_cam = cam.centre - surface.position
    dist = np.linalg.norm(to_cam, axis=1)
    cos = np.einsum("nd,nd->n", surface.normal, to_cam) / np.maximum(dist, 1e-12)
    idx = np.flatnonzero(cos >= math.cos(math.radians(settings.max_angle_deg)))  # back-facing and grazing culled
    uv, z = cam.project(surface.position[idx])
    inside = (z > 0) & (uv[:, 0] >= 0.5) & (uv[:, 0] < k.width - 0.5) & (uv[:, 1] >= 0.5) & (uv[:, 1] < k.height - 0.5)
    idx, uv, z = idx[inside], uv[inside], z[inside]
    col = uv[:, 0].astype(np.int64)
    row = uv[:, 1].astype(np.int64)
    seen = view.position[row, col].astype(np.float64)
    footprint = z / k.fx
    c = cos[idx]
    tol = settings.visibility_tol * footprint / np.maximum(c, 0.25) + 1e-6
    gap = seen - surface.position[idx]
    visible = view.mask[row, col] & (np.einsum("nd,nd->n", gap, gap) <= tol * tol)
    idx, uv, z, c, row, col = idx[visible], uv[visible], z[visible], c[visible], row[visible], col[visible]
    footprint = footprint[visible]
    # Bilinear taps, each kept only if it shows the texel's own surface: inside the mask, its surface
    # point near the texel's (not across a silhouette or depth jump) and, with a UV pass, its UV near
    # the texel's (not across a UV seam, where the other island's texels need not agree).
    # The kept taps' weights are renormalised.
    x, y = uv[:, 0] - 0.5, uv[:, 1] - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    p = surface.position[idx]
    pix_len = footprint / np.maximum(c, 0.25)  # world length one pixel spans on the surface
    colour = np.zeros((len(idx), 3), np.float64)
    tap_w = np.zeros(len(idx), np.float64)
    for dy, dx, wgt in ((0, 0, (1 - fx) * (1 - fy)), (0, 1, fx * (1 - fy)), (1, 0, (1 - fx) * fy), (1, 1, fx * fy)):
        ty, tx = y0 + dy, x0 + dx
        gap = view.position[ty, tx] - p
        ok = view.mask[ty, tx] & (np.einsum("nd,nd->n", gap, gap) <= (2.0 * pix_len + 1e-6) ** 2)
        if view.uv is not None:
            uv_err = np.abs(view.uv[ty, tx] - surface.uv[idx]).max(axis=1)
            ok &= uv_err <= 2.0 * pix_len * surface.uv_per_length[idx] + 1.0 / max(surface.size)
        wgt = np.where(ok, wgt, 0.0)
        colour += _SRGB_TO_LINEAR[view.image[ty, tx, :3]] * wgt[:, None]
        tap_w += wgt
    taps_ok = tap_w > 0.25
    colour /= np.maximum(tap_w, 1e-12)[:, None]
    reliable = reliable_distance(view, settings.edge_px)
    edge = reliable[row, col]
    weight = (c ** settings.cos_power) * (k.fx / z) ** 2 * (edge / settings.edge_px) * taps_ok
    keep = weight > 0
    return idx[keep], colour[keep], weight[keep]


def push_pull(colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill texels of zero weight from their neighbours at ever coarser scales (colour (H, W, C), weight (H, W))."""
    h, w = weight.shape
    if weight.max() <= 0:
        return colour
    known = weight > 0
    if known.all():
        return colour
    ph, pw = h + h % 2, w + w % 2
    c = np.zeros((ph, pw, colour.shape[2]), np.float64)
    wt = np.zeros((ph, pw), np.float64)
    c[:h, :w] = colour * known[..., None]
    wt[:h, :w] = known
    cs = c.reshape(ph // 2, 2, pw // 2, 2, -1).sum(axis=(1, 3))
    ws = wt.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
    coarse_mean = np.where(ws[..., None] > 0, cs / np.maximum(ws, 1e-12)[..., None], 0.0)
    coarse = push_pull(coarse_mean, ws)
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]
    return np.where(known[..., None], colour, up)


@dataclass
class BakeResult:
    """``texture`` uint8 (H, W, 3) sRGB with every texel filled; ``seen`` bool (H, W): some view saw it;
    ``covered`` bool (H, W): inside the UV layout."""

    texture: np.ndarray
    seen: np.ndarray
    covered: np.ndarray


def bake(surface: TexelSurface, views: list[BakeView], settings: BakeSettings | None = None) -> BakeResult:
    """Blend ``views`` into the texels of ``surface`` and fill the rest (see the module docstring)."""
    settings = settings or BakeSettings()
    settings.validate()
    if not views:
        raise InvalidInputError("baking needs at least one view")
    n = len(surface.rows)
    acc = np.zeros((n, 3), np.float64)
    wsum = np.zeros(n, np.float64)
    for view in views:  # streamed: one view's arrays at a time
        idx, colour, weight = gather_view(surface, view, settings)
        if settings.mode == "best":
            weight = weight ** 8 / max(float(weight.max()), 1e-30) ** 8
        wsum[idx] += weight  # idx is unique per view
        acc[idx] += colour * weight[:, None]
    h, w = surface.size
    colour_img = np.zeros((h, w, 3), np.float64)
    weight_img = np.zeros((h, w), np.float64)
    seen = wsum > 0
    colour_img[surface.rows[seen], surface.cols[seen]] = acc[seen] / wsum[seen, None]
    weight_img[surface.rows[seen], surface.cols[seen]] = 1.0
    filled = push_pull(colour_img, weight_img)
    return BakeResult(to_uint8(linear_to_srgb(filled.astype(np.float32))), weight_img > 0, surface.covered)


def views_from_viewset(viewset: ViewSet, pass_name: str = "albedo", images: list[np.ndarray] | None = None) -> list[BakeView]:
    """BakeViews of every view of a ViewSet, colours from ``pass_name`` (or from ``images``, e.g. edited views)."""
    out = []
    for i, v in enumerate(viewset.views):
        image = images[i] if images is not None else viewset.load(v, pass_name)
        out.append(BakeView(v.camera, image, viewset.load(v, "position"), viewset.load(v, "mask"), viewset.load(v, "uv")))
    return out


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup (repeat wrap) of a texture (H, W, C), top row first, at Blender UVs (N, 2)."""
    h, w = texture.shape[:2]
    x = uv[:, 0] * w - 0.5
    y = (1.0 - uv[:, 1]) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    t = texture.astype(np.float64)
    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        return t[yy % h, xx % w]
    return (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
            + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)
