"""Bake a ViewSet's edited views into the object's textures: one texture per material group (bpy-free).

A *target* is one texture to write: the material slots whose triangles it covers (materials that
share one base-colour image share a target) and, when that image feeds the base colour directly, its
pixels, which the edit is added to (texels the edit did not change keep them exactly). Without such
an image (a flat colour, a procedural or mixed base colour, no material) the original appearance is
first baked from the capture's albedo pass. When the image is drawn on another UV map than the one
captured (a bake into a new unwrapped map, see ``add_unwrapped_uv_map``), it is first redrawn on the
captured map (:func:`transfer_texture`: resampled, so unchanged texels match it closely, not exactly).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .gather import BakeResult, BakeView, bake, fill_texture, sample_texture, views_from_viewset
from .edit_bake import EditBakeSettings, ResponseCurve, ViewLighting, bake_edit, changed_pixels, edit_delta
from ..errors import InvalidInputError, RestyleShortfallError, ViewSetFormatError
from ..format.images import read_png, srgb_to_linear
from .region import RegionReport, region_report, region_texels
from .uv_raster import TexelSurface, UVLayoutReport, rasterise_uv, uv_layout_report
from ..format.viewset import EDITED_DIR, View, ViewSet

log = logging.getLogger(__name__)

#: ``progress(done, total, what)`` after each texture.
BakeProgress = Callable[[int, int, str], None]


@dataclass
class TextureTarget:
    """``name``: what the texture is for (an image or material name); ``slots``: material indices whose
    triangles it covers; ``base``: float32 (H, W, 3) sRGB-encoded values in [0, 1], top row first, of the
    image that feeds these slots' base colour directly (None: bake the original from the albedo pass);
    ``base_uvs``: (T, 3, 2) per triangle corner, the UV map ``base`` is drawn on when that is not the
    captured one (None: it is the captured one)."""

    name: str
    slots: list[int]
    base: np.ndarray | None = None
    base_uvs: np.ndarray | None = None


@dataclass
class TextureBake:
    """The baked texture of one target, the report on its UV layout and, for a capture with an edit region, what
    the bake changed inside and outside it and the texels it could write (bool (H, W))."""

    target: TextureTarget
    result: BakeResult
    layout: UVLayoutReport
    region: RegionReport | None = None
    writable: np.ndarray | None = None


def resample(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` (H, W, C) resampled bilinearly (repeat wrap) to (size, size, C); returned as is at that size."""
    if image.shape[:2] == (size, size):
        return image
    centres = (np.arange(size) + 0.5) / size
    uu, vv = np.meshgrid(centres, 1.0 - centres)
    uv = np.stack([uu.ravel(), vv.ravel()], axis=1)
    return sample_texture(image, uv).reshape(size, size, -1).astype(image.dtype)


def transfer_texture(image: np.ndarray, surface: TexelSurface, uvs: np.ndarray) -> np.ndarray:
    """``image`` (H, W, C), drawn on the UV map ``uvs`` (T, 3, 2) of the mesh ``surface`` was rasterised
    from, redrawn on the layout of ``surface``: every covered texel takes the image (bilinear) where its
    surface point lies on ``uvs``; gutters are grown from the islands. float32 (rows, cols, C), the size
    of ``surface``."""
    values = sample_texture(image, surface.corner_values(uvs))
    return fill_texture(surface, values, np.ones(len(values), bool))


def load_edited(viewset: ViewSet, folder: str = EDITED_DIR) -> list[np.ndarray]:
    """The edited views (uint8 (H, W, 3)) in ``<viewset>/<folder>/<view>.png``, in the ViewSet's order.

    Edits must belong to this capture: the same view names (no view missing, no other view's image) and every image
    at its view's size; otherwise :class:`ViewSetFormatError` says what differs (a bake never mixes captures).
    """
    root = viewset.root / folder
    if not root.is_dir():
        raise ViewSetFormatError(f"{root} does not exist: edit the views first (groupedit edit --views {viewset.root})")
    names = {v.name for v in viewset.views}
    strangers = sorted(p.stem for p in root.glob("*.png") if p.stem not in names)
    if strangers:
        raise ViewSetFormatError(f"{root} holds views this capture does not have ({', '.join(strangers[:5])}): "
                                 "the edits are of another capture; edit these views again")
    out = []
    for v in viewset.views:
        path = root / f"{v.name}.png"
        if not path.is_file():
            raise ViewSetFormatError(f"{path} is missing: the edit did not return every view; edit again")
        image = read_png(path)[..., :3]
        size = (v.camera.intrinsics.height, v.camera.intrinsics.width)
        if image.shape[:2] != size:
            raise ViewSetFormatError(f"{path} is {image.shape[1]}x{image.shape[0]} but view {v.name} was captured at "
                                     f"{size[1]}x{size[0]}: the edits are of another capture; edit these views again")
        out.append(image)
    return out


