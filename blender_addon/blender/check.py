"""``groupedit check``: capture an asset's unlit base colour, bake it back, compare with its own texture.

With ``oracle``, also measure what lighting removal costs: the asset is re-rendered *lit* with a known
recoloured texture (channels rotated and lifted), those renders stand in for edited views, and the edit
bake (with shading removal against the original lit capture) is compared with the recoloured texture.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.bake.gather import BakeResult, bake, sample_texture, views_from_viewset
from ..core.errors import InvalidInputError
from ..core.format.images import to_uint8, write_png
from ..core.metrics import erode, psnr, ssim
from ..core.bake.restyle import TextureTarget, bake_edit_into_targets, check_texture_size
from ..core.capture.rigs import RigSpec
from ..core.bake.uv_raster import TexelSurface, rasterise_uv
from .bake.apply_texture import image_as_srgb
from ..core.capture.settings import CaptureSettings
from .capture.render import capture
from .bake.textures import base_colour_image


def oracle_recolour(srgb: np.ndarray) -> np.ndarray:
    """The oracle's known edit of a texture (sRGB-encoded floats): channels rotated, scaled and lifted."""
    return np.clip(srgb[..., [1, 2, 0]] * 0.7 + 0.2, 0.0, 1.0).astype(np.float32)


@contextmanager
def image_pixels_replaced(image: Any, srgb: np.ndarray) -> Iterator[None]:
    """Temporarily give ``image`` other pixels (float (H, W, 3) top row first); the originals come back exactly."""
    original = np.empty(len(image.pixels), np.float32)
    image.pixels.foreach_get(original)
    rgba = original.reshape(image.size[1], image.size[0], image.channels).copy()
    rgba[..., :3] = srgb[::-1]
    try:
        image.pixels.foreach_set(rgba.ravel())
        image.update()
        yield
    finally:
        image.pixels.foreach_set(original)
        image.update()


@dataclass
class _Scores:
    psnr_db: float
    psnr_interior_db: float
    ssim: float


def _texel_reference(surface: TexelSurface, srgb: np.ndarray) -> np.ndarray:
    ref = np.zeros(surface.size + (3,), np.uint8)
    ref[surface.rows, surface.cols] = to_uint8(sample_texture(srgb, surface.uv))
    return ref


def _scores(result: BakeResult, reference: np.ndarray) -> _Scores:
    seen = result.seen
    return _Scores(psnr(result.texture, reference, seen), psnr(result.texture, reference, seen & erode(result.covered, 4)),
                   ssim(result.texture, reference, seen))


def run_check(obj: Any, spec: RigSpec, view_size: int, texture_size: int, out: Path, oracle: bool = False,
              progress: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """The check report (see docs/headless.md); writes views, ``baked.png`` and ``error_map.png`` into ``out``."""
    check_texture_size(texture_size)
    image = base_colour_image(obj)
    if image is None:
        raise InvalidInputError(f"{obj.name!r} has no base-colour image texture to compare with")
    texture = image_as_srgb(image)
    samples = 16 if oracle else 1  # the unlit round trip reads only the albedo pass
    t0 = time.perf_counter()
    vs = capture(obj, spec, CaptureSettings(view_size=view_size, samples=samples, overwrite=True,
                                            response_passes=oracle), out / "views", progress=progress)
    capture_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    views = views_from_viewset(vs, "albedo")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    surface = rasterise_uv(vs.mesh(), texture_size)
    result = bake(surface, views)
    bake_s = time.perf_counter() - t0
    reference = _texel_reference(surface, texture)
    seen = result.seen
    area = np.zeros(surface.size)
    area[surface.rows, surface.cols] = 1.0 / np.maximum(surface.uv_per_length, 1e-12) ** 2  # world area per texel
    err = np.abs(result.texture.astype(np.int16) - reference.astype(np.int16)).max(axis=2)
    write_png(out / "error_map.png", np.where(seen, np.clip(err * 8, 0, 255), 0).astype(np.uint8))
    write_png(out / "baked.png", result.texture)
    scores = _scores(result, reference)
    report: dict[str, Any] = {
        "object": obj.name, "views": len(vs.views), "view_size": view_size, "texture_size": texture_size,
        "coverage": float((area * seen).sum() / max(area.sum(), 1e-30)),
        "psnr_db": scores.psnr_db, "psnr_interior_db": scores.psnr_interior_db, "ssim": scores.ssim,
        "capture_s": capture_s, "load_s": load_s, "bake_s": bake_s,
        "error_map": str(out / "error_map.png"), "baked": str(out / "baked.png"), "viewset": str(vs.root),
    }
    if oracle:
        recoloured = oracle_recolour(texture)
        with image_pixels_replaced(image, recoloured):
            lit = capture(obj, spec, CaptureSettings(view_size=view_size, samples=samples, overwrite=True,
                                                     response_passes=False), out / "oracle_views", progress=progress)
        edited = [lit.load(v, "colour") for v in lit.views]
        slots = sorted({int(i) for i in np.unique(vs.mesh().material_index)})
        tb = bake_edit_into_targets(vs, edited, [TextureTarget(image.name, slots, texture)], texture_size)[0]
        write_png(out / "oracle_baked.png", tb.result.texture)
        oscores = _scores(tb.result, _texel_reference(surface, recoloured))
        report.update({"oracle_psnr_db": oscores.psnr_db, "oracle_psnr_interior_db": oscores.psnr_interior_db,
                       "oracle_ssim": oscores.ssim, "oracle_drop_db": scores.psnr_db - oscores.psnr_db,
                       "oracle_baked": str(out / "oracle_baked.png")})
    return report
