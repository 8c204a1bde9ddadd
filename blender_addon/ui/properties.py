"""Per-scene settings of the GroupEdit panel (``scene.groupedit``) and how they become a RigSpec."""

from __future__ import annotations

import bpy

from ..core.capture.settings import CaptureSettings
from ..core.errors import InvalidInputError
from ..core.options import property_kwargs
from ..core.bake.restyle import TEXTURE_SIZES
from ..core.capture.region import DEFAULT_THRESHOLD, RegionSpec
from ..core.capture.rigs import PRESETS, RigSpec


def _parse_numbers(text: str, kind: type, what: str) -> list:
    try:
        return [kind(x) for x in text.replace(";", ",").split(",") if x.strip()]
    except ValueError as exc:
        raise InvalidInputError(f"{what}: expected comma-separated numbers, got {text!r}") from exc


def _region_changed(context: bpy.types.Context) -> None:
    from .region_overlay import refresh

    refresh(context)


class GroupEditSettings(bpy.types.PropertyGroup):
    # rig: defaults, ranges and help from RigSpec (core/capture/rigs.py)
    rig: bpy.props.EnumProperty(  # type: ignore[valid-type]
        items=[(k, k.replace("-", " ").title(), v) for k, v in PRESETS.items()], **property_kwargs(RigSpec, "kind", "Rig"))
    views: bpy.props.IntProperty(**property_kwargs(RigSpec, "count", "Views"))  # type: ignore[valid-type]
    elevations: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Elevations", description="Ring elevations in degrees, comma-separated (e.g. 30, -15)",
        default=", ".join(f"{e:g}" for e in RigSpec().elevations))
    start_azimuth: bpy.props.FloatProperty(**property_kwargs(RigSpec, "start_azimuth", "Start azimuth"))  # type: ignore[valid-type]
    top: bpy.props.BoolProperty(**property_kwargs(RigSpec, "top", "Top view"))  # type: ignore[valid-type]
    bottom: bpy.props.BoolProperty(**property_kwargs(RigSpec, "bottom", "Bottom view"))  # type: ignore[valid-type]
    skip: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Skip views", description="Indices of views to leave out, comma-separated (e.g. 3, 7)", default=""
    )
    fov: bpy.props.FloatProperty(**property_kwargs(RigSpec, "fov_deg", "Field of view"))  # type: ignore[valid-type]
    margin: bpy.props.FloatProperty(**property_kwargs(RigSpec, "margin", "Margin"))  # type: ignore[valid-type]
    # capture settings: defaults, ranges and help from CaptureSettings (core/capture/settings.py)
    view_size: bpy.props.IntProperty(**property_kwargs(CaptureSettings, "view_size", "View size"))  # type: ignore[valid-type]
    samples: bpy.props.IntProperty(**property_kwargs(CaptureSettings, "samples", "Samples"))  # type: ignore[valid-type]
    lighting: bpy.props.EnumProperty(  # type: ignore[valid-type]
        items=[("AUTO", "Auto", "Studio light when the scene has no lights and no world"),
               ("SCENE", "Scene", "The scene's own lights and world"),
               ("STUDIO", "Studio", "A neutral light rig added for the capture only")],
        **property_kwargs(CaptureSettings, "lighting", "Lighting"),
    )
    add_uv: bpy.props.BoolProperty(  # type: ignore[valid-type]
        **property_kwargs(CaptureSettings, "add_uv", "Add UV map if missing"))
    uv_map: bpy.props.StringProperty(  # type: ignore[valid-type]
        default="", **{k: v for k, v in property_kwargs(CaptureSettings, "uv_map", "UV map").items() if k != "default"})
    output_dir: bpy.props.StringProperty(name="Output", subtype="DIR_PATH", default="")  # type: ignore[valid-type]
    # the edit region (core/capture/region.py): which part of the object the edit may change
    region_kind: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Edit region", default="OBJECT", update=lambda self, context: _region_changed(context),
        items=[("OBJECT", "Whole object", "The edit may change the whole object"),
               ("FACES", "Selected faces", "The faces selected in Edit Mode"),
               ("MATERIAL", "Materials", "The faces of one or more material slots"),
               ("VGROUP", "Vertex group", "The faces whose vertices all have at least the threshold's weight")])
    region_materials: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Materials", default="", update=lambda self, context: _region_changed(context),
        description="Names of the materials whose faces make the region, comma-separated")
    region_vgroup: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Vertex group", default="", update=lambda self, context: _region_changed(context))
    region_threshold: bpy.props.FloatProperty(  # type: ignore[valid-type]
        name="Weight threshold", default=DEFAULT_THRESHOLD, min=0.0, max=1.0,
        update=lambda self, context: _region_changed(context),
        description="Least weight every vertex of a face needs for the face to be in the region")

    instruction: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Instruction", default="make it dark green", description="What to change, in words"
    )
    description: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Result", default="",
        description="Optional: what the result shows, e.g. \"red leather jacket\". The GroupEditing model is "
                    "prompted with it; empty: derived from the instruction and the object's name")
    #: the text the last edit's model was given (reported by the server), shown under the Edit button
    edit_prompt: bpy.props.StringProperty(default="")  # type: ignore[valid-type]
    edit_running: bpy.props.BoolProperty(default=False)  # type: ignore[valid-type]
    edit_progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")  # type: ignore[valid-type]
    edit_status: bpy.props.StringProperty(default="")  # type: ignore[valid-type]
    #: the last Apply to texture's closed loop (restyled object re-rendered vs the edited views)
    loop_status: bpy.props.StringProperty(default="")  # type: ignore[valid-type]
    #: the last Apply to texture's edit-region report (texels changed inside and outside the region)
    region_status: bpy.props.StringProperty(default="")  # type: ignore[valid-type]
    #: the last Apply to texture's UV layout warning (overlapping or mirrored islands), shown with the unwrap button
    uv_warning: bpy.props.StringProperty(default="")  # type: ignore[valid-type]

    # status shown by the panel
    running: bpy.props.BoolProperty(default=False)  # type: ignore[valid-type]
    progress: bpy.props.FloatProperty(default=0.0, min=0.0, max=1.0, subtype="FACTOR")  # type: ignore[valid-type]
    status: bpy.props.StringProperty(default="")  # type: ignore[valid-type]
    last_views: bpy.props.IntProperty(default=0)  # type: ignore[valid-type]
    last_coverage: bpy.props.FloatProperty(default=0.0, subtype="FACTOR")  # type: ignore[valid-type]
    last_folder: bpy.props.StringProperty(default="", subtype="DIR_PATH")  # type: ignore[valid-type]
    # applying the edited views to the object's texture
    texture_size: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Texture size", items=[(str(n), str(n), f"{n} x {n} texels") for n in TEXTURE_SIZES],
        default="1024")
    texture_format: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Format", default="png8", items=[("png8", "PNG 8-bit", ""), ("png16", "PNG 16-bit", ""),
                                              ("exr", "OpenEXR (linear)", "")])
    texture_storage: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Store", default="PACK", items=[
            ("PACK", "Pack into .blend", "the new image travels inside the .blend"),
            ("FILES", "Save next to .blend", "write textures/ beside the saved .blend (packed while unsaved)")])
    remove_lighting: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Remove lighting", default=True,
        description="The edited views are lit renders: bake albedo by removing the capture's lighting")

    def rig_spec(self) -> RigSpec:
        spec = RigSpec(
            kind=self.rig, count=self.views, elevations=_parse_numbers(self.elevations, float, "Elevations") or RigSpec().elevations,
            start_azimuth=self.start_azimuth, top=self.top, bottom=self.bottom, fov_deg=self.fov, margin=self.margin,
            disabled=_parse_numbers(self.skip, int, "Skip views"),
        )
        spec.validate()
        return spec

    def region_spec(self) -> RegionSpec:
        """The edit region the panel describes (checked: names what to fix)."""
        spec = {"OBJECT": RegionSpec(), "FACES": RegionSpec("faces"),
                "MATERIAL": RegionSpec("material", tuple(n.strip() for n in self.region_materials.split(",")
                                                         if n.strip())),
                "VGROUP": RegionSpec("vgroup", (self.region_vgroup,), self.region_threshold)}[self.region_kind]
        spec.validate()
        return spec


def register() -> None:
    bpy.utils.register_class(GroupEditSettings)
    bpy.types.Scene.groupedit = bpy.props.PointerProperty(type=GroupEditSettings)


def unregister() -> None:
    del bpy.types.Scene.groupedit
    bpy.utils.unregister_class(GroupEditSettings)
