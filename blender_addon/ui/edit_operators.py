"""Operators that talk to the edit server: Edit views (modal, never blocks the UI), Cancel, server control."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bpy

from .. import __package__ as ADDON_ID
from ..core.client import BackendClient, BackendError, JobPoller
from ..core.errors import GroupEditError
from ..core.server_process import LocalServer
from ..core.viewset import ViewSet
from .modal import redraw, start_modal, stop_modal

#: The server process this Blender session started (if any).
LOCAL_SERVER = LocalServer()


def _prefs(context: bpy.types.Context) -> Any:
    addon = context.preferences.addons.get(ADDON_ID)
    if addon is None:
        raise GroupEditError("the GroupEdit extension is not enabled")
    return addon.preferences


def make_client(context: bpy.types.Context) -> BackendClient:
    p = _prefs(context)
    return BackendClient(p.server_url, p.token(), p.request_timeout, p.upload_timeout,
                         online_access=bpy.app.online_access, start_hint=p.server_command)


def _poller(context: bpy.types.Context) -> JobPoller:
    s = context.scene.groupedit
    if not s.last_folder:
        raise GroupEditError("capture views first (or set the ViewSet folder)")
    return JobPoller(make_client(context), ViewSet.read(Path(bpy.path.abspath(s.last_folder))), s.instruction)


class GROUPEDIT_OT_edit_views(bpy.types.Operator):
    """Send the captured views with the instruction to the edit server; the edited views land in the ViewSet"""

    bl_idname = "groupedit.edit_views"
    bl_label = "Edit views"

    _poller: JobPoller | None = None
    _timer: Any = None

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        s = context.scene.groupedit
        return bool(s.last_folder) and bool(s.instruction.strip()) and not s.edit_running

    def execute(self, context: bpy.types.Context) -> set[str]:
        """Blocking run (scripts, headless)."""
        import time

        try:
            poller = _poller(context)
        except GroupEditError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        while not poller.step().finished:
            if poller.status.state in ("queued", "running"):
                time.sleep(0.2)
        return self._done(context, poller)

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        try:
            self._poller = _poller(context)
        except GroupEditError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        s = context.scene.groupedit
        s.edit_running, s.edit_progress, s.edit_status = True, 0.0, "Submitting…"
        self._timer = start_modal(self, context, 0.25)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: Any) -> set[str]:
        s = context.scene.groupedit
        if event.type == "ESC" or not s.edit_running:
            try:
                self._poller.cancel()
            except BackendError as exc:
                self.report({"WARNING"}, f"cancel: {exc}")
            return self._stop(context, {"CANCELLED"})
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        st = self._poller.step()
        s.edit_progress = st.fraction
        s.edit_status = f"{st.state} {st.stage} {st.step}/{st.total}" if st.total else st.message
        redraw(context)
        if st.finished:
            self._stop(context, set())
            return self._done(context, self._poller)
        return {"RUNNING_MODAL"}

    def _stop(self, context: bpy.types.Context, result: set[str]) -> set[str]:
        stop_modal(context, self._timer)
        context.scene.groupedit.edit_running = False
        return result

    def _done(self, context: bpy.types.Context, poller: JobPoller) -> set[str]:
        st = poller.status
        context.scene.groupedit.edit_status = st.message
        if st.state == "done":
            self.report({"INFO"}, st.message)
            return {"FINISHED"}
        self.report({"ERROR"} if st.state == "failed" else {"WARNING"}, st.message)
        return {"CANCELLED"}


class GROUPEDIT_OT_cancel_edit(bpy.types.Operator):
    """Cancel the running edit (the server stops at its next step)"""

    bl_idname = "groupedit.cancel_edit"
    bl_label = "Cancel"

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.groupedit.edit_running = False
        return {"FINISHED"}


class GROUPEDIT_OT_start_server(bpy.types.Operator):
    """Start the local edit server with the command from the preferences"""

    bl_idname = "groupedit.start_server"
    bl_label = "Start server"

    restart: bpy.props.BoolProperty(default=False, options={"SKIP_SAVE"})  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        p = _prefs(context)
        try:
            if self.restart:
                LOCAL_SERVER.restart(p.server_command, p.server_url)
            else:
                LOCAL_SERVER.start(p.server_command, p.server_url)
        except GroupEditError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"server {'restarted' if self.restart else 'running'} at {p.server_url}")
        return {"FINISHED"}


_register, _unregister = bpy.utils.register_classes_factory(
    (GROUPEDIT_OT_edit_views, GROUPEDIT_OT_cancel_edit, GROUPEDIT_OT_start_server)
)


def register() -> None:
    _register()


def unregister() -> None:
    LOCAL_SERVER.stop()
    _unregister()
