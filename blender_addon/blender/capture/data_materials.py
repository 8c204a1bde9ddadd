"""Temporary materials for the capture's two renders; the user's materials are never edited.

Each material of the object is *copied*. For the **colour render** (:func:`colour_material`) the copy
shades exactly as the original (a partly transparent surface over the background only) and also writes its
base colour, metallic and coverage to shader AOVs (:data:`BASE_AOV`, :data:`METAL_AOV`, :data:`COVER_AOV`),
so that the render's light passes can be split into what the base colour scales and what it does not. For
the **data render** (:func:`data_material`) the copy keeps the node graph that computes the base colour
(textures, mapping, mixes) and writes it to :data:`BASE_AOV`, the UV map's coordinates to :data:`UV_AOV`;
its surface is a faint constant emission (plus a metal's BSDF at a black base colour, for ``metal_edge``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import bpy

from ...core.capture.light_split import METAL_POINT
from .region import REGION_AOV, REGION_ATTRIBUTE
from .scene_changes import SceneChanges

UV_AOV = "groupedit_uv"
BASE_AOV = "groupedit_base"
METAL_AOV = "groupedit_metallic"
#: 1 wherever the colour render's first surface is the object: the coverage the other AOVs are premultiplied by
#: (the render's alpha is less where a surface is partly transparent).
COVER_AOV = "groupedit_cover"
#: The colour render's base colour is at least this (linear, per channel): a black base colour would hide the
#: diffuse light from Cycles' light passes (they are divided by the colour). 1e-4 is a third of an 8-bit level.
BASE_FLOOR = 1e-4
DEFAULT_BASE_COLOUR = (0.8, 0.8, 0.8, 1.0)  # Blender's default material colour
#: The data render's surface emission: enough for Cycles to see an opaque surface, too faint to count as a light.
FAINT = 1e-6
_COLOUR_INPUTS = ("Base Color", "Color")


def _surface_shader(tree: Any) -> Any | None:
    outputs = [n for n in tree.nodes if n.bl_idname == "ShaderNodeOutputMaterial"]
    active = [n for n in outputs if n.is_active_output] or outputs
    for out in active:
        if out.inputs["Surface"].is_linked:
            return out.inputs["Surface"].links[0].from_node
    return None


def find_bsdf(tree: Any) -> Any | None:
    """The Principled (or other colour-taking) BSDF behind the active output; falls back to any Principled."""
    node = _surface_shader(tree)
    seen = set()
    while node is not None and node.name not in seen:  # walk through Mix/Add shader nodes
        seen.add(node.name)
        if any(name in node.inputs for name in _COLOUR_INPUTS) and node.bl_idname != "ShaderNodeMixShader":
            return node
        linked = [i for i in node.inputs if i.is_linked and i.type == "SHADER"]
        node = linked[0].links[0].from_node if linked else None
    principled = [n for n in tree.nodes if n.bl_idname == "ShaderNodeBsdfPrincipled"]
    return principled[0] if principled else None


def _temporary_copy(source: Any | None, name: str, changes: SceneChanges) -> Any:
    """A node-based copy of ``source`` (or a new node material where it has no nodes), named ``name``,
    removed again by ``changes``."""
    if source is not None and source.use_nodes:
        mat = source.copy()
        changes.adopt(bpy.data.materials, mat)
    else:
        mat = changes.new_id(bpy.data.materials, name)
        mat.use_nodes = True
    mat.name = name
    return mat


def _write_metallic(tree: Any, bsdf: Any | None) -> None:
    """An AOV Output writing ``bsdf``'s metallic (0 without one) to :data:`METAL_AOV`."""
    metal = tree.nodes.new("ShaderNodeOutputAOV")
    metal.aov_name = METAL_AOV
    metallic = bsdf.inputs.get("Metallic") if bsdf is not None else None
    if metallic is not None and metallic.is_linked:
        tree.links.new(metallic.links[0].from_socket, metal.inputs["Value"])
    else:
        metal.inputs["Value"].default_value = float(metallic.default_value) if metallic is not None else 0.0


