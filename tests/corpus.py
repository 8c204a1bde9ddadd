"""A corpus of assets built in code that stress what real assets do to a restyle.

Each builder makes its asset in the current (empty) scene and returns the object to restyle. Textures are
generated with numpy (no files), sizes are small enough for tests; ``detail`` scales texture sizes up
for the benchmark (``benchmarks/corpus.py``). Nothing in the product is tuned to these assets: they are
checks, like the assets the product is judged on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import bpy
import numpy as np


# ----------------------------------------------------------------------------------------- helpers
def _image(name: str, rgb: np.ndarray, colour_space: str = "sRGB") -> Any:
    """A Blender image from float (H, W, 3) values in [0, 1], top row first (stored as sRGB-encoded 8-bit)."""
    h, w = rgb.shape[:2]
    img = bpy.data.images.new(name, w, h, alpha=False)
    img.colorspace_settings.name = colour_space
    rgba = np.ones((h, w, 4), np.float32)
    rgba[..., :3] = np.round(np.clip(rgb[::-1], 0, 1) * 255.0) / 255.0
    img.pixels.foreach_set(rgba.ravel())
    img.pack()
    return img


def _pattern(size: int, seed: int, cells: int = 6) -> np.ndarray:
    """Soft coloured blobs on stripes: smooth enough for the views to resolve at ``cells`` per side."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    out = np.zeros((size, size, 3))
    for _ in range(cells):
        cx, cy, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.08, 0.25)
        colour = rng.uniform(0.1, 0.9, 3)
        w = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        out = out * (1 - w) + colour * w
    stripes = 0.5 + 0.5 * np.sin(2 * math.pi * 3 * (x + 0.3 * y))[..., None]
    return np.clip(0.15 + 0.6 * out + 0.15 * stripes * rng.uniform(0.3, 1.0, 3), 0, 1)


def _material(name: str) -> tuple[Any, Any, Any]:
    """A new node material: (material, its node tree, its Principled BSDF)."""
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    tree = mat.node_tree
    return mat, tree, tree.nodes["Principled BSDF"]


def _image_node(tree: Any, image: Any, into: Any) -> Any:
    node = tree.nodes.new("ShaderNodeTexImage")
    node.image = image
    tree.links.new(node.outputs["Color"], into)
    return node


def _uvs(layer: Any) -> np.ndarray:
    """A UV layer's per-corner coordinates, (corners, 2) float32."""
    co = np.empty(len(layer.data) * 2, np.float32)
    layer.data.foreach_get("uv", co)
    return co.reshape(-1, 2)


def _smooth(obj: Any) -> Any:
    for p in obj.data.polygons:
        p.use_smooth = True
    return obj


def _sphere(segments: int = 48, rings: int = 24) -> Any:
    bpy.ops.mesh.primitive_uv_sphere_add(segments=segments, ring_count=rings, radius=1.0)
    return _smooth(bpy.context.object)


def _tube(rings: int, segments: int, radius: float, height: float) -> Any:
    """An open tube along +Z from 0 to ``height``, ``rings`` + 1 rings of ``segments`` vertices, UVs unrolled."""
    verts = [(radius * math.cos(2 * math.pi * j / segments), radius * math.sin(2 * math.pi * j / segments),
              height * i / rings) for i in range(rings + 1) for j in range(segments)]
    faces = [(i * segments + j, i * segments + (j + 1) % segments, (i + 1) * segments + (j + 1) % segments,
              (i + 1) * segments + j) for i in range(rings) for j in range(segments)]
    mesh = bpy.data.meshes.new("Tube")
    mesh.from_pydata(verts, [], faces)
    uv = mesh.uv_layers.new(name="UVMap")
    co = []
    for i in range(rings):
        for j in range(segments):
            for di, dj in ((0, 0), (0, 1), (1, 1), (1, 0)):
                co.append(((j + dj) / segments, (i + di) / rings))
    uv.data.foreach_set("uv", np.asarray(co, np.float32).ravel())
    obj = bpy.data.objects.new("Tube", mesh)
    bpy.context.scene.collection.objects.link(obj)
    return _smooth(obj)


