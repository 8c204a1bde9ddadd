"""Split a colour render into what the base colour scales and what it does not (bpy-free).

Cycles' light passes decompose every pixel of the colour render exactly (no denoising, linear light,
composited over nothing)::

    combined = DiffLight * DiffCol + GlossLight * GlossCol + TransLight * TransCol + Emit

with ``DiffLight = DiffDir + DiffInd`` (light, already divided by the colour: Blender's convention) and
likewise for glossy. The colour render also writes the base colour ``A`` and metallic ``m`` of the
surface to shader AOVs (:mod:`...blender.capture.data_materials`), all through the same pixel filter
and samples. How the pixel's colour depends on the base colour then follows per pixel and channel:

- **diffuse**: ``DiffCol`` is the base colour times closure weights that do not depend on it, so the
  diffuse part is ``diffuse_response * A`` with ``diffuse_response = DiffLight * DiffCol / A`` (the
  colour render floors the base colour at a third of an 8-bit level so that black still shows its light);
- **metal**: a metal reflects its base colour: its part is ``metal_light * g(A)``, ``metal_light = m *
  GlossLight``, with ``g`` the metal's reflectance as a function of the base colour, increasing from
  0 to 1 but not linear (rough metals: multiple scattering). Each pixel shows one point of ``g`` per
  channel, ``metal_reflectance = GlossCol / m`` (where ``m`` >= 0.5; elsewhere unknown, NaN);
- the rest (dielectric highlights, transmission, emission, the background) does not change with ``A``.

A metal reflects some light whatever its base colour: its Fresnel edge, g(0) > 0 at grazing angles. The
data render shades each surface with its own BSDF at a black base colour, so its glossy colour pass divided by
metallic is ``metal_edge`` = g(0) at each pixel centre (:func:`metal_edge`). With g(1) = 1 (a white metal
reflects everything, in Cycles' multiple-scattering GGX too), the part of a metal that follows the base colour
is ``metal_light * (1 - g(0)) * h(A)`` with ``h = (g - g(0)) / (1 - g(0))`` rising from 0 to 1: exactly ``A``
for a smooth metal (Schlick: ``g = A + (1 - A) s``), and close to it for rough ones.

All arrays are float32 (H, W, C), top row first. ``alpha`` is the render's coverage; values are of the
pixel as composited over the background, so a half-covered pixel responds half as much.
"""

from __future__ import annotations

import numpy as np

#: Metallic (share of the pixel's surface) above which the glossy colour is read as the metal's reflectance.
METAL_POINT = 0.5


def split_light(combined: np.ndarray, diffuse: tuple[np.ndarray, np.ndarray, np.ndarray],
                glossy: tuple[np.ndarray, np.ndarray, np.ndarray], base_aov: np.ndarray, metal_aov: np.ndarray,
                cover_aov: np.ndarray, background: tuple[float, float, float]) -> dict[str, np.ndarray]:
    """The lighting passes of one view from its colour render.

    ``combined``: (H, W, 4) premultiplied RGBA; ``diffuse``, ``glossy``: (direct, indirect, colour),
    each (H, W, 3); ``base_aov`` (H, W, 3) and ``metal_aov`` (H, W) as accumulated (premultiplied by
    coverage), ``cover_aov`` (H, W) that coverage: the share of the pixel's samples whose first surface is the
    object (an AOV of 1; the render's alpha is less where the surface is partly transparent). Returns
    ``colour_linear`` (composited over ``background``), ``albedo_filtered`` (the base colour through the render's
    filter, linear, the background colour outside),
    ``diffuse_response``, ``metal_light`` (0 outside) and ``metal_reflectance`` (NaN where unknown).
    """
    alpha, cover = combined[..., 3:4], cover_aov[..., None]
    covered = cover > 1e-4
    safe_cover = np.maximum(cover, 1e-4)
    bg = np.asarray(background, np.float32)
    colour = combined[..., :3] + (1.0 - alpha) * bg
    albedo = np.where(covered, base_aov / safe_cover, 0.0)
    diffuse_part = (diffuse[0] + diffuse[1]) * diffuse[2]
    diffuse_response = np.where(covered, diffuse_part / np.maximum(albedo, 1e-6), 0.0)
    metal = np.clip(metal_aov[..., None], 0.0, None)
    metal_light = np.where(covered, metal * (glossy[0] + glossy[1]), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        reflectance = np.where(covered & (metal >= METAL_POINT * safe_cover), glossy[2] / metal, np.nan)
    return {
        "colour_linear": colour.astype(np.float32),
        "albedo_filtered": np.where(covered, albedo, bg).astype(np.float32),
        "diffuse_response": diffuse_response.astype(np.float32),
        "metal_light": metal_light.astype(np.float32),
        "metal_reflectance": np.clip(reflectance, 0.0, 1.0).astype(np.float32),
    }


def metal_edge(gloss_colour: np.ndarray, metal_aov: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3): a metal's reflectance at base colour 0, its glossy colour ``gloss_colour`` (H, W, 3)
    divided by its metallic ``metal_aov`` (H, W), both from the data render (the surface's BSDF at a black base
    colour); NaN where metallic is below :data:`METAL_POINT` (as ``metal_reflectance``)."""
    metal = metal_aov[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        edge = np.where(metal >= METAL_POINT, gloss_colour / metal, np.nan)
    return np.clip(edge, 0.0, 1.0).astype(np.float32)
