"""Temporary materials for the data render: unlit base colour out, UV out as a shader AOV.

Each material of the object is *copied*; the copy keeps the node graph that computes the base
colour (textures, mapping, mixes) but its surface becomes an Emission of that colour, and an AOV
Output named :data:`UV_AOV` writes the UV map's coordinates. The user's materials are never edited.
"""

from __future__ import annotations

from typing import Any

import bpy

from .scene_changes import SceneChanges

UV_AOV = "groupedit_uv"
DEFAULT_BASE_COLOUR = (0.8, 0.8, 0.8, 1.0)  # Blender's default material colour
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


def data_material(source: Any | None, uv_map: str, changes: SceneChanges) -> Any:
    """A temporary material emitting ``source``'s base colour and writing ``uv_map`` to the UV AOV."""
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
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.0
    colour_in = None
    if bsdf is not None:
        colour_in = next(bsdf.inputs[n] for n in _COLOUR_INPUTS if n in bsdf.inputs)
    rgb_nodes = [n for n in nodes if n.bl_idname == "ShaderNodeRGB"]
    if colour_in is not None and colour_in.is_linked:
        links.new(colour_in.links[0].from_socket, emission.inputs["Color"])
    elif colour_in is not None:
        emission.inputs["Color"].default_value = colour_in.default_value
    elif rgb_nodes:
        links.new(rgb_nodes[0].outputs[0], emission.inputs["Color"])
    for n in [n for n in nodes if n.bl_idname == "ShaderNodeOutputMaterial"]:
        nodes.remove(n)
    out = nodes.new("ShaderNodeOutputMaterial")
    out.target = "ALL"
    links.new(emission.outputs["Emission"], out.inputs["Surface"])
    uv = nodes.new("ShaderNodeUVMap")
    uv.uv_map = uv_map
    aov = nodes.new("ShaderNodeOutputAOV")
    aov.aov_name = UV_AOV
    links.new(uv.outputs["UV"], aov.inputs["Color"])
    return mat


def flat_base_material(source: Any | None, value: float, changes: SceneChanges) -> Any:
    """A temporary copy of ``source`` whose base colour is the grey ``value`` (0 black, 1 white).

    Rendered lit like the colour render, a black and a white copy show how each pixel's colour responds
    to the base colour (with the original colour in between: three points of that response).
    """
    mat = _temporary_copy(source, "GroupEdit flat", changes)
    if source is None or not source.use_nodes:
        bsdf = find_bsdf(mat.node_tree)
        if source is not None and bsdf is not None:
            for name in ("Metallic", "Roughness"):
                if name in bsdf.inputs:
                    bsdf.inputs[name].default_value = getattr(source, name.lower())
    bsdf = find_bsdf(mat.node_tree)
    if bsdf is not None:
        socket = next(bsdf.inputs[n] for n in _COLOUR_INPUTS if n in bsdf.inputs)
        for link in list(socket.links):
            mat.node_tree.links.remove(link)
        socket.default_value = (value, value, value, 1.0)
    return mat