def _rounded_box() -> Any:
    bpy.ops.mesh.primitive_cube_add(size=1.6)
    obj = bpy.context.object
    bevel = obj.modifiers.new("Bevel", "BEVEL")
    bevel.width, bevel.segments = 0.12, 3
    return obj


def _textured(obj: Any, name: str, size: int, seed: int) -> tuple[Any, Any, Any]:
    mat, tree, bsdf = _material(name)
    _image_node(tree, _image(f"{name} colour", _pattern(size, seed)), bsdf.inputs["Base Color"])
    obj.data.materials.append(mat)
    return mat, tree, bsdf


# ----------------------------------------------------------------------------------------- the assets
def vertex_colours(detail: int = 1) -> Any:
    """A sphere whose base colour is a colour attribute (no image at all)."""
    obj = _sphere()
    attr = obj.data.color_attributes.new("Col", "FLOAT_COLOR", "POINT")
    pos = np.array([v.co for v in obj.data.vertices])
    colours = np.ones((len(pos), 4), np.float32)
    colours[:, :3] = 0.5 + 0.4 * np.stack([np.sin(2.0 * pos[:, 0]), np.cos(1.7 * pos[:, 1]), np.sin(2.3 * pos[:, 2])], 1)
    attr.data.foreach_set("color", colours.ravel())
    mat, tree, bsdf = _material("vertex colours")
    node = tree.nodes.new("ShaderNodeVertexColor")
    node.layer_name = "Col"
    tree.links.new(node.outputs["Color"], bsdf.inputs["Base Color"])
    obj.data.materials.append(mat)
    return obj


def texture_transform(detail: int = 1) -> Any:
    """A box whose image is read through a Mapping node (scaled 2x, offset, rotated): the glTF texture transform,
    and a texture that repeats across the surface."""
    obj = _rounded_box()
    mat, tree, bsdf = _textured(obj, "mapped", 128 * detail, 1)
    image = next(n for n in tree.nodes if n.bl_idname == "ShaderNodeTexImage")
    coords = tree.nodes.new("ShaderNodeTexCoord")
    mapping = tree.nodes.new("ShaderNodeMapping")
    mapping.inputs["Scale"].default_value = (2.0, 2.0, 1.0)
    mapping.inputs["Location"].default_value = (0.1, 0.3, 0.0)
    mapping.inputs["Rotation"].default_value = (0.0, 0.0, 0.3)
    tree.links.new(coords.outputs["UV"], mapping.inputs["Vector"])
    tree.links.new(mapping.outputs["Vector"], image.inputs["Vector"])
    return obj


def tiled_uvs(detail: int = 1) -> Any:
    """A box whose own UV map goes outside 0-1 (every island scaled 3x): the texture repeats."""
    obj = _rounded_box()
    _textured(obj, "tiled", 64 * detail, 2)
    layer = obj.data.uv_layers.active
    layer.data.foreach_set("uv", (_uvs(layer) * 3.0 - 0.5).ravel())
    return obj


def second_uv_map(detail: int = 1) -> Any:
    """A sphere with two UV maps: the image reads the second (through a UV Map node), the first is different."""
    obj = _sphere()
    second = obj.data.uv_layers.new(name="Painted")
    co = _uvs(obj.data.uv_layers[0])
    second.data.foreach_set("uv", np.stack([co[:, 1] * 0.9 + 0.05, co[:, 0] * 0.9 + 0.05], 1).ravel())
    mat, tree, bsdf = _textured(obj, "second map", 128 * detail, 3)
    image = next(n for n in tree.nodes if n.bl_idname == "ShaderNodeTexImage")
    uvnode = tree.nodes.new("ShaderNodeUVMap")
    uvnode.uv_map = "Painted"
    tree.links.new(uvnode.outputs["UV"], image.inputs["Vector"])
    return obj


def mirrored_islands(detail: int = 1) -> Any:
    """A sphere whose left half reuses the right half's UVs mirrored (overlapping, mirrored islands)."""
    obj = _sphere()
    _textured(obj, "mirrored", 128 * detail, 4)
    layer = obj.data.uv_layers.active
    co = _uvs(layer)
    co[:, 0] = np.where(co[:, 0] > 0.5, 1.0 - co[:, 0], co[:, 0]) * 2.0  # u folded about 0.5
    layer.data.foreach_set("uv", co.ravel())
    return obj


