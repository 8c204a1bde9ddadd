"""Read an object's evaluated mesh (modifiers applied) into world-space numpy arrays."""

from __future__ import annotations

from typing import Any

import bpy
import numpy as np

from ..core.errors import MissingUVError, NotAMeshError, ObjectNotFoundError
from ..core.viewset import MeshData

NEW_UV_NAME = "GroupEdit_UV"


def find_object(name: str | None, scene: Any | None = None) -> Any:
    """The named object, or the scene's only (or largest) mesh when ``name`` is None."""
    scene = scene or bpy.context.scene
    if name:
        obj = scene.objects.get(name)
        if obj is None:
            meshes = ", ".join(o.name for o in scene.objects if o.type == "MESH") or "none"
            raise ObjectNotFoundError(f"no object named {name!r} in the scene (meshes: {meshes})")
        return obj
    meshes = [o for o in scene.objects if o.type == "MESH"]
    if not meshes:
        raise ObjectNotFoundError("the scene has no mesh object: name one with --object")
    return max(meshes, key=lambda o: max(o.dimensions))


def check_mesh(obj: Any) -> None:
    """Raise :class:`NotAMeshError` unless ``obj`` is a mesh with at least one face."""
    if obj.type != "MESH":
        raise NotAMeshError(f"{obj.name!r} is a {obj.type.lower()}, not a mesh: choose a mesh object")
    if len(obj.data.polygons) == 0 and not obj.modifiers:
        raise NotAMeshError(f"{obj.name!r} has no faces to capture")


def base_colour_uv_map(obj: Any) -> str | None:
    """Name of the UV map the base colour reads: a UV Map node feeding an image, else the render one."""
    uv_layers = obj.data.uv_layers
    if not len(uv_layers):
        return None
    for slot in obj.material_slots:
        mat = slot.material
        if mat is None or not mat.use_nodes:
            continue
        for node in mat.node_tree.nodes:
            if node.bl_idname == "ShaderNodeTexImage" and node.inputs["Vector"].is_linked:
                src = node.inputs["Vector"].links[0].from_node
                if src.bl_idname == "ShaderNodeUVMap" and src.uv_map in uv_layers:
                    return src.uv_map
    for layer in uv_layers:
        if layer.active_render:
            return layer.name
    return uv_layers[0].name


def ensure_uv_map(obj: Any, add_if_missing: bool) -> str:
    """The UV map to capture; with ``add_if_missing``, a new Smart UV Project map on a mesh without one."""
    name = base_colour_uv_map(obj)
    if name is not None:
        return name
    if not add_if_missing:
        raise MissingUVError(
            f"{obj.name!r} has no UV map. Unwrap it first, or let GroupEdit add one "
            f"('Add UV map' in the panel, --add-uv on the command line) named {NEW_UV_NAME!r}"
        )
    layer = obj.data.uv_layers.new(name=NEW_UV_NAME)
    obj.data.uv_layers.active = layer
    view_layer = bpy.context.view_layer
    previous_active = view_layer.objects.active
    previous_mode = obj.mode
    view_layer.objects.active = obj
    try:
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.select_all(action="SELECT")
        bpy.ops.uv.smart_project(island_margin=0.01)
        bpy.ops.object.mode_set(mode="OBJECT")
    finally:
        if obj.mode != previous_mode:
            bpy.ops.object.mode_set(mode=previous_mode)
        view_layer.objects.active = previous_active
    return NEW_UV_NAME


def mesh_data(obj: Any, uv_map: str | None, depsgraph: Any | None = None) -> MeshData:
    """The evaluated mesh of ``obj`` (modifiers, shape keys applied) in world space."""
    depsgraph = depsgraph or bpy.context.evaluated_depsgraph_get()
    obj_eval = obj.evaluated_get(depsgraph)
    mesh = obj_eval.to_mesh()
    try:
        mesh.calc_loop_triangles()
        nv, nt = len(mesh.vertices), len(mesh.loop_triangles)
        if nt == 0:
            raise NotAMeshError(f"{obj.name!r} has no faces after its modifiers: nothing to capture")
        co = np.empty(nv * 3, np.float32)
        mesh.vertices.foreach_get("co", co)
        tri = np.empty(nt * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", tri)
        loops = np.empty(nt * 3, np.int32)
        mesh.loop_triangles.foreach_get("loops", loops)
        mat_index = np.empty(nt, np.int32)
        mesh.loop_triangles.foreach_get("material_index", mat_index)
        normals = np.empty(len(mesh.loops) * 3, np.float32)
        mesh.corner_normals.foreach_get("vector", normals)
        normals = normals.reshape(-1, 3)[loops].reshape(nt, 3, 3)
        if uv_map and uv_map in mesh.uv_layers:
            uv = np.empty(len(mesh.loops) * 2, np.float32)
            mesh.uv_layers[uv_map].data.foreach_get("uv", uv)
            uvs = uv.reshape(-1, 2)[loops].reshape(nt, 3, 2)
        else:
            uvs = np.zeros((nt, 0, 2), np.float32)
    finally:
        obj_eval.to_mesh_clear()
    m = np.array(obj.matrix_world, dtype=np.float64)
    positions = co.reshape(-1, 3).astype(np.float64) @ m[:3, :3].T + m[:3, 3]
    normal_matrix = np.linalg.inv(m[:3, :3]).T
    n = normals.reshape(-1, 3) @ normal_matrix.T
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    if np.linalg.det(m[:3, :3]) < 0:  # a mirroring transform flips the winding
        tri = tri.reshape(-1, 3)[:, ::-1].reshape(-1)
        uvs = uvs[:, ::-1]
        n = n.reshape(nt, 3, 3)[:, ::-1].reshape(-1, 3)
    return MeshData(
        positions=positions,
        triangles=tri.reshape(nt, 3),
        uvs=uvs,
        corner_normals=n.reshape(nt, 3, 3).astype(np.float32),
        material_index=mat_index,
    )
