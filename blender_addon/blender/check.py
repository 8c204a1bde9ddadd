"""``groupedit check``: capture an asset's unlit base colour, bake it back, compare with its own texture.

With ``oracle``, also measure what lighting removal costs: the asset is re-rendered *lit* with a known
recoloured texture (channels rotated and lifted), those renders stand in for edited views, and the edit
bake (with shading removal against the original lit capture) is compared with the recoloured texture.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ..core.bake.gather import BakeResult, bake, sample_texture, views_from_viewset
from ..core.errors import InvalidInputError
from ..core.format.images import linear_to_srgb, to_uint8, write_png
from ..core.metrics import erode, psnr, ssim
from ..core.bake.edit_bake import EditBakeSettings
from ..core.bake.restyle import TextureTarget, bake_edit_into_targets, check_texture_size
from ..core.capture.rigs import RigSpec
from ..core.bake.uv_raster import TexelSurface, rasterise_uv
from ..core.bake.verify import closed_loop
from .bake.apply_texture import ORIGINAL_KEY, RESTYLED_KEY, apply_textures, image_as_srgb, texture_targets
from ..core.capture.settings import CaptureSettings
from .capture.data_materials import changed_copies
from .capture.render import capture, render_views
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
    vs = capture(obj, spec, CaptureSettings(view_size=view_size, samples=samples, overwrite=True), out / "views",
                 progress=progress)
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
            lit = capture(obj, spec, CaptureSettings(view_size=view_size, samples=samples, overwrite=True),
                          out / "oracle_views", progress=progress)
        edited = [lit.load(v, "colour") for v in lit.views]
        slots = sorted({int(i) for i in np.unique(vs.mesh().material_index)})
        tb = bake_edit_into_targets(vs, edited, [TextureTarget(image.name, slots, texture)], texture_size)[0]
        write_png(out / "oracle_baked.png", tb.result.texture)
        oscores = _scores(tb.result, _texel_reference(surface, recoloured))
        report.update({"oracle_psnr_db": oscores.psnr_db, "oracle_psnr_interior_db": oscores.psnr_interior_db,
                       "oracle_ssim": oscores.ssim, "oracle_drop_db": scores.psnr_db - oscores.psnr_db,
                       "oracle_baked": str(out / "oracle_baked.png")})
    return report


# ------------------------------------------------------------------------- the restyle loop, any base colour
def _recolour_node(tree: Any, source: Any | None, default: tuple[float, ...]) -> Any:
    """Nodes computing :func:`oracle_recolour` (approximately: a 2.2 gamma stands in for sRGB) of the linear
    colour from ``source`` (a socket) or ``default``; returns the output socket."""
    nodes, links = tree.nodes, tree.links
    split = nodes.new("ShaderNodeSeparateColor")
    if source is not None:
        links.new(source, split.inputs["Color"])
    else:
        split.inputs["Color"].default_value = default
    join = nodes.new("ShaderNodeCombineColor")
    for a, b in (("Red", "Green"), ("Green", "Blue"), ("Blue", "Red")):
        links.new(split.outputs[b], join.inputs[a])
    encode = nodes.new("ShaderNodeGamma")
    encode.inputs["Gamma"].default_value = 1.0 / 2.2
    links.new(join.outputs["Color"], encode.inputs["Color"])
    lift = nodes.new("ShaderNodeVectorMath")
    lift.operation = "MULTIPLY_ADD"
    lift.inputs[1].default_value = (0.7, 0.7, 0.7)
    lift.inputs[2].default_value = (0.2, 0.2, 0.2)
    links.new(encode.outputs["Color"], lift.inputs[0])
    decode = nodes.new("ShaderNodeGamma")
    decode.inputs["Gamma"].default_value = 2.2
    links.new(lift.outputs["Vector"], decode.inputs["Color"])
    return decode.outputs["Color"]


def recoloured_materials(obj: Any) -> Any:
    """A context in which ``obj`` has copies of its materials whose base colour, whatever computes it (an image,
    colour attributes, a node group), is recoloured like :func:`oracle_recolour`; the originals come back after."""

    def recolour(tree: Any, bsdf: Any) -> None:
        socket = next(s for s in bsdf.inputs if s.name in ("Base Color", "Color"))
        source = socket.links[0].from_socket if socket.is_linked else None
        tree.links.new(_recolour_node(tree, source, tuple(socket.default_value)), socket)

    return changed_copies(obj, recolour)


@contextmanager
def applied(obj: Any, bakes: list[Any], folder: Path, uv_map: str) -> Iterator[None]:
    """``bakes`` applied to ``obj`` as a restyle applies them, undone after (materials, images and keys removed)."""
    before_keys = {k: obj[k] for k in (ORIGINAL_KEY, RESTYLED_KEY) if k in obj}
    originals = [s.material for s in obj.material_slots]
    slot_count = len(obj.material_slots)
    made = apply_textures(obj, bakes, folder, "png8", pack=False, uv_map=uv_map)
    try:
        yield
    finally:
        for slot, mat in zip(obj.material_slots, originals):
            slot.material = mat
        while len(obj.data.materials) > slot_count:
            obj.data.materials.pop()
        for name in made.materials:
            if name in bpy.data.materials:
                bpy.data.materials.remove(bpy.data.materials[name])
        for name in made.images:
            if name in bpy.data.images:
                bpy.data.images.remove(bpy.data.images[name])
        for k in (ORIGINAL_KEY, RESTYLED_KEY):
            if k in obj:
                del obj[k]
        obj.update_tag()
        for k, v in before_keys.items():
            obj[k] = v


def _views_psnr(a: list[np.ndarray], b: list[np.ndarray], masks: list[np.ndarray]) -> float:
    """PSNR (dB) over the ``masks`` pixels of every view of two lists of images: uint8 sRGB, or float32 linear (then
    compared sRGB-encoded without rounding, 255 as the peak)."""
    x, y = (np.concatenate([_levels(im)[m] for im, m in zip(images, masks)]) for images in (a, b))
    return psnr(x, y, np.ones(len(x), bool))


def _levels(image: np.ndarray) -> np.ndarray:
    return image if image.dtype == np.uint8 else linear_to_srgb(np.clip(image, 0.0, 1.0)) * np.float32(255.0)


def run_restyle_check(obj: Any, spec: RigSpec, view_size: int, texture_size: int, out: Path, samples: int = 16,
                      progress: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """The restyle measured end to end on any kind of base colour, in view space on the object's pixels.

    The unlit measures compare float renders (sRGB-encoded, unrounded): against 8-bit renders an unlit edit, itself
    8-bit, would score its own roundings as exact while an edit recovered from lit renders cannot.

    - ``identity_psnr_db``: every material's base colour baked from the capture's albedo into new textures and
      applied; the unlit base colour rendered again from the capture's cameras against the asset's own.
    - ``oracle_psnr_db``: the asset rendered lit with a known recolour of its base colour (:func:`recoloured_materials`)
      stands in for the edited views; restyled as ``groupedit run`` restyles; its unlit base colour rendered again
      against the recoloured asset's.
    - ``unlit_psnr_db``: the same recolour given unlit (the recoloured asset's ``albedo_filtered`` as the edit of the
      capture's), baked and measured alike; ``oracle_drop_db`` = unlit - oracle: what removing the lighting costs.
    - ``loop_psnr_db``: the closed loop of the lit restyle (lit re-render against the edited views).
    """
    check_texture_size(texture_size)
    settings = CaptureSettings(view_size=view_size, samples=samples, overwrite=True)
    t0 = time.perf_counter()
    vs = capture(obj, spec, settings, out / "views", progress=progress)
    masks = [vs.load(v, "mask") for v in vs.views]
    targets = texture_targets(obj, vs.uv_map)
    albedo = render_views(obj, vs, "albedo", linear=True)
    colour = [vs.load(v, "colour") for v in vs.views]
    unlit = bake_edit_into_targets(vs, colour, [TextureTarget(t.name, t.slots) for t in targets], texture_size)
    with applied(obj, unlit, out / "identity", vs.uv_map):
        identity = _views_psnr(render_views(obj, vs, "albedo", linear=True), albedo, masks)
    with recoloured_materials(obj):
        lit = capture(obj, spec, replace(settings, uv_map=vs.uv_map), out / "oracle_views", progress=progress)
        truth = render_views(obj, vs, "albedo", linear=True)
    unlit_edit = [lit.load(v, "albedo_filtered") for v in lit.views]
    plain = bake_edit_into_targets(vs, unlit_edit, targets, texture_size, EditBakeSettings(delight=False),
                                   before="albedo_filtered")
    with applied(obj, plain, out / "unlit", vs.uv_map):
        unlit_psnr = _views_psnr(render_views(obj, vs, "albedo", linear=True), truth, masks)
    edited = [lit.load(v, "colour") for v in lit.views]
    bakes = bake_edit_into_targets(vs, edited, targets, texture_size)
    with applied(obj, bakes, out / "oracle", vs.uv_map):
        oracle = _views_psnr(render_views(obj, vs, "albedo", linear=True), truth, masks)
        loop, _ = closed_loop([v.name for v in vs.views], edited, render_views(obj, vs, "colour"), masks)
    changed = [float(tb.result.changed[tb.result.covered].mean()) if tb.result.covered.any() else 0.0 for tb in bakes]
    return {"object": obj.name, "views": len(vs.views), "view_size": view_size, "texture_size": texture_size,
            "identity_psnr_db": identity, "unlit_psnr_db": unlit_psnr, "oracle_psnr_db": oracle,
            "oracle_drop_db": unlit_psnr - oracle,
            "loop_psnr_db": loop.psnr_db, "changed_share": min(changed) if changed else 0.0,
            "textures": len(bakes), "seconds": time.perf_counter() - t0}
