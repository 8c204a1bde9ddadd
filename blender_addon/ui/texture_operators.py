"""Operators that put edited views back into the object: Apply to texture, and switching original/restyled."""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path

import bpy

from ..core.errors import GroupEditError
from ..core.format.viewset import VERIFY_DIR, ViewSet
from .modal import reports_errors

log = logging.getLogger(__name__)


def _object_of(context: bpy.types.Context, viewset: ViewSet) -> bpy.types.Object:
    obj = context.scene.objects.get(viewset.object_name)
    if obj is None:
        raise GroupEditError(f"the views were captured from {viewset.object_name!r}, which is not in this scene")
    return obj


class GROUPEDIT_OT_apply_texture(bpy.types.Operator):
    """Bake the edited views into a new texture on the object's UV map, used by copies of its materials
    (the original images and materials are kept; Switch brings them back), then re-render the restyled object from
    the capture's cameras and say how closely it shows the edited views"""

    bl_idname = "groupedit.apply_texture"
    bl_label = "Apply to texture"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        s = context.scene.groupedit
        return bool(s.last_folder) and not s.edit_running and not s.running

    @reports_errors
    def execute(self, context: bpy.types.Context) -> set[str]:
        from ..blender.bake.apply_texture import apply_textures
        from ..workflows import bake_edited_views, verify_restyle

        s = context.scene.groupedit
        vs = ViewSet.read(Path(bpy.path.abspath(s.last_folder)))
        obj = _object_of(context, vs)
        context.window_manager.progress_begin(0, 1)
        try:
            bakes = bake_edited_views(
                vs, obj, int(s.texture_size), delight=s.remove_lighting,
                progress=lambda done, total, _: context.window_manager.progress_update(done / max(total, 1)))
            files_here = s.texture_storage == "FILES" and bool(bpy.data.filepath)
            folder = (Path(bpy.path.abspath("//textures")) if files_here
                      else Path(tempfile.mkdtemp(prefix="groupedit-texture-")))
            applied = apply_textures(obj, bakes, folder, s.texture_format, pack=not files_here, uv_map=vs.uv_map)
        finally:
            context.window_manager.progress_end()
        report = verify_restyle(vs, obj, vs.root / VERIFY_DIR, say=log.info)
        dependent = "" if math.isnan(report.view_dependent_share) else \
            f", {report.view_dependent_share:.0%} view-dependent"
        s.loop_status = (f"Closed loop: {report.psnr_db:.1f} dB (worst {report.worst_view}{dependent}); error images "
                         f"in {VERIFY_DIR}/")
        warnings = [f"{tb.target.name}: {tb.layout.message()}" for tb in bakes if tb.layout.overlapping]
        s.uv_warning = "; ".join(warnings)
        for warning in warnings:
            self.report({"WARNING"}, warning)
        regions = [tb.region for tb in bakes if tb.region is not None]
        s.region_status = "" if not regions else (
            f"Region: {sum(r.changed_inside for r in regions)} texels changed inside, "
            f"{sum(r.changed_outside for r in regions)} outside"
            + (f", {sum(r.shared for r in regions)} shared kept" if any(r.shared for r in regions) else ""))
        for tb in bakes:
            if tb.region is not None:
                self.report({"INFO"}, f"{tb.target.name}: {tb.region.message()}")
        self.report({"INFO"}, f"applied {len(applied.images)} texture(s) to {obj.name}")
        return {"FINISHED"}


class GROUPEDIT_OT_switch_materials(bpy.types.Operator):
    """Switch the object between its original materials and the restyled copies"""

    bl_idname = "groupedit.switch_materials"
    bl_label = "Switch original / restyled"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        from ..blender.bake.apply_texture import showing_restyled

        obj = context.active_object
        return obj is not None and showing_restyled(obj) is not None

    def execute(self, context: bpy.types.Context) -> set[str]:
        from ..blender.bake.apply_texture import showing_restyled, switch_materials

        obj = context.active_object
        switch_materials(obj, restyled=not showing_restyled(obj))
        return {"FINISHED"}


register, unregister = bpy.utils.register_classes_factory((GROUPEDIT_OT_apply_texture, GROUPEDIT_OT_switch_materials))