def _can_be_metal(bsdf: Any) -> bool:
    """Whether some of ``bsdf``'s surface may be metal enough for a ``metal_edge`` (a Principled BSDF whose metallic
    comes from a texture or is at least :data:`METAL_POINT`); the data render shades only those (light costs)."""
    metallic = bsdf.inputs.get("Metallic") if bsdf.bl_idname == "ShaderNodeBsdfPrincipled" else None
    return metallic is not None and (metallic.is_linked or metallic.default_value >= METAL_POINT)


def _black_metal(tree: Any, bsdf: Any) -> Any:
    """``bsdf`` (a Principled BSDF) with a black base colour, opaque and without its own emission: its glossy
    colour is then what its metal part reflects at base colour 0."""
    links = tree.links
    for name, value in (("Base Color", (0.0, 0.0, 0.0, 1.0)), ("Alpha", 1.0), ("Emission Strength", 0.0)):
        socket = bsdf.inputs.get(name)
        if socket is None:
            continue
        for link in list(socket.links):
            links.remove(link)
        socket.default_value = value
    return bsdf.outputs["BSDF"]


def data_material(source: Any | None, uv_map: str, changes: SceneChanges) -> Any:
    """A temporary opaque material writing ``source``'s base colour to :data:`BASE_AOV`, its metallic to
    :data:`METAL_AOV`, ``uv_map`` to :data:`UV_AOV` and the edit region's face attribute to ``REGION_AOV``; its
    surface is a faint constant emission, plus for a metal its BSDF at a black base colour (``metal_edge``)."""
    mat = _temporary_copy(source, "GroupEdit data", changes)
    if source is None or not source.use_nodes:
        colour = tuple(source.diffuse_color) if source is not None else DEFAULT_BASE_COLOUR
        for n in list(mat.node_tree.nodes):
            mat.node_tree.nodes.remove(n)
        rgb = mat.node_tree.nodes.new("ShaderNodeRGB")
        rgb.outputs[0].default_value = colour
    tree = mat.node_tree
    nodes, links = tree.nodes, tree.links
    bsdf = find_bsdf(tree)
    colour_in = None
    if bsdf is not None:
        colour_in = next(bsdf.inputs[n] for n in _COLOUR_INPUTS if n in bsdf.inputs)
    rgb_nodes = [n for n in nodes if n.bl_idname == "ShaderNodeRGB"]
    base = nodes.new("ShaderNodeOutputAOV")
    base.aov_name = BASE_AOV
    if colour_in is not None and colour_in.is_linked:
        links.new(colour_in.links[0].from_socket, base.inputs["Color"])
    elif colour_in is not None:
        base.inputs["Color"].default_value = colour_in.default_value
    elif rgb_nodes:
        links.new(rgb_nodes[0].outputs[0], base.inputs["Color"])
    _write_metallic(tree, bsdf)
    # the surface only has to be opaque (the mask is the render's alpha; its colour is not read): a faint constant
    # emission. Black would be no closure at all (transparent); a bright or textured one makes the mesh a light
    # that Cycles samples and estimates again at every camera change (3x the data render of a metal)
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Color"].default_value = (FAINT, FAINT, FAINT, 1.0)
    for n in [n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial"]:
        nodes.remove(n)
    out = nodes.new("ShaderNodeOutputMaterial")
    out.target = "ALL"
    surface = emission.outputs["Emission"]
    if bsdf is not None and _can_be_metal(bsdf):
        add = nodes.new("ShaderNodeAddShader")
        links.new(surface, add.inputs[0])
        links.new(_black_metal(tree, bsdf), add.inputs[1])
        surface = add.outputs["Shader"]
    links.new(surface, out.inputs["Surface"])
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = uv_map
    aov = nodes.new("ShaderNodeOutputAOV")
    aov.aov_name = UV_AOV
    links.new(uv.outputs["UV"], aov.inputs["Color"])
    region = nodes.new("ShaderNodeAttribute")
    region.attribute_type, region.attribute_name = "GEOMETRY", REGION_ATTRIBUTE
    region_aov = nodes.new("ShaderNodeOutputAOV")
    region_aov.aov_name = REGION_AOV
    links.new(region.outputs["Fac"], region_aov.inputs["Value"])
    return mat


def _one_surface_per_pixel(tree: Any) -> None:
    """Make camera rays that reach this surface through a transparent surface pass on to what lies beyond: a
    partly transparent object then shows its front surface over the background, not its own back or inside (which
    change with the edit too, and which no pixel of the texture's front holds). Shadows, reflections and opaque
    surfaces are as before: only camera rays past a transparent bounce are affected."""
    nodes, links = tree.nodes, tree.links
    for out in [n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial" and n.inputs["Surface"].is_linked]:
        surface = out.inputs["Surface"].links[0].from_socket
        path = nodes.new("ShaderNodeLightPath")
        behind = nodes.new("ShaderNodeMath")
        behind.operation, behind.use_clamp = "MULTIPLY", True
        links.new(path.outputs["Is Camera Ray"], behind.inputs[0])
        links.new(path.outputs["Transparent Depth"], behind.inputs[1])
        mix = nodes.new("ShaderNodeMixShader")
        links.new(behind.outputs["Value"], mix.inputs["Fac"])
        links.new(surface, mix.inputs[1])
        links.new(nodes.new("ShaderNodeBsdfTransparent").outputs["BSDF"], mix.inputs[2])
        links.new(mix.outputs["Shader"], out.inputs["Surface"])


def _copy_node(tree: Any, node: Any) -> Any:
    """A new node of ``node``'s type with its settings, input values and input links."""
    copy = tree.nodes.new(node.bl_idname)
    for attr in ("distribution", "subsurface_method"):
        if hasattr(node, attr):
            setattr(copy, attr, getattr(node, attr))
    for source, target in zip(node.inputs, copy.inputs):
        if source.is_linked:
            tree.links.new(source.links[0].from_socket, target)
        elif hasattr(source, "default_value"):
            target.default_value = source.default_value
    return copy


def _alpha_over_background(tree: Any, bsdf: Any, background: tuple[float, float, float]) -> None:
    """Camera rays see a Principled BSDF's alpha ``a`` as ``a`` of the opaque surface plus ``1 - a`` of an emission of
    the flat ``background`` the render is composited over: what a transparent surface over that background shows, on
    average, but without the noise of a random share of the samples passing through (which does not cancel between
    the capture and an edit). Other rays (shadows) see the material as before. Only a BSDF that is the surface
    itself is changed; other graphs keep their transparency."""
    alpha = bsdf.inputs.get("Alpha")
    if bsdf.bl_idname != "ShaderNodeBsdfPrincipled" or alpha is None or (not alpha.is_linked
                                                                         and alpha.default_value >= 1.0):
        return
    nodes, links = tree.nodes, tree.links
    outputs = [n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial" and n.inputs["Surface"].is_linked
               and n.inputs["Surface"].links[0].from_node == bsdf]
    if not outputs:
        return
    opaque = _copy_node(tree, bsdf)
    for link in list(opaque.inputs["Alpha"].links):
        links.remove(link)
    opaque.inputs["Alpha"].default_value = 1.0
    glow = nodes.new("ShaderNodeEmission")
    glow.inputs["Color"].default_value = (*background, 1.0)
    glow.inputs["Strength"].default_value = 1.0
    seen = nodes.new("ShaderNodeMixShader")
    if alpha.is_linked:
        links.new(alpha.links[0].from_socket, seen.inputs["Fac"])
    else:
        seen.inputs["Fac"].default_value = alpha.default_value
    links.new(glow.outputs["Emission"], seen.inputs[1])
    links.new(opaque.outputs["BSDF"], seen.inputs[2])
    camera = nodes.new("ShaderNodeMixShader")
    links.new(nodes.new("ShaderNodeLightPath").outputs["Is Camera Ray"], camera.inputs["Fac"])
    links.new(bsdf.outputs["BSDF"], camera.inputs[1])
    links.new(seen.outputs["Shader"], camera.inputs[2])
    for out in outputs:
        links.new(camera.outputs["Shader"], out.inputs["Surface"])


def colour_material(source: Any | None, changes: SceneChanges,
                    background: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Any:
    """A temporary copy of ``source`` that renders as it does and writes its base colour (floored at
    :data:`BASE_FLOOR`) to :data:`BASE_AOV`, its metallic to :data:`METAL_AOV` and 1 to :data:`COVER_AOV`;
    where it is partly transparent, the camera sees the front surface over the linear ``background`` the render is
    composited over (:func:`_one_surface_per_pixel`, :func:`_alpha_over_background`).

    A ``source`` without nodes (or None: no material) becomes a Principled BSDF with its viewport colour,
    metallic and roughness (Blender's default grey without a material), as the restyled material will be.
    """
    mat = _temporary_copy(source, "GroupEdit colour", changes)
    tree = mat.node_tree
    nodes, links = tree.nodes, tree.links
    bsdf = find_bsdf(tree)
    if (source is None or not source.use_nodes) and bsdf is not None:
        bsdf.inputs["Base Color"].default_value = tuple(source.diffuse_color) if source else DEFAULT_BASE_COLOUR
        for name in ("Metallic", "Roughness"):
            if source is not None:
                bsdf.inputs[name].default_value = getattr(source, name.lower())
    if bsdf is None:
        _one_surface_per_pixel(tree)
        return mat
    socket = next(bsdf.inputs[n] for n in _COLOUR_INPUTS if n in bsdf.inputs)
    floor = nodes.new("ShaderNodeVectorMath")
    floor.operation = "MAXIMUM"
    floor.inputs[1].default_value = (BASE_FLOOR,) * 3
    if socket.is_linked:
        links.new(socket.links[0].from_socket, floor.inputs[0])
    else:
        floor.inputs[0].default_value = tuple(socket.default_value)[:3]
    links.new(floor.outputs["Vector"], socket)
    base = nodes.new("ShaderNodeOutputAOV")
    base.aov_name = BASE_AOV
    links.new(floor.outputs["Vector"], base.inputs["Color"])
    _write_metallic(tree, bsdf)
    cover = nodes.new("ShaderNodeOutputAOV")
    cover.aov_name = COVER_AOV
    cover.inputs["Value"].default_value = 1.0
    _alpha_over_background(tree, bsdf, background)
    _one_surface_per_pixel(tree)
    return mat


@contextmanager
def changed_copies(obj: Any, change: Callable[[Any, Any], None], slots: Iterable[int] | None = None
                   ) -> Iterator[None]:
    """Temporarily give ``obj``'s slots (all, or those in ``slots``) copies of their node materials with a BSDF,
    each changed by ``change(node_tree, bsdf)``; the originals come back after and the copies are removed."""
    originals = [s.material for s in obj.material_slots]
    wanted = set(range(len(originals)) if slots is None else slots)
    copies = []
    try:
        for i, (slot, mat) in enumerate(zip(obj.material_slots, originals)):
            if i not in wanted or mat is None or not mat.use_nodes or find_bsdf(mat.node_tree) is None:
                continue
            copy = mat.copy()
            copies.append(copy)
            change(copy.node_tree, find_bsdf(copy.node_tree))
            slot.material = copy
        yield
    finally:
        for slot, mat in zip(obj.material_slots, originals):
            slot.material = mat
        for copy in copies:
            bpy.data.materials.remove(copy)
