"""Bake an *edit* into an existing texture: only what the edit changed, with the renders' lighting removed.

The edited views are lit renders (the capture's ``colour`` pass, restyled by an editor). For every
view, :func:`edit_delta` turns the edit into the change of *albedo* it implies, in linear light:

    shading s = lit / albedo               (per channel, from the original capture's colour and albedo passes)
    delta     = (edited - lit) / s         (= edited / s - albedo: the edited view's albedo minus the original's)

and marks the pixels that changed (more than ``tolerance`` 8-bit levels in any channel). Where a pixel
did not change, delta is exactly 0. :func:`bake_edit` gathers the deltas like any bake, adds them to
the original texture and writes only the texels some view changed (plus unseen texels and gutters
next to changes, filled along the surface and in UV space). Every other texel keeps the original's
value exactly, so repeated edits do not degrade a texture.

Limits of the shading removal: the ratio assumes the edit keeps the lighting (same light, same
shadows); inter-reflections that change with the new colour, specular highlights and shadows that the
editor moves end up in the albedo. Where the original albedo is near black in a channel, the
luminance ratio of the pixel stands in for that channel's ratio.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .bake import BakeResult, BakeSettings, BakeView, fill_texture, gather
from .errors import InvalidInputError
from .images import linear_to_srgb, srgb_to_linear, to_uint8
from .uv_raster import TexelSurface

_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)


@dataclass
class EditBakeSettings:
    """``delight``: remove the renders' shading (edited views are lit renders); off when the edited
    views are albedo already. ``tolerance``: 8-bit levels a pixel must change by to count as edited.
    ``fill_threshold``: linear change below which a filled (unseen or gutter) texel keeps the original."""

    delight: bool = True
    tolerance: int = 2
    fill_threshold: float = 1.0 / 255.0
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


def edit_delta(edited: np.ndarray, lit: np.ndarray, albedo: np.ndarray, mask: np.ndarray,
               settings: EditBakeSettings | None = None) -> np.ndarray:
    """float32 (H, W, 4): the linear albedo change an edit implies (RGB) and 1.0 where the pixel changed.

    ``edited``, ``lit``: uint8 (H, W, 3) sRGB, the edited view and the original colour render;
    ``albedo``: uint8 (H, W, 3) sRGB, the original albedo pass; ``mask``: bool (H, W), the object.
    Pixels that did not change (or lie outside ``mask``) get exactly 0 in all four channels.
    """
    settings = settings or EditBakeSettings()
    if not (edited.shape[:2] == lit.shape[:2] == albedo.shape[:2] == mask.shape):
        raise InvalidInputError(
            f"edited view {edited.shape[1]}x{edited.shape[0]} does not match its capture "
            f"{lit.shape[1]}x{lit.shape[0]}: edit the views of this ViewSet at their own size")
    changed = mask & (np.abs(edited[..., :3].astype(np.int16) - lit[..., :3]).max(axis=2) > settings.tolerance)
    out = np.zeros(mask.shape + (4,), np.float32)
    e, l = _linear(edited[changed]), _linear(lit[changed])
    diff = e - l
    if settings.delight:
        diff /= shading(l, _linear(albedo[changed]))
    out[changed, :3] = diff
    out[changed, 3] = 1.0
    return out


def bake_edit(surface: TexelSurface, views: list[BakeView], base: np.ndarray,
              settings: EditBakeSettings | None = None) -> BakeResult:
    """Add the views' deltas (from :func:`edit_delta`) to ``base`` and return the new texture.

    ``base``: float32 (rows, cols, 3), the original texture's sRGB-encoded values in [0, 1], top row
    first, the size of ``surface``. Texels no view changed keep ``base``'s values bit for bit in
    ``BakeResult.srgb`` (and in ``texture`` when ``base`` holds 8-bit values).
    """
    settings = settings or EditBakeSettings()
    if base.shape[:2] != surface.size:
        raise InvalidInputError(f"the base texture is {base.shape[1]}x{base.shape[0]} but the bake is "
                                f"{surface.size[1]}x{surface.size[0]}: resample it first")
    if any(v.image.dtype != np.float32 or v.image.shape[2] != 4 for v in views):
        raise InvalidInputError("edit views must carry edit_delta() arrays (float32, 4 channels)")
    g = gather(surface, views, settings.bake)
    changed_texel = g.seen & (g.value[:, 3] > 0)
    # deltas of unseen texels and gutters come from their neighbours (seen-but-unchanged texels count as 0)
    delta = fill_texture(surface, g.value[:, :3], g.seen)
    changed = np.zeros(surface.size, bool)
    changed[surface.rows[changed_texel], surface.cols[changed_texel]] = True
    seen = np.zeros(surface.size, bool)
    seen[surface.rows, surface.cols] = g.seen
    apply = changed | (~seen & (np.abs(delta).max(axis=2) > settings.fill_threshold))
    base = base[..., :3].astype(np.float32)
    new = linear_to_srgb(srgb_to_linear(base[apply]) + delta[apply].astype(np.float32))
    out = base.copy()
    out[apply] = new
    texture = to_uint8(out)
    return BakeResult(texture, seen, surface.covered, apply, out)
