"""Operators: thin wrappers over :mod:`..blender.capture.render`, which also runs headless."""

from __future__ import annotations

import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import bpy

from .. import __package__ as ADDON_ID
from ..blender.capture.render import CaptureProgress, capture, capture_steps
from ..core.capture.settings import CaptureSettings
from ..core.errors import GroupEditError
from ..core.format.viewset import ViewSet
from .modal import redraw, reports_errors, start_modal, stop_modal


def capture_folder(context: bpy.types.Context, obj: Any) -> Path:
    """A new folder for one capture: ``<output>/<object>_<date-time>`` (``-2``, ``-3``... within one second).

    ``<output>`` is the panel's folder, else the preferences' folder, else ``groupedit`` next to the
    saved .blend, else the extension's user folder.
    """
    settings = context.scene.groupedit
    prefs = context.preferences.addons.get(ADDON_ID)
    base = settings.output_dir or (prefs.preferences.capture_root if prefs else "")
    if base:
        root = Path(bpy.path.abspath(base))
    elif bpy.data.filepath:
        root = Path(bpy.path.abspath("//groupedit"))
    else:
        try:
            root = Path(bpy.utils.extension_path_user(ADDON_ID, path="captures", create=True))
        except ValueError:  # loaded as a legacy add-on, not as an extension
            root = Path(bpy.utils.user_resource("DATAFILES", path="groupedit/captures", create=True))
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", obj.name).strip("._") or "object"
    folder = root / f"{safe}_{time.strftime('%Y%m%d-%H%M%S')}"
    n = 2
    while folder.exists():  # two captures within one second
        folder = folder.with_name(f"{safe}_{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    return folder


def _settings(context: bpy.types.Context) -> CaptureSettings:
    s = context.scene.groupedit
    region = s.region_spec()
    return CaptureSettings(view_size=s.view_size, samples=s.samples, lighting=s.lighting, add_uv=s.add_uv,
                           uv_map=s.uv_map or None, region=None if region.whole_object else str(region))


def _show_result(context: bpy.types.Context, vs: ViewSet) -> None:
    s = context.scene.groupedit
    s.last_views, s.last_coverage, s.last_folder = len(vs.views), vs.coverage or 0.0, str(vs.root)
    s.status = f"{len(vs.views)} views, coverage {100 * (vs.coverage or 0):.0f} %"


class GROUPEDIT_OT_capture_views(bpy.types.Operator):
    """Render the active object from the rig into a new ViewSet folder (Esc cancels)"""

    bl_idname = "groupedit.capture_views"
    bl_label = "Capture views"
    bl_options = {"REGISTER"}

    _steps: Generator[CaptureProgress, None, ViewSet] | None = None
    _timer: Any = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        return obj is not None and obj.type == "MESH" and not context.scene.groupedit.running

    @reports_errors
    def execute(self, context: bpy.types.Context) -> set[str]:
        """Blocking capture (scripts, headless runs)."""
        obj = context.active_object
        vs = capture(obj, context.scene.groupedit.rig_spec(), _settings(context), capture_folder(context, obj))
        _show_result(context, vs)
        self.report({"INFO"}, f"Captured {len(vs.views)} views into {vs.root}")
        return {"FINISHED"}

    @reports_errors
    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        """Interactive capture: one view per timer tick so the UI stays responsive."""
        obj = context.active_object
        s = context.scene.groupedit
        self._steps = capture_steps(obj, s.rig_spec(), _settings(context), capture_folder(context, obj))
        s.running, s.progress, s.status = True, 0.0, "Starting…"
        self._timer = start_modal(self, context, 0.05)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: Any) -> set[str]:
        s = context.scene.groupedit
        if event.type == "ESC" or not s.running:
            self._steps.close()
            self._finish(context)
            s.status = "Cancelled: nothing was kept"
            self.report({"WARNING"}, s.status)
            return {"CANCELLED"}
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        try:
            step = next(self._steps)
        except StopIteration as stop:
            self._finish(context)
            _show_result(context, stop.value)
            self.report({"INFO"}, f"Captured {len(stop.value.views)} views into {stop.value.root}")
            return {"FINISHED"}
        except GroupEditError as exc:
            self._finish(context)
            s.status = str(exc)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        s.progress = step.index / step.total
        s.status = f"Render {step.index}/{step.total}: {step.stage} of {step.view} ({step.seconds:.1f} s)"
        redraw(context)
        return {"RUNNING_MODAL"}

    def _finish(self, context: bpy.types.Context) -> None:
        stop_modal(context, self._timer)
        context.scene.groupedit.running = False


class GROUPEDIT_OT_cancel(bpy.types.Operator):
    """Stop the running capture; nothing of it is kept"""

    bl_idname = "groupedit.cancel"
    bl_label = "Cancel"

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.groupedit.running = False
        return {"FINISHED"}


class GROUPEDIT_OT_add_uv_map(bpy.types.Operator):
    """Add a new UV map unwrapped by Smart UV Project (no overlapping or mirrored islands) and capture and
    bake into it; the original texture is redrawn on it, the original maps and materials are kept"""

    bl_idname = "groupedit.add_uv_map"
    bl_label = "Add unwrapped UV map"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        obj = context.active_object
        return obj is not None and obj.type == "MESH" and obj.mode == "OBJECT" and not context.scene.groupedit.running

    @reports_errors
    def execute(self, context: bpy.types.Context) -> set[str]:
        from ..blender.mesh import add_unwrapped_uv_map

        obj = context.active_object
        name = add_unwrapped_uv_map(obj)
        context.scene.groupedit.uv_map = name
        context.scene.groupedit.uv_warning = ""
        self.report({"INFO"}, f"added UV map {name!r} to {obj.name}: capture again to bake into it")
        return {"FINISHED"}


register, unregister = bpy.utils.register_classes_factory(
    (GROUPEDIT_OT_capture_views, GROUPEDIT_OT_cancel, GROUPEDIT_OT_add_uv_map))
