"""Hook baked textures into an object, non-destructively: new images, material *copies*, a switch back.

For each texture target (:class:`...core.bake.restyle.TextureTarget`) the object's material in those slots
is copied (``<name>_GroupEdit``); in the copy the image that fed the base colour directly is swapped
for the new one, or, where the base colour was a flat colour or a node chain, a new Image Texture node
(reading the baked UV map) is linked into the base colour. Objects without a material get a new
Principled material. The original images and materials are never modified; their names are kept on
the object (``groupedit_original``) and :func:`switch_materials` flips between original and restyled.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy
import numpy as np

from ...core.errors import InvalidInputError, OutputNotWritableError
from ...core.format.images import linear_to_srgb, srgb_to_linear, to_uint8, write_png
from ...core.bake.restyle import TextureBake, TextureTarget
from ..capture.data_materials import find_bsdf
from ..mesh import image_uv_map, mesh_data, reads_uv_as_is
from .textures import image_pixels
from ..names import RESTYLED_SUFFIX

log = logging.getLogger(__name__)

FORMATS = ("png8", "png16", "exr")
ORIGINAL_KEY = "groupedit_original"
RESTYLED_KEY = "groupedit_restyled"
_SUFFIX = {"png8": ".png", "png16": ".png", "exr": ".exr"}


def direct_base_image(mat: Any | None) -> tuple[Any | None, Any | None]:
    """(image, node) of the Image Texture node linked straight into the base colour of ``mat``'s BSDF and reading
    plain UV coordinates (:func:`~..mesh.reads_uv_as_is`; an image behind a texture transform is not direct: the
    restyle bakes a new texture and links it in its place)."""
    if mat is None or not mat.use_nodes:
        return None, None
    bsdf = find_bsdf(mat.node_tree)
    socket = None if bsdf is None else (bsdf.inputs.get("Base Color") or bsdf.inputs.get("Color"))
    if socket is None or not socket.is_linked:
        return None, None
    node = socket.links[0].from_node
    if (node.bl_idname == "ShaderNodeTexImage" and node.image is not None
            and socket.links[0].from_socket.name == "Color" and reads_uv_as_is(node)):
        return node.image, node
    return None, None


def image_as_srgb(image: Any) -> np.ndarray:
    """float32 (H, W, 3) sRGB-encoded values in [0, 1] of a Blender image, top row first."""
    px = image_pixels(image)
    if image.is_float or image.colorspace_settings.name != "sRGB":
        px = linear_to_srgb(px)
    return px


def texture_targets(obj: Any, uv_map: str | None = None) -> list[TextureTarget]:
    """One target per distinct base-colour image (slots sharing an image share it), one per other slot.

    ``uv_map``: the UV map the bake goes into (the captured one); an image drawn on another map carries
    that map's UVs (``base_uvs``) so that the bake can redraw it first.
    """
    if uv_map and uv_map not in obj.data.uv_layers:
        raise InvalidInputError(
            f"the views were captured on the UV map {uv_map!r}, which {obj.name!r} does not have here: bake in the "
            "scene it was captured from (a map added by --unwrap exists only there: use 'groupedit run --unwrap', "
            "or save that scene)")
    slots = list(obj.material_slots) or [None]
    groups: dict[str, TextureTarget] = {}
    for i, slot in enumerate(slots):
        mat = slot.material if slot is not None else None
        image, node = direct_base_image(mat)
        key = f"image:{image.name}" if image is not None else f"slot:{i}"
        if key in groups:
            groups[key].slots.append(i)
            continue
        name = image.name if image is not None else (mat.name if mat is not None else obj.name)
        base_uvs = None
        if image is not None and uv_map:
            drawn_on = image_uv_map(obj, node)
            if drawn_on is not None and drawn_on != uv_map:
                base_uvs = mesh_data(obj, drawn_on).uvs
        groups[key] = TextureTarget(name, [i], image_as_srgb(image) if image is not None else None, base_uvs)
    return list(groups.values())


def write_texture_file(path: Path, srgb: np.ndarray, fmt: str) -> Path:
    """Write float32 sRGB-encoded (H, W, 3) as 8-bit PNG, 16-bit PNG or (linear, half float) OpenEXR."""
    if fmt not in FORMATS:
        raise InvalidInputError(f"texture format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "png8":
            write_png(path, to_uint8(srgb))
        elif fmt == "png16":
            write_png(path, np.clip(np.rint(srgb * 65535.0), 0, 65535).astype(np.uint16))
        else:
            _write_exr(path, srgb_to_linear(srgb))
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


def _write_exr(path: Path, linear: np.ndarray) -> None:
    h, w = linear.shape[:2]
    img = bpy.data.images.new("groupedit exr", w, h, alpha=True, float_buffer=True)
    try:
        rgba = np.ones((h, w, 4), np.float32)
        rgba[..., :3] = linear[::-1]
        img.pixels.foreach_set(rgba.ravel())
        img.filepath_raw = str(path)
        img.file_format = "OPEN_EXR"
        img.save()
    finally:
        bpy.data.images.remove(img)


def load_texture(path: Path, name: str, pack: bool) -> Any:
    """Load a written texture as a new image datablock (packed into the .blend when ``pack``)."""
    image = bpy.data.images.load(str(path), check_existing=False)
    image.name = name
    if path.suffix.lower() != ".exr":
        image.colorspace_settings.name = "sRGB"
    if pack:
        image.pack()
    elif bpy.data.filepath:
        try:
            image.filepath = bpy.path.relpath(str(path))
        except ValueError:  # another drive: keep the absolute path
            pass
    return image


def _restyled_material(obj: Any, source: Any | None, image: Any, uv_map: str | None) -> Any:
    if source is not None and source.use_nodes:
        mat = source.copy()
    else:
        mat = bpy.data.materials.new("GroupEdit")
        mat.use_nodes = True
        if source is not None:
            bsdf = find_bsdf(mat.node_tree)
            if bsdf is not None and "Base Color" in bsdf.inputs:
                bsdf.inputs["Base Color"].default_value = tuple(source.diffuse_color)
    mat.name = f"{source.name if source is not None else obj.name}{RESTYLED_SUFFIX}"
    tree = mat.node_tree
    bsdf = find_bsdf(tree)
    if bsdf is None:
        bsdf = tree.nodes.new("ShaderNodeBsdfPrincipled")
        out = next((n for n in tree.nodes if n.bl_idname == "ShaderNodeOutputMaterial"), None) or \
            tree.nodes.new("ShaderNodeOutputMaterial")
        tree.links.new(bsdf.outputs[0], out.inputs["Surface"])
    _, node = direct_base_image(mat)
    if node is not None:
        node.image = image
        if uv_map and image_uv_map(obj, node) != uv_map:  # baked into another UV map than the original's
            _read_uv_map(tree, node, uv_map)
        return mat
    socket = bsdf.inputs.get("Base Color") or bsdf.inputs.get("Color")
    tex = tree.nodes.new("ShaderNodeTexImage")
    tex.name = tex.label = "GroupEdit texture"
    tex.image = image
    tex.location = (bsdf.location.x - 400, bsdf.location.y)
    if uv_map:
        _read_uv_map(tree, tex, uv_map)
    tree.links.new(tex.outputs["Color"], socket)
    return mat


def _read_uv_map(tree: Any, tex: Any, uv_map: str) -> None:
    """Make the Image Texture node ``tex`` read ``uv_map`` through a new UV Map node."""
    uv = tree.nodes.new("ShaderNodeUVMap")
    uv.uv_map = uv_map
    uv.location = (tex.location.x - 250, tex.location.y)
    tree.links.new(uv.outputs["UV"], tex.inputs["Vector"])


@dataclass
class Applied:
    """What :func:`apply_textures` created: new images and materials, by name, and the texture files."""

    images: list[str]
    materials: list[str]
    files: list[Path]


def apply_textures(obj: Any, bakes: list[TextureBake], folder: Path, fmt: str = "png8", pack: bool = True,
                   uv_map: str | None = None) -> Applied:
    """Write each bake's texture into ``folder``, load it, and put material copies using it on ``obj``.

    Earlier files are never overwritten (a number is added). The originals stay in ``groupedit_original``
    the first time, so repeated applies still switch back to the very first materials.
    """
    slots = obj.material_slots
    if ORIGINAL_KEY not in obj:
        obj[ORIGINAL_KEY] = json.dumps([s.material.name if s.material else "" for s in slots])
    if not len(slots):
        obj.data.materials.append(None)
    images, materials, files = [], [], []
    for tb in bakes:
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in f"{obj.name}_{tb.target.name}")
        path = _free_path(folder / f"{safe}_groupedit{_SUFFIX[fmt]}")
        write_texture_file(path, tb.result.srgb, fmt)  # 8-bit: rounds to exactly ``result.texture``
        image = load_texture(path, f"{tb.target.name}_GroupEdit", pack)
        images.append(image.name)
        files.append(path)
        for i in tb.target.slots:
            mat = _restyled_material(obj, obj.material_slots[i].material, image, uv_map)
            obj.material_slots[i].material = mat
            materials.append(mat.name)
    obj[RESTYLED_KEY] = json.dumps([s.material.name if s.material else "" for s in obj.material_slots])
    log.info("applied %d texture(s) to %s", len(images), obj.name)
    return Applied(images, materials, files)


def _free_path(path: Path) -> Path:
    n, candidate = 1, path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}.{n}{path.suffix}")
        n += 1
    return candidate


def switch_materials(obj: Any, restyled: bool) -> None:
    """Put the original (``restyled=False``) or the restyled materials back on ``obj``'s slots."""
    key = RESTYLED_KEY if restyled else ORIGINAL_KEY
    if key not in obj:
        raise InvalidInputError(f"{obj.name!r} has no GroupEdit texture applied")
    names = json.loads(obj[key])
    slots = obj.material_slots
    for i, slot in enumerate(slots):
        name = names[i] if i < len(names) else ""
        slot.material = bpy.data.materials.get(name) if name else None


def showing_restyled(obj: Any) -> bool | None:
    """True/False when the restyled/original materials are on ``obj``; None when nothing was applied."""
    if RESTYLED_KEY not in obj:
        return None
    return [s.material.name if s.material else "" for s in obj.material_slots] == json.loads(obj[RESTYLED_KEY])
