"""Bake views back into a UV texture: per-texel gather with exact visibility, weighting, blending, fill.

For every covered texel (see :mod:`.uv_raster`) and every view: project the texel's world position,
cull (behind, outside the frame, beyond the angle cut-off), test visibility against the surface point
the view shows at that pixel (from its exact per-pixel *position pass*, so no mixed pixels: its depth
must match the texel's within one pixel's length on the surface), sample the view's colour bilinearly
from the taps that show the texel's own surface (depth, UV island, or a UV seam on smooth surface),
and weight by the view angle, the pixel density and the distance from silhouettes, depth jumps and
frame edges. Texels no view sees are filled
along the surface (3D neighbours, across UV seams), gutters from their UV neighbours (see :mod:`.fill`),
so the texture has no empty texel. Colours are blended in linear light.

Views carry either 8-bit sRGB colour or float32 linear values of any channel count (for example the
colour *change* of an edit, see :mod:`.edit_bake`): :func:`gather` averages whatever they carry.
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..format.cameras import Camera
from ..errors import InvalidInputError
from ..format.images import linear_to_srgb, srgb_to_linear, to_uint8
from .fill import dilate, fill_along_surface, push_pull
from ..metrics import erode
from .uv_raster import TexelSurface
from ..format.viewset import ViewSet


#: uint8 sRGB code -> linear value, for sampling 8-bit views without converting whole images.
_SRGB_TO_LINEAR = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)


@dataclass
class BakeSettings:
    """``mode``: 'blend' (weighted average) or 'best' (the best view wins, feathered).

    ``max_angle_deg``: views that see a surface more obliquely are ignored. ``cos_power``: how much
    frontal views are preferred. ``edge_px``: width of the ramp (pixels) that fades out samples near
    silhouettes, depth jumps and frame edges. ``visibility_tol``: how far (in pixel footprints) the
    view's surface point may lie from the texel's for the texel to count as visible. ``seam_cos``: a
    bilinear tap across a UV jump counts when its normal and the texel's agree this well (cosine).
    ``workers``:
    views gathered at once (0: one per CPU core); memory grows with it, not with the view count.
    """

    mode: str = "blend"
    max_angle_deg: float = 75.0
    cos_power: float = 4.0
    edge_px: int = 3
    visibility_tol: float = 1.0
    seam_cos: float = 0.95
    workers: int = 0

    def validate(self) -> None:
        if self.mode not in ("blend", "best"):
            raise InvalidInputError(f"bake mode must be 'blend' or 'best', got {self.mode!r}")
        if not 0 < self.max_angle_deg < 90:
            raise InvalidInputError("the angle cut-off must be between 0 and 90 degrees")
        if not -1.0 <= self.seam_cos <= 1.0:
            raise InvalidInputError(f"seam_cos is a cosine: between -1 and 1, got {self.seam_cos}")
        if self.edge_px < 1 or self.visibility_tol <= 0:
            raise InvalidInputError("edge_px must be at least 1 pixel and visibility_tol above 0")


@dataclass
class BakeView:
    """One view to bake from: ``image`` uint8 (H, W, 3) sRGB or float32 (H, W, C <= 8) linear values,
    ``position`` float (H, W, 3) world positions, ``mask`` bool (H, W), and optionally ``uv`` float (H, W, 2),
    whose jumps (UV seams, other parts) are kept out of the samples, and ``normal`` float (H, W, 3) unit
    shading normals, with which a UV jump on smooth surface (a seam, not a crease or another part) is let
    through."""

    camera: Camera
    image: np.ndarray
    position: np.ndarray
    mask: np.ndarray
    uv: np.ndarray | None = None
    normal: np.ndarray | None = None


def _view_depth(view: BakeView) -> np.ndarray:
    """Per pixel of ``view``: the surface point's depth along the view axis (float32), +inf outside the mask."""
    cam = view.camera
    # relative to the camera first: far from the world origin a dot product of absolute coordinates would
    # lose the precision the pass has
    depth = (view.position - cam.centre.astype(np.float32)) @ cam.forward.astype(np.float32)
    depth[~view.mask] = np.inf
    return depth


