"""The edit region on the Blender side: its faces, marked on the mesh for the capture's data render.

The capture marks the region's faces with a temporary face attribute (:data:`REGION_ATTRIBUTE`, removed again with
the capture's other scene changes); the data materials write it to a shader AOV, so the data render's ``region``
pass holds, at each pixel centre, whether the visible surface there belongs to the region: exact, and occlusion by
the rest of the object respected.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core.capture.region import RegionSpec
from ...core.errors import InvalidInputError
from ..names import REGION_ATTRIBUTE, RESTYLED_SUFFIX
from .scene_changes import SceneChanges

REGION_AOV = "groupedit_region"


def region_faces(obj: Any, spec: RegionSpec) -> np.ndarray:
    """bool (P,): which of ``obj``'s polygons (of its own mesh, before modifiers) the region ``spec`` holds.

    Raises :class:`InvalidInputError` for a material or vertex group the object lacks and for an empty region."""
    mesh = obj.data
    if obj.mode == "EDIT":
        obj.update_from_editmode()  # Edit Mode's selection reaches the mesh only when asked
    n = len(mesh.polygons)
    if spec.kind == "faces":
        inside = np.zeros(n, bool)
        mesh.polygons.foreach_get("select", inside)
    elif spec.kind == "material":
        # a slot holding a restyled copy (an earlier edit's) counts as its original's
        slots = [s.material.name.removesuffix(RESTYLED_SUFFIX) if s.material else "" for s in obj.material_slots]
        missing = [name for name in spec.names if name not in slots]
        if missing:
            raise InvalidInputError(f"{obj.name!r} has no material slot with {', '.join(map(repr, missing))}; its "
                                    f"slots hold: {', '.join(repr(s) for s in slots if s) or 'nothing'}")
        index = np.zeros(n, np.int32)
        mesh.polygons.foreach_get("material_index", index)
        inside = np.isin(index, [i for i, name in enumerate(slots) if name in spec.names])
    elif spec.kind == "vgroup":
        group = obj.vertex_groups.get(spec.names[0])
        if group is None:
            raise InvalidInputError(f"{obj.name!r} has no vertex group {spec.names[0]!r}; it has: "
                                    f"{', '.join(repr(g.name) for g in obj.vertex_groups) or 'none'}")
        weight = np.zeros(len(mesh.vertices), np.float32)
        for v in mesh.vertices:
            for g in v.groups:
                if g.group == group.index:
                    weight[v.index] = g.weight
        corners = np.zeros(len(mesh.loops), np.int32)
        mesh.loops.foreach_get("vertex_index", corners)
        starts = np.zeros(n, np.int32)
        mesh.polygons.foreach_get("loop_start", starts)
        corner_in = (weight >= spec.threshold)[corners].astype(np.int32)
        inside = np.add.reduceat(corner_in, starts) == np.diff(np.append(starts, len(corners)))
    else:
        inside = np.ones(n, bool)
    if not inside.any():
        raise InvalidInputError(f"the region {spec} of {obj.name!r} holds no face: "
                                + ("select some faces in Edit Mode first" if spec.kind == "faces" else
                                   "choose another region"))
    return inside


def mark_region(obj: Any, spec: RegionSpec, changes: SceneChanges) -> None:
    """Give ``obj``'s mesh the face attribute :data:`REGION_ATTRIBUTE` (1 on the region's faces, 0 elsewhere) until
    ``changes`` are restored."""
    inside = region_faces(obj, spec).astype(np.float32)
    attributes = obj.data.attributes
    if REGION_ATTRIBUTE in attributes:
        attributes.remove(attributes[REGION_ATTRIBUTE])
    attr = attributes.new(REGION_ATTRIBUTE, "FLOAT", "FACE")
    attr.data.foreach_set("value", inside)
    obj.data.update()

    def remove(mesh: Any = obj.data) -> None:
        if REGION_ATTRIBUTE in mesh.attributes:
            mesh.attributes.remove(mesh.attributes[REGION_ATTRIBUTE])

    changes.on_restore(remove)
