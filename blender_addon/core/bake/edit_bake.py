"""Bake an *edit* into an existing texture: only what the edit changed, with the renders' lighting removed.

The edited views are lit renders (the capture's ``colour`` pass, restyled by an editor). For every
view, :func:`edit_delta` turns the edit into the change of *albedo* it implies, in linear light. The
capture split each pixel's colour into what the base colour ``x`` scales and the rest
(:mod:`..capture.light_split`), per channel::

    colour(x) = rest + diffuse_response * x + metal_light * g_p(x)

``g_p`` is the metal's reflectance, increasing from g(0) = 0 to g(1) = 1: one curve per capture
(:class:`ResponseCurve`, fitted on every metal pixel's ``metal_reflectance`` against its base colour),
bent and corrected per pixel to pass through the pixel's own points (one per channel). Diffuse pixels
respond linearly and exactly. The edited colour is solved for ``x`` per channel:
``colour(x) - colour(x0) = edited - colour_linear``, with ``x0`` the original base colour as the colour
render shows it (``albedo_linear``) and ``colour_linear`` the colour render before its 8-bit encoding (so the
capture's own rounding, and its clipping, add nothing to the change). Captures without these passes (older
ViewSets) assume ``colour = shading * x`` with the shading lit / albedo.

:func:`edit_delta` also marks the pixels that changed (more than ``tolerance`` 8-bit levels in any
channel). Where a pixel did not change, delta is exactly 0. :func:`bake_edit` gathers the deltas like
any bake, adds them to the original texture and writes only the texels some view changed (plus unseen
texels and gutters next to changes, filled along the surface and in UV space). Every other texel keeps
the original's value exactly, so repeated edits do not degrade a texture.

The base colour the lighting removal compares with (``albedo_linear``: as blurred as the colour
render) is gathered too, as the *guide* of a detail transfer (:mod:`.detail_transfer`): the texture's
detail that the views blur away comes back, mapped the way the edit maps the original's colours.

Limits of the shading removal: it assumes the edit keeps the lighting (same lights, same shadows, same
reflections). Shadows or highlights that the editor moves or invents end up in the albedo; so does the
bounce light of the old colours when the capture rendered inter-reflections (off by default). Colours
no base colour can produce under that light are clipped to albedo 0..1. Pixels that hardly respond to
the base colour (deep shadow) tell nothing and are left to other views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gather import BakeResult, BakeSettings, BakeView, Gathered, fill_texture, gather
from .detail_transfer import local_mappings, mappings_at, noise_of_mean, transfer_detail
from ..errors import InvalidInputError
from ..format.images import linear_to_srgb, srgb_to_linear, to_uint8
from .uv_raster import TexelSurface

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass
class EditBakeSettings:
    """``delight``: remove the renders' shading (edited views are lit renders); off when the edited
    views are albedo already. ``tolerance``: 8-bit levels a pixel must change by to count as edited.
    ``fill_threshold``: linear change below which a filled (unseen or gutter) texel keeps the original.
    ``detail``: give the changed texels back the original texture's detail the views blur away, mapped
    like the edit maps colours (:func:`~.detail_transfer.transfer_detail`)."""

    delight: bool = True
    tolerance: int = 2
    fill_threshold: float = 1.0 / 255.0
    detail: bool = True
    bake: BakeSettings | None = None


def _linear(image: np.ndarray) -> np.ndarray:
    return srgb_to_linear(image[..., :3].astype(np.float32) / 255.0)


def shading(lit: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    """Per-pixel, per-channel shading ratio lit / albedo (linear, (H, W, 3)), clipped to [0.02, 50].

    Channels whose albedo is below 0.02 use the pixel's luminance ratio instead (their own ratio is noise).
    """
    lum = (lit @ _LUMA) / np.maximum(albedo @ _LUMA, 1e-4)
    ratio = np.where(albedo > 0.02, lit / np.maximum(albedo, 1e-6), lum[..., None])
    return np.clip(ratio, 0.02, 50.0).astype(np.float32)


@dataclass
class ViewLighting:
    """One view's lighting-removal passes (:data:`~..format.viewset.PASSES`), float32 (H, W, 3) each."""

    colour_linear: np.ndarray
    diffuse_response: np.ndarray
    metal_light: np.ndarray
    metal_reflectance: np.ndarray


