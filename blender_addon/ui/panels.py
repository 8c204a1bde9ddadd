"""The GroupEdit tab of the 3D viewport's sidebar (N-panel)."""

from __future__ import annotations

import bpy

from .edit_operators import live_preview_image


class _GroupEditTab:
    """Where every GroupEdit panel lives: the GroupEdit tab of the 3D viewport's sidebar."""

    bl_space_type = "VIEW_3D"
    bl_region_type = "UI"
    bl_category = "GroupEdit"


def _draw_region(layout: bpy.types.UILayout, s: bpy.types.PropertyGroup, obj: bpy.types.Object | None) -> None:
    """The edit region: what kind, what it names (materials of the object's slots, one of its vertex groups), and
    the viewport overlay that shows it."""
    from .region_overlay import showing

    col = layout.column(align=True)
    row = col.row(align=True)
    row.prop(s, "region_kind")
    row.operator("groupedit.show_region", text="", icon="HIDE_OFF" if showing() else "HIDE_ON", depress=showing())
    if s.region_kind == "MATERIAL":
        col.prop(s, "region_materials")
        if obj is not None:
            names = [m.name for m in getattr(obj.data, "materials", ()) if m is not None]
            col.label(text="Slots: " + (", ".join(names) or "none"))
    elif s.region_kind == "VGROUP" and obj is not None:
        col.prop_search(s, "region_vgroup", obj, "vertex_groups", text="Vertex group")
        col.prop(s, "region_threshold")
    elif s.region_kind == "FACES":
        col.label(text="The faces selected in Edit Mode", icon="FACESEL")


class GROUPEDIT_PT_capture(_GroupEditTab, bpy.types.Panel):
    bl_label = "Capture"
    bl_idname = "GROUPEDIT_PT_capture"

    def draw(self, context: bpy.types.Context) -> None:
        s = context.scene.groupedit
        layout = self.layout
        obj = context.active_object
        layout.label(text=f"Object: {obj.name}" if obj else "Select a mesh object", icon="MESH_DATA")
        col = layout.column(align=True)
        col.prop(s, "rig")
        if s.rig != "scene":
            col.prop(s, "views")
            if s.rig in ("orbit", "orbit-poles"):
                col.prop(s, "elevations")
            col.prop(s, "start_azimuth")
            if s.rig != "orbit-poles":
                row = col.row(align=True)
                row.prop(s, "top", toggle=True)
                row.prop(s, "bottom", toggle=True)
            col.prop(s, "fov")
            col.prop(s, "margin")
        col.prop(s, "skip")
        col = layout.column(align=True)
        col.prop(s, "view_size")
        col.prop(s, "samples")
        col.prop(s, "lighting")
        col.prop(s, "add_uv")
        if obj is not None and obj.type == "MESH":
            row = layout.row(align=True)
            row.prop_search(s, "uv_map", obj.data, "uv_layers", text="UV map")
            row.operator("groupedit.add_uv_map", text="", icon="UV")
        _draw_region(layout, s, obj)
        layout.prop(s, "output_dir")
        if s.running:
            layout.progress(factor=s.progress, type="BAR", text=s.status)
            layout.operator("groupedit.cancel", icon="CANCEL")
        else:
            layout.operator("groupedit.capture_views", icon="RENDER_STILL")
            if s.status:
                layout.label(text=s.status)
            if s.last_folder:
                box = layout.box()
                box.label(text=f"Views: {s.last_views}   Coverage: {100 * s.last_coverage:.0f} %")
                if s.last_coverage < 0.9:
                    box.label(text="Add views to see more of the surface", icon="INFO")
                box.prop(s, "last_folder", text="")


class GROUPEDIT_PT_edit(_GroupEditTab, bpy.types.Panel):
    bl_label = "Edit"
    bl_idname = "GROUPEDIT_PT_edit"

    def draw(self, context: bpy.types.Context) -> None:
        s = context.scene.groupedit
        layout = self.layout
        layout.prop(s, "last_folder", text="Views")
        layout.prop(s, "instruction", text="")
        layout.prop(s, "description")
        if s.edit_running:
            layout.progress(factor=s.edit_progress, type="BAR", text=s.edit_status)
            preview = live_preview_image()
            if preview is not None:  # the running job's latest live preview, all views on one sheet
                layout.template_icon(icon_value=preview.preview_ensure().icon_id, scale=8.0)
            layout.operator("groupedit.cancel_edit", icon="CANCEL")
        else:
            layout.operator("groupedit.edit_views", icon="BRUSH_DATA")
            if s.edit_status:
                layout.label(text=s.edit_status)
            if s.edit_prompt:  # what the model was actually told (a derived description shows here)
                layout.label(text=f"Prompt: {s.edit_prompt}", icon="INFO")
        row = layout.row(align=True)
        row.operator("groupedit.start_server", icon="PLAY")
        op = row.operator("groupedit.start_server", text="Restart (free GPU memory)", icon="FILE_REFRESH")
        op.restart = True


class GROUPEDIT_PT_texture(_GroupEditTab, bpy.types.Panel):
    bl_label = "Texture"
    bl_idname = "GROUPEDIT_PT_texture"

    def draw(self, context: bpy.types.Context) -> None:
        s = context.scene.groupedit
        layout = self.layout
        col = layout.column(align=True)
        col.prop(s, "texture_size")
        col.prop(s, "texture_format")
        col.prop(s, "texture_storage", text="")
        col.prop(s, "remove_lighting")
        layout.operator("groupedit.apply_texture", icon="TEXTURE")
        layout.operator("groupedit.switch_materials", icon="MATERIAL")
        if s.loop_status:  # the restyled object re-rendered from the capture's cameras vs the edited views
            layout.label(text=s.loop_status, icon="CHECKMARK")
        if s.region_status:  # the last bake of an edit region: texels changed inside and outside it
            layout.label(text=s.region_status, icon="FACESEL")
        if s.uv_warning:  # the last bake found texels shared by two surface places
            box = layout.box()
            box.label(text="Overlapping or mirrored UV islands:", icon="ERROR")
            box.label(text="two places share texels and get one colour.")
            box.operator("groupedit.add_uv_map", icon="UV")
            box.label(text="then capture, edit and apply again.")


register, unregister = bpy.utils.register_classes_factory((GROUPEDIT_PT_capture, GROUPEDIT_PT_edit, GROUPEDIT_PT_texture))