def reliable_distance(depth: np.ndarray, fx: float, edge_px: int) -> np.ndarray:
    """Per pixel, how many pixels (0..edge_px) it lies inside the reliable region of a view whose
    depth map is ``depth`` (H, W; +inf outside the object, see :func:`_view_depth`).

    Unreliable: outside the object, at a depth jump (a neighbour's surface point farther than a few
    pixel footprints along the view axis), or at the frame border.
    """
    ok = np.isfinite(depth)
    d = np.where(ok, depth, np.float32(0.0))
    footprint = np.maximum(d, 1e-9) / np.float32(fx)
    # a jump: neighbouring surface points more than 16 footprints apart in depth (steeper than ~86 deg)
    jump_r = np.abs(d[1:] - d[:-1]) > 16.0 * np.minimum(footprint[1:], footprint[:-1])
    jump_c = np.abs(d[:, 1:] - d[:, :-1]) > 16.0 * np.minimum(footprint[:, 1:], footprint[:, :-1])
    ok[1:] &= ~jump_r
    ok[:-1] &= ~jump_r
    ok[:, 1:] &= ~jump_c
    ok[:, :-1] &= ~jump_c
    ok[0, :] = ok[-1, :] = ok[:, 0] = ok[:, -1] = False
    dist = ok.astype(np.int16)
    cur = ok
    for _ in range(edge_px - 1):  # each layer that survives one more erosion adds 1
        cur = erode(cur, 1)
        dist += cur
    return dist


@dataclass
class _Texels:
    """The covered texels in float32, positions relative to ``origin`` (keeps precision far from the world
    origin), with the per-texel products the per-view culling reuses: ``n_dot_p`` normal . position,
    ``p_dot_p`` position . position. ``uv`` is complex64 (u + i v). ``surface`` and ``first`` (the index
    of the first texel here in it) serve the few lookups made for some texels only."""

    origin: np.ndarray
    position: np.ndarray
    normal: np.ndarray
    uv: np.ndarray
    uv_per_length: np.ndarray
    uv_slack: float
    n_dot_p: np.ndarray
    p_dot_p: np.ndarray
    surface: TexelSurface
    first: int = 0

    @classmethod
    def of(cls, surface: TexelSurface) -> "_Texels":
        origin = np.array([surface.position[:, d].mean() for d in range(3)]) if len(surface.position) else np.zeros(3)
        f32 = np.float32
        position = (surface.position - origin).astype(f32)
        normal = surface.normal.astype(f32)
        uv = surface.uv.astype(f32).view(np.complex64).reshape(-1)
        return cls(origin, position, normal, uv, surface.uv_per_length.astype(f32), 1.0 / max(surface.size),
                   np.einsum("nd,nd->n", normal, position), np.einsum("nd,nd->n", position, position), surface)

    def part(self, lo: int, hi: int) -> "_Texels":
        """Texels ``lo`` to ``hi`` (views of the arrays, no copies)."""
        return _Texels(self.origin, self.position[lo:hi], self.normal[lo:hi], self.uv[lo:hi], self.uv_per_length[lo:hi],
                       self.uv_slack, self.n_dot_p[lo:hi], self.p_dot_p[lo:hi], self.surface, self.first + lo)


#: The four bilinear taps' offsets (columns, rows) from the top-left one.
_TAPS = ((0, 0), (1, 0), (0, 1), (1, 1))