def shared_material(detail: int = 1) -> Any:
    """Three boxes in a parent hierarchy sharing one textured material; the middle one is restyled."""
    parent = _rounded_box()
    mat, _, _ = _textured(parent, "shared", 128 * detail, 5)
    children = []
    for dx in (-2.2, 2.2):
        bpy.ops.mesh.primitive_cube_add(size=1.2, location=(dx, 0.0, 0.0))
        child = bpy.context.object
        child.data.materials.append(mat)
        child.parent = parent
        children.append(child)
    bpy.context.view_layer.objects.active = parent
    return parent


def node_group_mix(detail: int = 1) -> Any:
    """A base colour computed by a node group: an image multiplied with a colour and mixed with noise."""
    obj = _sphere()
    mat, tree, bsdf = _material("node group")
    group = bpy.data.node_groups.new("Tint", "ShaderNodeTree")
    group.interface.new_socket("Colour", in_out="INPUT", socket_type="NodeSocketColor")
    group.interface.new_socket("Colour", in_out="OUTPUT", socket_type="NodeSocketColor")
    gin, gout = group.nodes.new("NodeGroupInput"), group.nodes.new("NodeGroupOutput")
    mix = group.nodes.new("ShaderNodeMix")
    mix.data_type, mix.blend_type = "RGBA", "MULTIPLY"
    mix.inputs["Factor"].default_value = 0.8
    mix.inputs["B"].default_value = (1.0, 0.8, 0.6, 1.0)
    group.links.new(gin.outputs[0], mix.inputs["A"])
    group.links.new(mix.outputs["Result"], gout.inputs[0])
    node = tree.nodes.new("ShaderNodeGroup")
    node.node_tree = group
    image = tree.nodes.new("ShaderNodeTexImage")
    image.image = _image("group colour", _pattern(128 * detail, 6))
    noise = tree.nodes.new("ShaderNodeTexNoise")
    noise.inputs["Scale"].default_value = 3.0
    outer = tree.nodes.new("ShaderNodeMix")
    outer.data_type = "RGBA"
    outer.inputs["Factor"].default_value = 0.25
    tree.links.new(image.outputs["Color"], node.inputs[0])
    tree.links.new(node.outputs[0], outer.inputs["A"])
    tree.links.new(noise.outputs["Color"], outer.inputs["B"])
    tree.links.new(outer.outputs["Result"], bsdf.inputs["Base Color"])
    obj.data.materials.append(mat)
    return obj


def metal_and_rough(detail: int = 1) -> Any:
    """Two material slots: a polished metal with a texture, a rough dielectric with another."""
    obj = _sphere()
    _, _, metal = _textured(obj, "metal", 128 * detail, 7)
    metal.inputs["Metallic"].default_value = 1.0
    metal.inputs["Roughness"].default_value = 0.35
    _, _, rough = _textured(obj, "rough", 128 * detail, 8)
    rough.inputs["Roughness"].default_value = 0.9
    for p in obj.data.polygons:
        p.material_index = int(p.center.z > 0.0)
    return obj


def emissive(detail: int = 1) -> Any:
    """A textured sphere that also emits (a constant warm glow on top of the lit base colour)."""
    obj = _sphere()
    _, _, bsdf = _textured(obj, "emissive", 128 * detail, 9)
    bsdf.inputs["Emission Color"].default_value = (1.0, 0.6, 0.2, 1.0)
    bsdf.inputs["Emission Strength"].default_value = 0.15
    return obj


def transparent(detail: int = 1) -> Any:
    """A textured sphere with alpha 0.7: the background shows through."""
    obj = _sphere()
    _, _, bsdf = _textured(obj, "alpha", 128 * detail, 10)
    bsdf.inputs["Alpha"].default_value = 0.7
    return obj


