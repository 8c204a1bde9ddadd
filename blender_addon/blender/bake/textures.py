"""Read an object's base-colour texture into numpy."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..capture.data_materials import find_bsdf


def base_colour_image(obj: Any) -> Any | None:
    """The image of the Image Texture node feeding the base colour of the object's first material that has one."""
    for slot in obj.material_slots:
        mat = slot.material
        if mat is None or not mat.use_nodes:
            continue
        bsdf = find_bsdf(mat.node_tree)
        if bsdf is None:
            continue
        socket = bsdf.inputs.get("Base Color") or bsdf.inputs.get("Color")
        node = socket.links[0].from_node if socket is not None and socket.is_linked else None
        seen = set()
        while node is not None and node.name not in seen:  # through colour-passing nodes to the image
            seen.add(node.name)
            if node.bl_idname == "ShaderNodeTexImage" and node.image is not None:
                return node.image
            linked = [i for i in node.inputs if i.is_linked and i.type == "RGBA"]
            node = linked[0].links[0].from_node if linked else None
    return None


def image_pixels(image: Any) -> np.ndarray:
    """float32 (H, W, 3) in the image's stored encoding (sRGB values for 8-bit sRGB images), top row first."""
    w, h = image.size
    px = np.empty(w * h * image.channels, np.float32)
    image.pixels.foreach_get(px)
    px = px.reshape(h, w, image.channels)[::-1]
    if image.channels == 1:
        px = np.repeat(px, 3, axis=2)
    return np.ascontiguousarray(px[..., :3])