def reference_albedo(viewset: ViewSet, view: View) -> np.ndarray:
    """The base colour the colour render is compared with, linear float32 (H, W, 3): through the colour render's
    pixel filter, as blurred as the colour (``albedo_linear``; the 8-bit ``albedo_filtered`` for captures that lack
    it, the sharp ``albedo`` for older ones)."""
    if "albedo_linear" in view.files:
        return viewset.load(view, "albedo_linear")[..., :3].astype(np.float32)
    name = "albedo_filtered" if "albedo_filtered" in view.files else "albedo"
    return srgb_to_linear(viewset.load(view, name)[..., :3] / np.float32(255.0))


def _studio(viewset: ViewSet) -> bool:
    """Whether the capture used the neutral studio light (by construction the same in every channel)."""
    return (viewset.capture or {}).get("lighting_used") == "studio"


def view_lighting(viewset: ViewSet, view: View, metal_offset: float = 0.0) -> ViewLighting | None:
    """The view's lighting-removal passes (None for captures that lack them), with the metal's Fresnel edge
    (``metal_edge``, where captured) taken out: see :func:`~..capture.light_split.metal_edge`. Under the studio
    light, each channel's metal light is first corrected by the capture's ``metal_offset``
    (:func:`fit_metal_offset`) and the channels then share one (:func:`neutral_metal_light`)."""
    names = ("colour_linear", "diffuse_response", "metal_light", "metal_reflectance")
    if any(n not in view.files for n in names):
        return None
    lighting = ViewLighting(*(viewset.load(view, n).astype(np.float32) for n in names))
    if _studio(viewset):  # a neutral light, by construction
        lighting = neutral_metal_light(with_metal_offset(lighting, metal_offset), reference_albedo(viewset, view))
    if "metal_edge" in view.files:
        lighting = without_edge(lighting, viewset.load(view, "metal_edge").astype(np.float32))
    return lighting


def with_metal_offset(lighting: ViewLighting, offset: float) -> ViewLighting:
    """``lighting`` with each channel's metal light as the light the metal reflects, not divided by Cycles' estimate.

    Cycles' glossy light pass is the lobe's reflected light divided by an *estimate* of the lobe's albedo (the glossy
    colour pass, ``g``). The estimate runs higher than what the metal reflects by about a constant ``offset`` (its
    Fresnel edge is estimated too high), so the pass reads ``L (g - offset) / g``: low where ``g`` is small (a dark
    channel), though the light ``L`` is the same. Here the metal light becomes ``metal_light g / (g - offset)`` = ``L``
    where ``g`` is known and above twice the offset, so that a change of base colour changes the colour by ``L`` times
    the change of ``g`` (the offset itself does not change with the base colour: it cancels in a change)."""
    g = lighting.metal_reflectance
    if offset <= 0.0:
        return lighting
    with np.errstate(invalid="ignore"):
        known = np.isfinite(g) & (g > 2.0 * offset)
    scale = np.where(known, g / np.where(known, g - offset, 1.0), 1.0)
    return ViewLighting(lighting.colour_linear, lighting.diffuse_response,
                        (lighting.metal_light * scale).astype(np.float32), g)