def normal_mapped(detail: int = 1) -> Any:
    """A textured sphere with a bumpy tangent-space normal map."""
    obj = _sphere()
    _, tree, bsdf = _textured(obj, "normal mapped", 128 * detail, 11)
    size = 128 * detail
    y, x = np.mgrid[0:size, 0:size] / size
    nx, ny = 0.35 * np.sin(2 * math.pi * 8 * x), 0.35 * np.cos(2 * math.pi * 6 * y)
    n = np.stack([nx, ny, np.ones_like(nx)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    node = tree.nodes.new("ShaderNodeTexImage")
    node.image = _image("normals", n * 0.5 + 0.5, "Non-Color")
    nmap = tree.nodes.new("ShaderNodeNormalMap")
    tree.links.new(node.outputs["Color"], nmap.inputs["Color"])
    tree.links.new(nmap.outputs["Normal"], bsdf.inputs["Normal"])
    return obj


def fine_detail(detail: int = 1) -> Any:
    """A sphere whose texture has one-texel noise, far finer than a view pixel."""
    obj = _sphere()
    size = 256 * detail
    rng = np.random.default_rng(12)
    colour = _pattern(size, 12) * 0.7 + 0.3 * rng.uniform(0, 1, (size, size, 1)) * np.array([0.9, 0.7, 0.5])
    mat, tree, bsdf = _material("fine detail")
    _image_node(tree, _image("fine", np.clip(colour, 0, 1)), bsdf.inputs["Base Color"])
    obj.data.materials.append(mat)
    return obj


def linked_duplicates(detail: int = 1) -> Any:
    """Two objects sharing one mesh (a linked duplicate): the restyle of one must not change the mesh data."""
    obj = _rounded_box()
    _textured(obj, "linked", 128 * detail, 13)
    twin = obj.copy()  # shares obj.data
    twin.location = (2.5, 0.0, 0.0)
    bpy.context.scene.collection.objects.link(twin)
    return obj


def armature_deformed(detail: int = 1) -> Any:
    """A cylinder bent by a two-bone armature (the capture sees the deformed shape)."""
    obj = _tube(rings=24, segments=32, radius=0.4, height=3.0)
    _textured(obj, "bent", 128 * detail, 14)
    arm_data = bpy.data.armatures.new("Rig")
    arm = bpy.data.objects.new("Rig", arm_data)
    bpy.context.scene.collection.objects.link(arm)
    bpy.context.view_layer.objects.active = arm
    bpy.ops.object.mode_set(mode="EDIT")
    lower, upper = arm_data.edit_bones.new("lower"), arm_data.edit_bones.new("upper")
    lower.head, lower.tail = (0, 0, 0), (0, 0, 1.5)
    upper.head, upper.tail = (0, 0, 1.5), (0, 0, 3.0)
    upper.parent = lower
    bpy.ops.object.mode_set(mode="OBJECT")
    obj.parent = arm
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = arm
    for name, (lo, hi) in (("lower", (-1, 1.6)), ("upper", (1.4, 4))):
        group = obj.vertex_groups.new(name=name)
        for v in obj.data.vertices:
            z = (obj.matrix_world @ v.co).z
            if lo <= z <= hi:
                group.add([v.index], 1.0, "REPLACE")
    arm.pose.bones["upper"].rotation_mode = "XYZ"
    arm.pose.bones["upper"].rotation_euler = (0.7, 0.0, 0.0)
    bpy.context.view_layer.update()
    return obj


def two_part_figure() -> Any:
    """A sphere named "Figure" whose upper half is the textured material "Jacket", its lower half "Trousers": an
    asset with parts to edit (regions, dataset groups); not in :data:`CORPUS`."""
    obj = _sphere()
    _textured(obj, "Jacket", 128, 1)
    _textured(obj, "Trousers", 128, 2)
    for poly in obj.data.polygons:
        poly.material_index = int(poly.center.z < 0)
    obj.name = "Figure"
    return obj


#: name -> builder, in the order the benchmark prints them.
CORPUS: dict[str, Callable[[int], Any]] = {
    "vertex colours": vertex_colours,
    "texture transform": texture_transform,
    "tiled UVs": tiled_uvs,
    "second UV map": second_uv_map,
    "mirrored islands": mirrored_islands,
    "shared material": shared_material,
    "node group and mix": node_group_mix,
    "metal and rough": metal_and_rough,
    "emission": emissive,
    "alpha": transparent,
    "normal map": normal_mapped,
    "fine detail": fine_detail,
    "linked duplicate": linked_duplicates,
    "armature": armature_deformed,
}


def build(name: str, detail: int = 1) -> Any:
    """An empty scene with the corpus asset ``name`` in it; returns the object to restyle."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return CORPUS[name](detail)
