"""The edit region shown in the 3D viewport before a capture: a translucent overlay drawn over the region's faces.

Nothing in the scene changes: the overlay is a viewport draw handler (``SpaceView3D.draw_handler_add``) that draws
the region's triangles, in world space, from a cache refreshed when the region settings change or the operator
toggles it. Headless Blender never draws; :func:`region_triangles` is what it would draw.
"""

from __future__ import annotations

import logging
from typing import Any

import bpy
import numpy as np

from ..blender.capture.region import region_faces
from ..core.capture.region import RegionSpec
from ..core.errors import GroupEditError
from .modal import reports_errors

log = logging.getLogger(__name__)

#: RGBA of the overlay.
COLOUR = (1.0, 0.45, 0.05, 0.4)

_state: dict[str, Any] = {"handler": None, "triangles": None}


def region_triangles(obj: Any, spec: RegionSpec) -> np.ndarray:
    """float32 (3 K, 3): world positions of the corners of the K triangles of ``obj``'s region ``spec`` (its own mesh,
    before modifiers: the faces the region names)."""
    mesh = obj.data
    inside = region_faces(obj, spec)
    mesh.calc_loop_triangles()
    tris = np.empty(len(mesh.loop_triangles) * 3, np.int32)
    mesh.loop_triangles.foreach_get("vertices", tris)
    poly = np.empty(len(mesh.loop_triangles), np.int32)
    mesh.loop_triangles.foreach_get("polygon_index", poly)
    co = np.empty(len(mesh.vertices) * 3, np.float32)
    mesh.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world, np.float32)
    world = co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]
    return world[tris.reshape(-1, 3)[inside[poly]].ravel()]


def _draw() -> None:
    triangles = _state["triangles"]
    if triangles is None or not len(triangles):
        return
    import gpu
    from gpu_extras.batch import batch_for_shader

    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    batch = batch_for_shader(shader, "TRIS", {"pos": triangles})
    gpu.state.blend_set("ALPHA")
    gpu.state.depth_test_set("LESS_EQUAL")
    shader.uniform_float("color", COLOUR)
    batch.draw(shader)
    gpu.state.depth_test_set("NONE")
    gpu.state.blend_set("NONE")


def showing() -> bool:
    return _state["handler"] is not None


def refresh(context: bpy.types.Context) -> None:
    """Recompute what the overlay draws (the active object's region), when it is shown."""
    if not showing():
        return
    obj = context.active_object
    try:
        spec = context.scene.groupedit.region_spec()
        _state["triangles"] = None if obj is None or obj.type != "MESH" or spec.whole_object else \
            region_triangles(obj, spec)
    except GroupEditError as exc:  # a region being typed: show nothing until it names something
        log.info("region not shown: %s", exc)
        _state["triangles"] = None
    for area in context.screen.areas if context.screen else ():
        if area.type == "VIEW_3D":
            area.tag_redraw()


def hide() -> None:
    if _state["handler"] is not None:
        bpy.types.SpaceView3D.draw_handler_remove(_state["handler"], "WINDOW")
    _state["handler"], _state["triangles"] = None, None


class GROUPEDIT_OT_show_region(bpy.types.Operator):
    """Show or hide the edit region over the object in the viewport (the scene is not changed)"""

    bl_idname = "groupedit.show_region"
    bl_label = "Show region"

    @reports_errors
    def execute(self, context: bpy.types.Context) -> set[str]:
        if showing():
            hide()
        else:
            _state["handler"] = bpy.types.SpaceView3D.draw_handler_add(_draw, (), "WINDOW", "POST_VIEW")
            refresh(context)
        return {"FINISHED"}


def register() -> None:
    bpy.utils.register_class(GROUPEDIT_OT_show_region)


def unregister() -> None:
    hide()
    bpy.utils.unregister_class(GROUPEDIT_OT_show_region)