def metal_offset(reflectance: np.ndarray, light: np.ndarray, min_reflectance: float = 0.02) -> float:
    """How much Cycles' glossy colour pass over-estimates a metal's reflectance (linear, about constant: see
    :func:`with_metal_offset`), from metal pixels under a neutral light: ``reflectance`` (the glossy colour pass over
    metallic, ``g``) and ``light`` (``metal_light``), (N, 3) each, known in every channel.

    The pixel's channels share one light ``L``, so the pass reads ``L (1 - offset / g_c)`` in channel ``c``: against
    its brightest channel, ``y = 1 - light_c / light_ref ~ offset z`` with ``z = 1 / g_c - 1 / g_ref``. Each darker
    channel (``g`` at least ``min_reflectance``) gives the slope ``y / z``; the offset is their median weighted by
    ``z^2`` (a least-squares slope's weights, without its pull towards the few pixels whose passes disagree), at
    least 0; 0 without such a channel."""
    g, light = reflectance.astype(np.float64), light.astype(np.float64)
    ref = np.argmax(g, axis=1)[:, None]
    g_ref, light_ref = np.take_along_axis(g, ref, 1), np.take_along_axis(light, ref, 1)
    z = 1.0 / np.maximum(g, 1e-12) - 1.0 / g_ref
    use = (z > 0.0) & (g >= min_reflectance) & (light_ref > 0.0)
    slope = ((1.0 - light / np.where(use, light_ref, 1.0)) / np.where(use, z, 1.0))[use]
    if not len(slope):
        return 0.0
    order = np.argsort(slope)
    cumulative = np.cumsum((z * z)[use][order])
    return max(float(slope[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])]), 0.0)


def fit_metal_offset(viewset: ViewSet) -> float:
    """The capture's :func:`metal_offset`, from its metal pixels (where every channel's reflectance is known); 0
    unless the capture used the studio light (other lights may be coloured: the channels' lights differ)."""
    if not _studio(viewset):
        return 0.0
    gs, lights = [np.zeros((0, 3), np.float32)], [np.zeros((0, 3), np.float32)]
    for v in viewset.views:
        if "metal_reflectance" not in v.files or "metal_light" not in v.files:
            continue
        g = viewset.load(v, "metal_reflectance").astype(np.float32)
        known = np.isfinite(g).all(axis=-1)
        gs.append(g[known])
        lights.append(viewset.load(v, "metal_light").astype(np.float32)[known])
    return metal_offset(np.concatenate(gs), np.concatenate(lights))


def neutral_metal_light(lighting: ViewLighting, albedo: np.ndarray) -> ViewLighting:
    """``lighting`` with one metal light per pixel for all channels, as a neutral light (the studio rig) gives it.

    Cycles' glossy light pass is the lobe's light divided by an estimate of the lobe's albedo at the view angle, per
    channel; for a rough metal the estimate is off most in its dark channels (there the Fresnel edge weighs most), so
    the pass differs between channels where the light does not. The channels' mean weighted by the base colour
    squared (``albedo``: linear, (H, W, 3)) keeps what the bright channels say (Avocado, roughness 1: the metal's
    colour at a new base colour predicted 10x closer)."""
    weight = albedo.astype(np.float32) ** 2 + np.float32(1e-6)
    neutral = (lighting.metal_light * weight).sum(axis=-1, keepdims=True) / weight.sum(axis=-1, keepdims=True)
    return ViewLighting(lighting.colour_linear, lighting.diffuse_response,
                        np.broadcast_to(neutral, lighting.metal_light.shape).astype(np.float32),
                        lighting.metal_reflectance)


def without_edge(lighting: ViewLighting, edge: np.ndarray) -> ViewLighting:
    """``lighting`` with the part of the metal that does not follow the base colour moved out of the metal's:
    ``metal_light`` scaled by 1 - g(0) and ``metal_reflectance`` normalised to (g - g(0)) / (1 - g(0)) (NaN stays
    NaN). ``edge``: g(0), float32 (H, W, 3), NaN where unknown (taken as 0, as before the pass existed)."""
    g0 = np.nan_to_num(edge, nan=0.0)
    keep = np.maximum(1.0 - g0, 1e-3)
    with np.errstate(invalid="ignore"):
        reflectance = np.clip((lighting.metal_reflectance - g0) / keep, 0.0, 1.0)
    return ViewLighting(lighting.colour_linear, lighting.diffuse_response, lighting.metal_light * (1.0 - g0),
                        reflectance.astype(np.float32))