def _packed_image(image: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """One wide scalar per pixel (so a tap gathers one element) and the function that decodes gathered
    ones (4, M) into linear float32 (4, M, 4 or 8): four taps of four (or, for float views of more
    channels, eight) channels (unused channels 0; the padding byte of 8-bit pixels is code 0, linear 0)."""
    h, w, ch = image.shape
    if image.dtype == np.uint8:
        rgba = np.zeros((h * w, 4), np.uint8)
        rgba[:, :3] = image[..., :3].reshape(-1, 3)
        return rgba.view(np.uint32).reshape(-1), lambda g: _SRGB_TO_LINEAR.take(g.view(np.uint8)).reshape(4, -1, 4)
    if ch > 8:
        raise InvalidInputError(f"a float view carries at most 8 channels, got {ch}")
    width = 4 if ch <= 4 else 8
    rows = np.zeros((h * w, width), np.float32)
    rows[:, :ch] = image.reshape(-1, ch)
    packed = rows.view(np.complex128 if width == 4 else np.dtype("V32")).reshape(-1)
    return packed, lambda g: g.view(np.float32).reshape(4, -1, width)


def _cropped(view: BakeView, margin: int) -> tuple[BakeView, tuple[int, int]]:
    """``view`` cut to its mask's bounding box grown by ``margin`` pixels (within the frame), and the
    crop's (top row, left column). Slices, not copies."""
    rows = np.flatnonzero(view.mask.any(axis=1))
    if not len(rows):
        return view, (0, 0)
    cols = np.flatnonzero(view.mask.any(axis=0))
    h, w = view.mask.shape
    r0, r1 = max(int(rows[0]) - margin, 0), min(int(rows[-1]) + margin + 1, h)
    c0, c1 = max(int(cols[0]) - margin, 0), min(int(cols[-1]) + margin + 1, w)
    box = (slice(r0, r1), slice(c0, c1))
    return BakeView(view.camera, view.image[box], view.position[box], view.mask[box],
                    None if view.uv is None else view.uv[box], None if view.normal is None else view.normal[box]), (r0, c0)


@dataclass
class _PreparedView:
    """What every chunk of texels reads from one view, computed once: the view cut to the object (the
    mask's box plus a margin wider than the edge ramp, so the crop's border is outside the mask or the
    frame's own border) and, per pixel of the crop (flattened), its depth (+inf off the object), its
    distance inside the reliable region (:func:`reliable_distance`), its colour packed for gathering,
    its UV (complex64) and normal."""

    camera: Camera
    crop: tuple[int, int]
    shape: tuple[int, int]
    depth: np.ndarray
    edge: np.ndarray
    image: np.ndarray
    decode: Callable[[np.ndarray], np.ndarray]
    channels: int
    uv: np.ndarray | None
    normal: np.ndarray | None

    @classmethod
    def of(cls, view: BakeView, settings: BakeSettings) -> "_PreparedView":
        crop_view, crop = _cropped(view, settings.edge_px + 2)
        depth = _view_depth(crop_view)
        edge = reliable_distance(depth, view.camera.intrinsics.fx, settings.edge_px)
        image, decode = _packed_image(crop_view.image)
        channels = 3 if view.image.dtype == np.uint8 else view.image.shape[2]
        uv = None if crop_view.uv is None else np.ascontiguousarray(crop_view.uv, np.float32).view(np.complex64).reshape(-1)
        normal = None if crop_view.normal is None else np.ascontiguousarray(crop_view.normal, np.float32).reshape(-1, 3)
        return cls(view.camera, crop, depth.shape, depth.reshape(-1), edge.reshape(-1), image, decode, channels, uv, normal)


def gather_view(texels: _Texels, view: _PreparedView, settings: BakeSettings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indices into ``texels``, linear values (M, C), weights (M,)) of the texels ``view`` sees."""
    cam = view.camera
    k = cam.intrinsics
    f32 = np.float32
    rot = cam.world_to_camera[:3, :3].astype(f32)
    centre = (cam.centre - texels.origin).astype(f32)
    # 1. cull before any per-texel sampling: facing, angle cut-off (from the texels' precomputed products)
    facing = texels.normal @ centre - texels.n_dot_p  # n . (centre - p)
    dist2 = texels.p_dot_p - f32(2.0) * (texels.position @ centre) + centre @ centre  # |centre - p|^2
    cos_max = f32(math.cos(math.radians(settings.max_angle_deg)))
    idx = np.flatnonzero((facing > 0) & (facing * facing >= cos_max * cos_max * dist2))
    pc = np.take(texels.position, idx, axis=0) @ rot.T - rot @ centre  # (take: numpy's fast row gather)
    z = pc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = k.fx * pc[:, 0] / z + k.cx
        v = k.fy * pc[:, 1] / z + k.cy
    # all per-pixel work below runs on the object's part of the frame only (see _PreparedView)
    r0, c0 = view.crop
    height, w = view.shape
    u, v = u - c0, v - r0
    inside = (z > 0) & (u >= 0.5) & (u < w - 0.5) & (v >= 0.5) & (v < height - 0.5)  # frustum
    idx, u, v, z = idx[inside], u[inside], v[inside], z[inside]
    c = facing[idx] / np.sqrt(dist2[idx])
    # 2. exact visibility: the view's surface point at the texel's pixel lies where the texel does (its
    #    depth within one pixel's length on the surface; +inf off the object)
    depth = view.depth
    flat = v.astype(np.int64) * w + u.astype(np.int64)
    pix_len = (z / f32(k.fx)) / np.maximum(c, f32(0.25))  # world length one pixel spans on the surface
    visible = np.abs(depth[flat] - z) <= settings.visibility_tol * pix_len + f32(1e-6)
    idx, u, v, z, c, flat, pix_len = (a[visible] for a in (idx, u, v, z, c, flat, pix_len))
    # 3. bilinear taps, each kept only if it shows the texel's own surface: on the object, its depth near
    #    the texel's (not across a silhouette or depth jump) and, with a UV pass, its UV near the texel's
    #    (not onto another part, nor across a UV seam on a crease); the kept taps' weights are renormalised
    x, y = u - f32(0.5), v - f32(0.5)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    top_left = y0.astype(np.int64) * w + x0.astype(np.int64)
    taps = np.stack([top_left + (dx + dy * w) for dx, dy in _TAPS])  # (4, M): tap-major rows stay contiguous
    bilinear = np.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    ok = np.abs(depth[taps] - z) <= f32(2.0) * pix_len + f32(1e-6)
    if view.uv is not None:
        vuv = view.uv
        uv_tol = f32(2.0 * math.sqrt(2.0)) * pix_len * texels.uv_per_length[idx] + f32(texels.uv_slack)
        uv_ok = np.abs(vuv[taps] - texels.uv[idx]) <= uv_tol
        if view.normal is not None:
            # a UV jump where the surface runs on smoothly is a UV seam: the pixels beyond it show the same
            # surface (taps across creases, silhouettes or onto other parts differ in normal and stay out)
            across = np.flatnonzero(ok & ~uv_ok)
            if len(across):
                t, m = np.divmod(across, len(idx))
                texel_normal = texels.surface.shading_normal(texels.first + idx[m]).astype(f32)
                smooth = np.einsum("kd,kd->k", view.normal[taps[t, m]], texel_normal) >= f32(settings.seam_cos)
                uv_ok.reshape(-1)[across[smooth]] = True
        ok &= uv_ok
    bilinear *= ok
    tap_w = bilinear.sum(axis=0)
    colour = np.einsum("tm,tmc->mc", bilinear, view.decode(view.image[taps]))
    colour *= (f32(1.0) / np.maximum(tap_w, f32(1e-12)))[:, None]
    # 4. weights: view angle, pixel density, distance from silhouettes / depth jumps / frame edges
    edge = view.edge[flat]
    weight = (c ** settings.cos_power) * (f32(k.fx) / z) ** 2 * (edge / f32(settings.edge_px)) * (tap_w > 0.25)
    keep = weight > 0
    return idx[keep], np.compress(keep, colour[:, :view.channels], axis=0), weight[keep]


@dataclass
class Gathered:
    """Per covered texel: ``value`` (N, C) the weighted mean of the views' samples (0 where unseen),
    ``weight`` (N,) the summed weights (0: no view saw the texel) and ``weight_sq`` (N,) the summed squared weights
    (``weight**2 / weight_sq``: the effective number of views)."""

    value: np.ndarray
    weight: np.ndarray
    weight_sq: np.ndarray

    @property
    def seen(self) -> np.ndarray:
        return self.weight > 0


#: Texels gathered from a view at once: bounds the per-view working memory (about 1 GB) at large textures.
TEXEL_CHUNK = 1 << 21


def gather(surface: TexelSurface, views: list[BakeView], settings: BakeSettings | None = None) -> Gathered:
    """Blend what ``views`` show of every covered texel of ``surface`` (steps 1-4 of the module docstring)."""
    settings = settings or BakeSettings()
    settings.validate()
    if not views:
        raise InvalidInputError("baking needs at least one view")
    channels = {3 if v.image.dtype == np.uint8 else v.image.shape[2] for v in views}
    if len(channels) != 1:
        raise InvalidInputError(f"all views must carry the same channels, got {sorted(channels)}")
    n = len(surface.rows)
    acc = np.zeros((n, channels.pop()), np.float64)
    wsum = np.zeros(n, np.float64)
    wsq = np.zeros(n, np.float64)
    texels = _Texels.of(surface)
    lock = threading.Lock()

    def one(view: BakeView) -> None:
        prepared = _PreparedView.of(view, settings)
        parts = [(lo, gather_view(texels.part(lo, lo + TEXEL_CHUNK), prepared, settings)) for lo in range(0, n, TEXEL_CHUNK)]
        if settings.mode == "best":
            top = max((float(w.max()) for _, (_, _, w) in parts if len(w)), default=1e-30)
            parts = [(lo, (i, c, (w / np.float32(top)) ** 8)) for lo, (i, c, w) in parts]  # scaled first: no overflow
        with lock:
            for lo, (idx, colour, weight) in parts:
                wsum[lo + idx] += weight  # idx is unique per view
                wsq[lo + idx] += np.square(weight, dtype=np.float64)
                acc[lo + idx] += colour * weight[:, None]

    # views are streamed, ``workers`` at a time (numpy releases the GIL in its array loops)
    with ThreadPoolExecutor(max_workers=settings.workers or os.cpu_count() or 1) as pool:
        list(pool.map(one, views))
    seen = wsum > 0
    acc[seen] /= wsum[seen, None]
    return Gathered(acc, wsum, wsq)


def texel_world_size(surface: TexelSurface) -> float:
    """Median world length of one texel's side (the finest scale of the surface fill)."""
    if not len(surface.rows):
        return 0.0
    return float(np.median(1.0 / np.maximum(surface.uv_per_length, 1e-12))) / max(surface.size)


#: Gutter texels around every island filled by dilation (texture filtering at borders reads these).
GUTTER_RINGS = 8


def fill_texture(surface: TexelSurface, value: np.ndarray, known: np.ndarray) -> np.ndarray:
    """A full (rows, cols, C) image from per-texel ``value`` (N, C): unknown covered texels filled along the
    surface, then :data:`GUTTER_RINGS` rings of gutter grown from the islands, the rest from UV neighbours."""
    filled = fill_along_surface(surface.position, value, known, texel_world_size(surface))
    h, w = surface.size
    img = np.zeros((h, w, value.shape[1]), np.float32)
    img[surface.rows, surface.cols] = filled
    grown, known_img = dilate(img, surface.covered, GUTTER_RINGS)
    return push_pull(grown, known_img.astype(np.float32))


@dataclass
class BakeResult:
    """``texture`` uint8 (H, W, 3) sRGB with every texel filled, top row first; ``srgb`` the same as float32
    sRGB-encoded values in [0, 1] (for 16-bit and float outputs); ``seen`` bool (H, W): some view saw it;
    ``covered`` bool (H, W): inside the UV layout; ``changed`` bool (H, W): texels written from the views
    (for an edit bake: the texels the edit changed), the rest kept or filled."""

    texture: np.ndarray
    seen: np.ndarray
    covered: np.ndarray
    changed: np.ndarray
    srgb: np.ndarray


def _image_of(surface: TexelSurface, per_texel: np.ndarray) -> np.ndarray:
    img = np.zeros(surface.size, bool)
    img[surface.rows, surface.cols] = per_texel
    return img


def bake(surface: TexelSurface, views: list[BakeView], settings: BakeSettings | None = None) -> BakeResult:
    """Blend ``views`` (8-bit sRGB colour) into the texels of ``surface`` and fill the rest."""
    g = gather(surface, views, settings)
    filled = fill_texture(surface, g.value, g.seen)
    seen = _image_of(surface, g.seen)
    srgb = linear_to_srgb(filled.astype(np.float32))
    return BakeResult(to_uint8(srgb), seen, surface.covered, seen, srgb)


def views_from_viewset(viewset: ViewSet, pass_name: str = "albedo", images: list[np.ndarray] | None = None) -> list[BakeView]:
    """BakeViews of every view of a ViewSet, colours from ``pass_name`` (or from ``images``, e.g. edited views)."""
    out = []
    for i, v in enumerate(viewset.views):
        image = images[i] if images is not None else viewset.load(v, pass_name)
        out.append(BakeView(v.camera, image, viewset.load(v, "position"), viewset.load(v, "mask"), viewset.load(v, "uv"),
                            viewset.load(v, "normal")))
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
