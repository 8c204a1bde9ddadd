"""Read an object's evaluated mesh (modifiers applied) into world-space numpy arrays."""

from __future__ import annotations

from typing import Any

import logging

import bpy
import numpy as np

from ..core.errors import MissingUVError, NotAMeshError, ObjectNotFoundError
from ..core.format.viewset import MeshData
from .names import REGION_ATTRIBUTE

log = logging.getLogger(__name__)

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


def render_uv_map(obj: Any) -> str | None:
    """Name of the UV map Blender renders with (what image textures without a UV Map node read)."""
    uv_layers = obj.data.uv_layers
    if not len(uv_layers):
        return None
    return next((layer.name for layer in uv_layers if layer.active_render), uv_layers[0].name)


def _uv_map_node_map(obj: Any, node: Any) -> str | None:
    """The UV map an Image Texture node reads through a UV Map node linked to its vector, if any."""
    if node.inputs["Vector"].is_linked:
        src = node.inputs["Vector"].links[0].from_node
        if src.bl_idname == "ShaderNodeUVMap" and src.uv_map in obj.data.uv_layers:
            return src.uv_map
    return None


def reads_uv_as_is(node: Any) -> bool:
    """Whether an Image Texture node reads UV coordinates unchanged: nothing linked to its vector (the render UV
    map), a UV Map node, or a Texture Coordinate node's UV. A Mapping node (a glTF texture transform), generated
    or object coordinates and the like make the image's texels lie elsewhere than the UV map says."""
    vector = node.inputs["Vector"]
    if not vector.is_linked:
        return True
    link = vector.links[0]
    return link.from_node.bl_idname == "ShaderNodeUVMap" or (
        link.from_node.bl_idname == "ShaderNodeTexCoord" and link.from_socket.name == "UV")


def base_colour_images(mat: Any) -> list[Any]:
    """The Image Texture nodes anywhere upstream of ``mat``'s base colour (through any node, not into groups)."""
    from .capture.data_materials import find_bsdf

    bsdf = find_bsdf(mat.node_tree) if mat is not None and mat.use_nodes else None
    socket = None if bsdf is None else (bsdf.inputs.get("Base Color") or bsdf.inputs.get("Color"))
    if socket is None or not socket.is_linked:
        return []
    found, todo, seen = [], [socket.links[0].from_node], set()
    while todo:
        node = todo.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.bl_idname == "ShaderNodeTexImage" and node.image is not None:
            found.append(node)
        todo.extend(i.links[0].from_node for i in node.inputs if i.is_linked and i.name != "Vector")
    return found


def uv_map_problem(obj: Any, uv_map: str) -> str | None:
    """Why a bake into ``uv_map`` could not give every surface place its own texel as the material draws it
    (None when it can): its UVs leave 0-1 (the texture repeats), or the base colour reads its image through a
    coordinate transform (a Mapping node) rather than the map itself."""
    layer = obj.data.uv_layers.get(uv_map)
    if layer is not None and len(layer.data):
        uv = np.empty(len(layer.data) * 2, np.float32)
        layer.data.foreach_get("uv", uv)
        if uv.min() < -1e-3 or uv.max() > 1.0 + 1e-3:
            return f"UV map {uv_map!r} reaches outside 0-1 (the texture repeats across the surface)"
    for slot in obj.material_slots:
        for node in base_colour_images(slot.material):
            if not reads_uv_as_is(node):
                via = node.inputs["Vector"].links[0].from_node
                return (f"material {slot.material.name!r} reads image {node.image.name!r} through "
                        f"{via.bl_label or via.bl_idname} (a texture transform)")
    return None


def image_uv_map(obj: Any, node: Any) -> str | None:
    """Name of the UV map an Image Texture node reads: its UV Map node's, else the render one."""
    return _uv_map_node_map(obj, node) or render_uv_map(obj)


def base_colour_uv_map(obj: Any) -> str | None:
    """Name of the UV map the base colour reads: a UV Map node feeding an image, else the render one."""
    for slot in obj.material_slots:
        mat = slot.material
        if mat is None or not mat.use_nodes:
            continue
        for node in mat.node_tree.nodes:
            if node.bl_idname == "ShaderNodeTexImage" and (name := _uv_map_node_map(obj, node)) is not None:
                return name
    return render_uv_map(obj)


def add_unwrapped_uv_map(obj: Any) -> str:
    """Add a new UV map to ``obj``'s mesh, unwrapped by Smart UV Project (islands never overlap), and
    return its name (``GroupEdit_UV``, numbered when taken). The render UV map, the other maps, the
    geometry and the materials are not changed: a bake into the new map hooks it up on the restyled
    material copies.

    The unwrap runs on a copy of the mesh whose coincident vertices are merged (imported meshes are often
    split at every UV seam or sharp edge, which would make every face an island of its own); the UVs are
    copied back corner by corner.
    """
    if obj.type != "MESH":
        raise NotAMeshError(f"{obj.name!r} is not a mesh: nothing to unwrap")
    uv_layers = obj.data.uv_layers
    name, n = NEW_UV_NAME, 1
    while name in uv_layers:
        name, n = f"{NEW_UV_NAME}.{n:03d}", n + 1
    if len(uv_layers) >= 8:
        raise MissingUVError(f"{obj.name!r} already has the most UV maps a mesh can have (8): remove one first")
    corners = _smart_project_welded(obj.data)
    previous, render = uv_layers.active, render_uv_map(obj)
    layer = uv_layers.new(name=name)
    layer.data.foreach_set("uv", corners.ravel())
    if previous is not None:
        uv_layers.active = uv_layers[previous.name]
    if render is not None:
        uv_layers[render].active_render = True
    obj.data.update()
    return name