def fit_response(viewset: ViewSet, samples: int = 200_000) -> ResponseCurve:
    """The capture's metal :class:`ResponseCurve`: every metal pixel's reflectance (``metal_reflectance``, its
    edge taken out: :func:`view_lighting`) against its base colour (``albedo_filtered``); the straight line where
    nothing is metal."""
    rng = np.random.default_rng(0)
    per_view = max(samples // max(len(viewset.views), 1), 1)
    xs, rs = [np.zeros(0, np.float32)], [np.zeros(0, np.float32)]
    for v in viewset.views:
        lighting = view_lighting(viewset, v)
        if lighting is None:
            continue
        r = lighting.metal_reflectance
        known = np.isfinite(r)
        if not known.any():
            continue
        x = reference_albedo(viewset, v)[known]
        r = r[known]
        pick = rng.choice(len(x), size=min(per_view, len(x)), replace=False)
        xs.append(x[pick])
        rs.append(r[pick])
    return ResponseCurve.fit(np.concatenate(xs), np.concatenate(rs))


@dataclass
class EditedViews:
    """The views of an edit as the bake gathers them (:func:`edit_views`): ``views`` carry each view's
    :func:`edit_delta`; ``editable_pixels``: the pixels the edit may change (the edit region's, else the object's),
    all views together; ``changed_share``: the share of those the edit changed."""

    views: list[BakeView]
    editable_pixels: int
    changed_share: float


def edit_views(viewset: ViewSet, edited: list[np.ndarray], settings: EditBakeSettings,
               before: str = "colour") -> EditedViews:
    """Each view's :func:`edit_delta` against the capture's ``before`` pass (what was edited: the lit ``colour``,
    or, for edits of the unlit base colour, ``albedo_filtered`` with ``delight`` off). Where the capture has an
    edit region, changes outside it are ignored."""
    if len(edited) != len(viewset.views):
        raise InvalidInputError(f"{len(edited)} edited views for a ViewSet of {len(viewset.views)}")
    curve = fit_response(viewset) if settings.delight else None
    offset = fit_metal_offset(viewset) if settings.delight else 0.0
    out, changed, pixels = [], 0, 0
    for v, image in zip(viewset.views, edited):
        mask, lit = viewset.load(v, "mask"), viewset.load(v, before)
        editable = viewset.load(v, "region") if "region" in v.files else mask
        changed += int(changed_pixels(image, lit, editable, settings.tolerance).sum())
        pixels += int(editable.sum())
        if settings.delight:
            delta = edit_delta(image, lit, reference_albedo(viewset, v), editable, settings,
                               view_lighting(viewset, v, offset), curve)
        else:  # an edit of the base colour itself: its change and its guide are of the same (8-bit) image
            delta = edit_delta(image, lit, lit, editable, settings)
        out.append(BakeView(v.camera, delta, viewset.load(v, "position"), mask, viewset.load(v, "uv"),
                            viewset.load(v, "normal")))
    return EditedViews(out, pixels, changed / max(pixels, 1))


#: An edit that changed at least this share of the object's pixels must change at least ``SHORTFALL`` times as large a
#: share of its texels, or the bake failed to carry it (:func:`check_shortfall`).
NOTICEABLE, SHORTFALL = 0.02, 0.25


def check_shortfall(edits: EditedViews, bakes: list[TextureBake]) -> None:
    """Raise :class:`RestyleShortfallError`, naming the likely cause, when the bakes changed far less of the object
    (of its edit region, where the capture has one) than the edit changed in the views."""
    writable = [tb.result.covered if tb.writable is None else tb.result.covered & tb.writable for tb in bakes]
    covered = sum(int(w.sum()) for w in writable)
    texel_share = sum(int((tb.result.changed & w).sum()) for tb, w in zip(bakes, writable)) / max(covered, 1)
    edited_share = edits.changed_share
    if edited_share < NOTICEABLE or texel_share >= SHORTFALL * edited_share:
        return
    carried = sum(int((v.image[..., 3] > 0).sum()) for v in edits.views)
    pixels = edits.editable_pixels
    if carried < 0.5 * edited_share * pixels:
        cause = ("where the edit changed the views, the object's colour does not follow its base colour (an emission "
                 "or other shader GroupEdit cannot read, or deep shadow): GroupEdit restyles the base colour of "
                 "Principled, Diffuse and similar BSDFs")
    elif any(tb.region is not None and tb.region.shared for tb in bakes):
        cause = ("the edit region shares its texels with the rest of the object through overlapping UVs, and those "
                 "are kept as they are: capture again with an auto-unwrapped UV map (Capture panel: Add unwrapped UV "
                 "map; command line: capture --unwrap)")
    else:
        cause = "the changed pixels fall on texels the bake could not write (see the UV layout report above)"
    raise RestyleShortfallError(
        f"the edit changed {edited_share:.0%} of the object's pixels in the views, but the bake would change only "
        f"{texel_share:.1%} of its texels: {cause}. Nothing was applied.")


#: Texture sides (texels) a bake writes: the one range of the command line, the panel and the API.
TEXTURE_SIZE_RANGE = (512, 4096)
#: The sizes the panel offers: the powers of two within the range.
TEXTURE_SIZES = tuple(2**k for k in range(9, 13) if TEXTURE_SIZE_RANGE[0] <= 2**k <= TEXTURE_SIZE_RANGE[1])


def check_texture_size(size: int) -> None:
    """Raise :class:`InvalidInputError` unless ``size`` is within :data:`TEXTURE_SIZE_RANGE`."""
    low, high = TEXTURE_SIZE_RANGE
    if not low <= size <= high:
        raise InvalidInputError(f"texture size must be between {low} and {high} texels, got {size}")


def bake_edit_into_targets(viewset: ViewSet, edited: list[np.ndarray], targets: list[TextureTarget], size: int,
                           settings: EditBakeSettings | None = None,
                           progress: BakeProgress | None = None, before: str = "colour") -> list[TextureBake]:
    """Bake ``edited`` (uint8 views in the ViewSet's order, edits of the ``before`` pass, see :func:`edit_views`)
    into a ``size``² texture per target.

    Targets whose slots own no triangle are skipped. Each bake reports its UV layout (overlaps). A bake that would
    change far less of the object than the edit changed in the views raises (:func:`check_shortfall`).
    """
    check_texture_size(size)
    settings = settings or EditBakeSettings()
    mesh = viewset.mesh()
    edits = edit_views(viewset, edited, settings, before)
    views = edits.views
    albedo: list[BakeView] | None = None
    out = []
    for i, target in enumerate(targets):
        tris = np.flatnonzero(np.isin(mesh.material_index, target.slots))
        if not len(tris):
            log.info("no triangle uses %s: skipped", target.name)
            continue
        if mesh.region is not None and not mesh.region[tris].any():
            log.info("%s lies outside the edit region: kept as it is", target.name)
            continue
        surface = rasterise_uv(mesh, size, tris)
        texels = region_texels(mesh, surface.size, tris) if mesh.region is not None else None
        layout = uv_layout_report(mesh, surface, tris)
        if layout.overlapping:
            log.warning("%s: %s", target.name, layout.message())
        if target.base is not None and target.base_uvs is not None:
            base = transfer_texture(np.asarray(target.base, np.float32)[..., :3], surface, target.base_uvs)
        elif target.base is not None:
            base = resample(np.asarray(target.base, np.float32)[..., :3], size)
        else:
            albedo = albedo or views_from_viewset(viewset, "albedo")
            base = bake(surface, albedo, settings.bake).srgb
        result = bake_edit(surface, views, base, settings, None if texels is None else texels.writable)
        report = None if texels is None else region_report(texels, base, result.srgb)
        out.append(TextureBake(target, result, layout, report, None if texels is None else texels.writable))
        if progress is not None:
            progress(i + 1, len(targets), target.name)
    check_shortfall(edits, out)
    return out


def default_texture_path(out: Path, target: TextureTarget, count: int) -> Path:
    """``out`` itself for a single texture, else ``<stem>_<target name>.<suffix>`` beside it."""
    if count == 1:
        return out
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in target.name)
    return out.with_name(f"{out.stem}_{safe}{out.suffix}")