@dataclass
class ResponseCurve:
    """How a metal's reflectance rises with its base colour: ``y`` = g(``x``), (K,) each, increasing from
    g(0) = 0 to g(1) = 1 (linear for a smooth metal; convex for a rough one: multiple scattering).

    One curve serves a whole capture (:meth:`fit`); each pixel bends it through its own points (:meth:`solve`).
    """

    x: np.ndarray
    y: np.ndarray

    @classmethod
    def fit(cls, albedo: np.ndarray, ratio: np.ndarray, bins: int = 32, min_count: int = 20,
            degree: int = 4, steps: int = 64) -> "ResponseCurve":
        """A smooth increasing curve through the binned medians of ``ratio`` (M,) against ``albedo`` (M,),
        pinned to g(0) = 0, g(1) = 1 (no points: the straight line).

        Bins with fewer than ``min_count`` points are left out. The curve is x + x (1 - x) p(x), p a
        polynomial of ``degree`` - 1 (fewer with few bins) fitted to the medians by least squares
        (weighted by their counts), tabulated at ``steps`` + 1 points: the medians themselves are
        noisy, and their kinks would bend every pixel's curve (:meth:`solve`) where the data has none.
        """
        edges = np.linspace(0.0, 1.0, bins + 1)
        which = np.clip(np.searchsorted(edges, albedo, side="right") - 1, 0, bins - 1)
        order = np.argsort(which, kind="stable")
        sw, sr, sa = which[order], ratio[order], albedo[order]
        starts = np.searchsorted(sw, np.arange(bins))
        stops = np.searchsorted(sw, np.arange(bins), side="right")
        xs, ys, counts = [], [], []
        for lo, hi in zip(starts, stops):
            if hi - lo >= min_count and 0.0 < float(np.median(sa[lo:hi])) < 1.0:
                xs.append(float(np.median(sa[lo:hi])))
                ys.append(float(np.clip(np.median(sr[lo:hi]), 0.0, 1.0)))
                counts.append(float(hi - lo))
        grid = np.linspace(0.0, 1.0, steps + 1)
        y = grid.copy()  # no medians: the straight line
        if xs:
            x, w = np.asarray(xs), np.sqrt(np.asarray(counts))
            powers = np.arange(min(degree, len(xs)))
            basis = lambda t: (t * (1.0 - t))[:, None] * t[:, None] ** powers[None, :]  # noqa: E731
            coef = np.linalg.lstsq(basis(x) * w[:, None], (np.asarray(ys) - x) * w, rcond=None)[0]
            y = np.clip(grid + basis(grid) @ coef, 0.0, 1.0)
        y = np.maximum.accumulate(y) + np.arange(len(y)) * 1e-6  # strictly increasing, so that it can be inverted
        return cls(grid, y / y[-1])

    def solve(self, change: np.ndarray, x0: np.ndarray, r0: np.ndarray, linear: np.ndarray,
              steps: int = 32) -> np.ndarray:
        """Per element, the base colour ``x`` with h(x) = h(``x0``) + ``change``, where
        h(x) = ``linear`` x + (1 - ``linear``) g_p(x) and g_p is this curve bent through the pixel's points.

        All arrays have one shape (..., C): ``change`` the colour change divided by the pixel's whole
        response (diffuse + metal), ``linear`` the diffuse share of that response, ``x0`` the original base
        colour, ``r0`` the metal's reflectance there (NaN: unknown). A pixel's C channels share g_p (its
        shape comes from the geometry and the material, not the channel): g bent by g + k x (1 - x), the
        k that fits its points best (weighted towards mid-range base colours, where they are measured
        best), plus what is left at each point, interpolated linearly between the points and (0, 0),
        (1, 1): so it passes through every point exactly. Points with ``x0`` outside (0.02, 0.98) or
        ``r0`` NaN are not used. Purely diffuse pixels are solved exactly: x0 + change. Returns 0..1.
        """
        shape, c = change.shape, change.shape[-1]
        d, a, r = (v.reshape(-1, c).astype(np.float32) for v in (change, x0, r0))
        w = np.clip(linear.reshape(-1, c).astype(np.float32), 0.0, 1.0)
        out = np.clip(a + d, 0.0, 1.0)
        curved = np.flatnonzero((w < 1.0).any(axis=1))
        xs = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
        for lo in range(0, len(curved), _SOLVE_CHUNK):
            rows = curved[lo:lo + _SOLVE_CHUNK]
            grid, curves = self._pixel_curves(xs, *self._bends(a[rows], r[rows]))
            for ch in range(c):
                wc = w[rows, ch, None]
                h = wc * grid + (1.0 - wc) * curves
                out[rows, ch] = _invert(grid, h, _evaluate(grid, h, a[rows, ch]) + d[rows, ch])
        return out.reshape(shape)

    def _bends(self, a: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per pixel the bend k (M,) and the points (px, pd) (M, C + 2), sorted by px, of its curve (:meth:`solve`)."""
        inner = (a > 0.02) & (a < 0.98) & np.isfinite(r)
        with np.errstate(divide="ignore", invalid="ignore"):
            left = np.where(inner, r - np.interp(a, self.x, self.y), 0.0)
            k_c = np.where(inner, left / (a * (1.0 - a)), 0.0)
        wt = np.where(inner, (a * (1.0 - a)) ** 2, 0.0)
        k = ((k_c * wt).sum(axis=1) / np.maximum(wt.sum(axis=1), 1e-12)).astype(np.float32)
        # the points' residuals after the bend, and the ends (0, 0), (1, 0); unused points sit on (0, 0)
        px = np.concatenate([np.zeros((len(a), 1)), np.where(inner, a, 0.0), np.ones((len(a), 1))], axis=1)
        pd = np.concatenate([np.zeros((len(a), 1)), np.where(inner, left - k[:, None] * a * (1.0 - a), 0.0),
                             np.zeros((len(a), 1))], axis=1)
        order = np.argsort(px, axis=1)
        return (k, np.take_along_axis(px, order, 1).astype(np.float32),
                np.take_along_axis(pd, order, 1).astype(np.float32))

    def _pixel_curves(self, xs: np.ndarray, k: np.ndarray, px: np.ndarray, pd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pixel, (grid, curve) (M, X + P): g + k x (1 - x) + the residuals ``pd`` at the points ``px``
        ((M, P), sorted) interpolated linearly, tabulated at ``xs`` (X,) and at the points themselves (so
        that the curve is exact there), made non-decreasing."""
        grid = np.sort(np.concatenate([np.broadcast_to(xs, (len(px), len(xs))), px], axis=1), axis=1)
        # the piecewise-linear residual as a sum of ramps, one per point (px[:, 0] is the origin)
        slopes = np.diff(pd, axis=1) / np.maximum(np.diff(px, axis=1), 1e-6)
        residual = slopes[:, :1] * grid
        for j in range(1, px.shape[1] - 1):
            residual += (slopes[:, j] - slopes[:, j - 1])[:, None] * np.maximum(grid - px[:, j, None], 0.0)
        curves = np.interp(grid, self.x, self.y).astype(np.float32) + k[:, None] * grid * (1.0 - grid) + residual
        return grid, np.maximum.accumulate(curves, axis=1)


#: Pixels whose curves are tabulated at once in :meth:`ResponseCurve.solve`.
_SOLVE_CHUNK = 1 << 15


def _evaluate(grid: np.ndarray, curves: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per row of ``curves`` (M, X) tabulated at ``grid`` (M, X), its value at ``x`` (M,) (linear between nodes)."""
    i = np.clip((grid < x[:, None]).sum(axis=1), 1, grid.shape[1] - 1)
    rows = np.arange(len(x))
    lo, hi = grid[rows, i - 1], grid[rows, i]
    frac = np.clip((x - lo) / np.maximum(hi - lo, 1e-9), 0.0, 1.0)
    return curves[rows, i - 1] + frac * (curves[rows, i] - curves[rows, i - 1])


def _invert(grid: np.ndarray, curves: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per row of ``curves`` (M, X) tabulated at ``grid`` (M, X), the x where it reaches ``t`` (M,), clipped to 0..1."""
    i = np.clip((curves < t[:, None]).sum(axis=1), 1, curves.shape[1] - 1)
    rows = np.arange(len(t))
    lo, hi = curves[rows, i - 1], curves[rows, i]
    frac = np.clip((t - lo) / np.maximum(hi - lo, 1e-9), 0.0, 1.0)
    return np.clip(grid[rows, i - 1] + frac * (grid[rows, i] - grid[rows, i - 1]), 0.0, 1.0)


#: Least response (linear colour per unit of linear base colour, every channel) of a pixel whose colour
#: tells its base colour: below it (deep shadow, a mirror showing nothing) the pixel is left to other views.
MIN_RESPONSE = 0.01
#: 8-bit level from which a channel counts as clipped by the colour render's encoding.
CLIPPED = 254


def changed_pixels(edited: np.ndarray, before: np.ndarray, mask: np.ndarray, tolerance: int) -> np.ndarray:
    """bool (H, W): object pixels (``mask``) where the uint8 ``edited`` view differs from ``before`` by more than
    ``tolerance`` levels in some channel."""
    return mask & (np.abs(edited[..., :3].astype(np.int16) - before[..., :3]).max(axis=2) > tolerance)


def edit_delta(edited: np.ndarray, lit: np.ndarray, albedo: np.ndarray, mask: np.ndarray,
               settings: EditBakeSettings | None = None, lighting: ViewLighting | None = None,
               curve: ResponseCurve | None = None) -> np.ndarray:
    """float32 (H, W, 7): the linear albedo change an edit implies (RGB), 1.0 where the pixel changed, and
    there the linear albedo the change is relative to (RGB: the guide of the detail transfer).

    ``edited``, ``lit``: uint8 (H, W, 3) sRGB, the edited view and the original colour render;
    ``albedo``: the original albedo as the colour render shows it, float32 (H, W, 3) linear (the ``albedo_linear``
    pass) or uint8 sRGB (``albedo_filtered``; ``albedo`` for older captures); ``mask``: bool (H, W), the object;
    ``lighting``: the view's lighting-removal passes and ``curve`` the capture's metal :class:`ResponseCurve`
    (None: the lit / albedo ratio stands in for the shading). Pixels that did not change (or lie outside
    ``mask``) get exactly 0 in all channels.
    """
    settings = settings or EditBakeSettings()
    if not (edited.shape[:2] == lit.shape[:2] == albedo.shape[:2] == mask.shape):
        raise InvalidInputError(
            f"edited view {edited.shape[1]}x{edited.shape[0]} does not match its capture "
            f"{lit.shape[1]}x{lit.shape[0]}: edit the views of this ViewSet at their own size")
    changed = changed_pixels(edited, lit, mask, settings.tolerance)
    out = np.zeros(mask.shape + (7,), np.float32)
    e, l = _linear(edited[changed]), _linear(lit[changed])
    x0 = _linear(albedo[changed]) if albedo.dtype == np.uint8 else albedo[changed][:, :3].astype(np.float32)
    diff = e - l
    if settings.delight and lighting is not None:
        clipped_l, clipped_e = lit[changed][:, :3] >= CLIPPED, edited[changed][:, :3] >= CLIPPED
        diff = e - lighting.colour_linear[changed]  # the unrounded original: only the edit's own rounding remains
        diff = np.where(clipped_l & clipped_e, np.maximum(diff, 0.0), diff)  # both clipped: "at least as bright"
        diffuse, metal = lighting.diffuse_response[changed], lighting.metal_light[changed]
        total = diffuse + metal
        usable = total.min(axis=1) > MIN_RESPONSE
        safe = np.maximum(total, MIN_RESPONSE)
        new = (curve or ResponseCurve.fit(np.zeros(0), np.zeros(0))).solve(
            diff / safe, x0, lighting.metal_reflectance[changed], diffuse / safe)
        diff = (new - x0)[usable]
        x0 = x0[usable]
        changed[changed] = usable
    elif settings.delight:
        diff /= shading(l, x0)
    out[changed, :3] = diff
    out[changed, 3] = 1.0
    out[changed, 4:] = x0
    return out


def residual_noise(surface: TexelSurface, views: list[BakeView], gathered: Gathered,
                   mappings: tuple[np.ndarray, int], changed: np.ndarray, settings: BakeSettings | None = None
                   ) -> np.ndarray | None:
    """Per texel (N,), the variance of what the detail transfer's local mapping leaves of the baked edit that is
    noise: each view's own residual ``x0 + change - (A x0 + b)`` (``A``, ``b`` of :func:`local_mappings` at the
    pixel's UV; a view's blur of the original cancels in it, its noise does not), spread about the residuals' mean
    over the samples that changed (mean over channels), made the noise of that mean by
    :func:`~.detail_transfer.noise_of_mean`. ``views`` carry :func:`edit_delta` arrays and UVs; ``gathered`` is
    their gather; ``changed`` (N,): its texels some view changed. None when a view has no UVs."""
    if any(v.uv is None for v in views):
        return None
    grid, tile = mappings
    rows_n, cols_n = surface.size
    residuals = []
    for v in views:
        hit = v.image[..., 3] > 0
        image = np.zeros(v.image.shape[:2] + (6,), np.float32)
        if hit.any():
            uv, delta = v.uv[hit], v.image[hit]
            a, b = mappings_at(grid, tile, (1.0 - uv[:, 1]) * rows_n - 0.5, uv[:, 0] * cols_n - 0.5)
            x0 = delta[:, 4:7].astype(np.float64)
            r = x0 + delta[:, :3] - np.einsum("nij,nj->ni", a, x0) - b
            image[hit] = np.concatenate([r, r * r], axis=1)
        residuals.append(BakeView(v.camera, image, v.position, v.mask, v.uv, v.normal))
    moments = gather(surface, residuals, settings).value
    share = np.maximum(gathered.value[:, 3:4], 1e-12)
    mean, square = moments[:, :3] / share, moments[:, 3:6] / share
    spread = np.clip(square - mean * mean, 0.0, None).mean(axis=1)
    count = np.square(gathered.weight) / np.maximum(gathered.weight_sq, 1e-30)
    return noise_of_mean(surface, spread, count, changed, tile).astype(np.float32)


def bake_edit(surface: TexelSurface, views: list[BakeView], base: np.ndarray,
              settings: EditBakeSettings | None = None, writable: np.ndarray | None = None) -> BakeResult:
    """Add the views' deltas (from :func:`edit_delta`) to ``base`` and return the new texture.

    ``base``: float32 (rows, cols, 3), the original texture's sRGB-encoded values in [0, 1], top row
    first, the size of ``surface``. Texels no view changed, and texels outside ``writable`` (bool (rows, cols):
    an edit region's, :mod:`.region`), keep ``base``'s values bit for bit in ``BakeResult.srgb`` (and in
    ``texture`` when ``base`` holds 8-bit values).
    """
    settings = settings or EditBakeSettings()
    if base.shape[:2] != surface.size:
        raise InvalidInputError(f"the base texture is {base.shape[1]}x{base.shape[0]} but the bake is "
                                f"{surface.size[1]}x{surface.size[0]}: resample it first")
    if any(v.image.dtype != np.float32 or v.image.shape[2] != 7 for v in views):
        raise InvalidInputError("edit views must carry edit_delta() arrays (float32, 7 channels)")
    g = gather(surface, views, settings.bake)
    share = g.value[:, 3]  # weight share of the samples that changed
    changed_texel = g.seen & (share > 0)
    # the change is averaged over the samples that show one: a view where the texel lies in deep shadow may
    # show a large albedo change as a change below the tolerance, which is no evidence of "unchanged"
    per_change = np.where(changed_texel, 1.0 / np.maximum(share, 1e-12), 0.0)[:, None]
    change = (g.value[:, :3] * per_change).astype(np.float32)
    base = base[..., :3].astype(np.float32)
    if settings.detail and changed_texel.any():
        guide = (g.value[:, 4:] * per_change).astype(np.float32)
        original = srgb_to_linear(base[surface.rows, surface.cols])
        value = guide + change
        mappings = local_mappings(surface, guide, value, changed_texel)
        noise = residual_noise(surface, views, g, mappings, changed_texel, settings.bake)
        edited = transfer_detail(surface, guide, value, original, changed_texel, noise, mappings=mappings)
        change = np.where(changed_texel[:, None], edited - original, 0.0).astype(np.float32)
    # deltas of unseen texels and gutters come from their neighbours (seen-but-unchanged texels count as 0)
    delta = fill_texture(surface, change, g.seen)
    changed = np.zeros(surface.size, bool)
    changed[surface.rows[changed_texel], surface.cols[changed_texel]] = True
    seen = np.zeros(surface.size, bool)
    seen[surface.rows, surface.cols] = g.seen
    apply = changed | (~seen & (np.abs(delta).max(axis=2) > settings.fill_threshold))
    if writable is not None:
        apply &= writable
        changed &= writable
    new = linear_to_srgb(srgb_to_linear(base[apply]) + delta[apply].astype(np.float32))
    out = base.copy()
    out[apply] = new
    texture = to_uint8(out)
    return BakeResult(texture, seen, surface.covered, apply, out)