def _smart_project_welded(mesh: Any) -> np.ndarray:
    """(loops, 2) Smart UV Project coordinates for ``mesh``'s face corners, unwrapped on a copy with
    coincident vertices merged (faces and their corner order are kept, so corners map one to one)."""
    import bmesh

    work = mesh.copy()
    holder = bpy.data.objects.new("GroupEdit unwrap", work)
    bpy.context.scene.collection.objects.link(holder)
    view_layer = bpy.context.view_layer
    previous_active, previous_selected = view_layer.objects.active, list(bpy.context.selected_objects)
    try:
        bm = bmesh.new()
        bm.from_mesh(work)
        size = max(max(holder.dimensions), 1e-6) if len(bm.verts) else 1.0
        bmesh.ops.remove_doubles(bm, verts=list(bm.verts), dist=size * 1e-6)
        welded = len(bm.faces) == len(mesh.polygons)
        if welded:
            bm.to_mesh(work)
        bm.free()
        if not welded:  # merging would lose faces: unwrap as it is
            merged, work = work, mesh.copy()
            holder.data = work
            bpy.data.meshes.remove(merged)
        while len(work.uv_layers):
            work.uv_layers.remove(work.uv_layers[0])
        work.uv_layers.new(name="unwrap")
        for o in previous_selected:
            o.select_set(False)
        holder.select_set(True)
        view_layer.objects.active = holder
        bpy.ops.object.mode_set(mode="EDIT")
        bpy.ops.mesh.select_all(action="SELECT")
        bpy.ops.uv.smart_project(island_margin=0.01)
        bpy.ops.object.mode_set(mode="OBJECT")
        uv = np.empty(len(work.loops) * 2, np.float32)
        work.uv_layers[0].data.foreach_get("uv", uv)
        uv = uv.reshape(-1, 2)
        # corner k of face f: loop_start[f] + k in both meshes
        starts_src = np.empty(len(mesh.polygons), np.int64)
        starts_dst = np.empty(len(work.polygons), np.int64)
        totals = np.empty(len(mesh.polygons), np.int64)
        mesh.polygons.foreach_get("loop_start", starts_src)
        work.polygons.foreach_get("loop_start", starts_dst)
        mesh.polygons.foreach_get("loop_total", totals)
        offset = np.arange(int(totals.sum())) - np.repeat(np.cumsum(totals) - totals, totals)
        out = np.zeros((len(mesh.loops), 2), np.float32)
        out[np.repeat(starts_src, totals) + offset] = uv[np.repeat(starts_dst, totals) + offset]
        return out
    finally:
        if bpy.context.object is holder and holder.mode != "OBJECT":
            bpy.ops.object.mode_set(mode="OBJECT")
        bpy.data.objects.remove(holder)
        bpy.data.meshes.remove(work)
        view_layer.objects.active = previous_active
        for o in previous_selected:
            o.select_set(True)


def ensure_uv_map(obj: Any, add_if_missing: bool, uv_map: str | None = None) -> str:
    """The UV map to capture: ``uv_map`` when given (it must exist), else the one the base colour reads, or a new
    Smart UV Project map (:func:`add_unwrapped_uv_map`, logged) where that one cannot hold the restyle
    (:func:`uv_map_problem`); with ``add_if_missing``, a new map on a mesh without any."""
    if uv_map:
        if uv_map not in obj.data.uv_layers:
            have = ", ".join(layer.name for layer in obj.data.uv_layers) or "none"
            raise MissingUVError(f"{obj.name!r} has no UV map {uv_map!r} (it has: {have})")
        return uv_map
    name = base_colour_uv_map(obj)
    if name is not None:
        problem = uv_map_problem(obj, name)
        if problem is None:
            return name
        if NEW_UV_NAME in obj.data.uv_layers and uv_map_problem(obj, NEW_UV_NAME) is None:
            log.warning("%s: capturing into the unwrapped UV map %r added before", problem, NEW_UV_NAME)
            return NEW_UV_NAME
        new = add_unwrapped_uv_map(obj)
        log.warning("%s: capturing into a new unwrapped UV map %r; the restyled material reads it", problem, new)
        return new
    if not add_if_missing:
        raise MissingUVError(
            f"{obj.name!r} has no UV map. Unwrap it first, or let GroupEdit add one "
            f"('Add UV map' in the panel, --add-uv on the command line) named {NEW_UV_NAME!r}"
        )
    return add_unwrapped_uv_map(obj)


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
        region = _triangle_region(mesh)
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
        region=region,
    )



def _triangle_region(mesh: Any) -> np.ndarray | None:
    """bool (T,): the loop triangles whose face carries :data:`REGION_ATTRIBUTE` (None: the mesh has none)."""
    attr = mesh.attributes.get(REGION_ATTRIBUTE)
    if attr is None or attr.domain != "FACE":
        return None
    faces = np.empty(len(mesh.polygons), np.float32)
    attr.data.foreach_get("value", faces)
    polygon = np.empty(len(mesh.loop_triangles), np.int32)
    mesh.loop_triangles.foreach_get("polygon_index", polygon)
    return faces[polygon] > 0.5
