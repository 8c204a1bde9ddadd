"""Operators that talk to the edit server: Edit views (modal, never blocks the UI), Cancel, server control."""

from __future__ import annotations

import concurrent.futures

import logging
from pathlib import Path
from typing import Any

import bpy

from .. import __package__ as ADDON_ID
from ..core.client.api import BackendClient, JobPoller
from ..core.errors import GroupEditError, ServerRequestError
from ..core.client.server_process import LocalServer
from ..core.format.viewset import EDITED_DIR, ViewSet
from .modal import redraw, reports_errors, start_modal, stop_modal

log = logging.getLogger(__name__)

#: The server process this Blender session started (if any).
LOCAL_SERVER = LocalServer()

#: The image datablock that shows the running edit's live preview (a contact sheet of all views).
PREVIEW_IMAGE = "GroupEdit preview"
#: Whether :data:`PREVIEW_IMAGE` holds the preview of the edit running now (the panel shows it only then).
_live_preview = {"shown": False}


def show_preview(path: Path) -> bpy.types.Image:
    """Load or reload ``path`` (a PNG) into the :data:`PREVIEW_IMAGE` datablock and its icon; returns the image.

    Raises RuntimeError when Blender cannot read the file."""
    img = bpy.data.images.get(PREVIEW_IMAGE)
    if img is None:
        img = bpy.data.images.load(str(path), check_existing=False)
        img.name = PREVIEW_IMAGE
    else:
        if img.filepath != str(path):
            img.filepath = str(path)
        img.reload()
    img.preview_ensure().reload()  # the icon the panel draws is cached separately from the pixels
    _live_preview["shown"] = True
    return img


def hide_preview() -> None:
    """The running edit has ended: the panel stops showing the preview (the datablock stays, unused)."""
    _live_preview["shown"] = False


def live_preview_image() -> bpy.types.Image | None:
    """The running edit's live preview image, or None when it has none (yet)."""
    return bpy.data.images.get(PREVIEW_IMAGE) if _live_preview["shown"] else None


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
    return JobPoller(make_client(context), ViewSet.read(Path(bpy.path.abspath(s.last_folder))), s.instruction,
                     description=s.description or None)


class GROUPEDIT_OT_edit_views(bpy.types.Operator):
    """Send the captured views with the instruction to the edit server; the edited views land in the ViewSet"""

    bl_idname = "groupedit.edit_views"
    bl_label = "Edit views"

    _poller: JobPoller | None = None
    _timer: Any = None
    _preview_count = 0

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        s = context.scene.groupedit
        return bool(s.last_folder) and bool(s.instruction.strip()) and not s.edit_running

    @reports_errors
    def execute(self, context: bpy.types.Context) -> set[str]:
        """Blocking run (scripts, headless)."""
        import time

        poller = _poller(context)
        while not poller.step().finished:
            if poller.status.state in ("queued", "running"):
                time.sleep(0.2)
        return self._done(context, poller)

    @reports_errors
    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        self._poller = _poller(context)
        s = context.scene.groupedit
        s.edit_running, s.edit_progress, s.edit_status, s.edit_prompt = True, 0.0, "Submitting…", ""
        self._preview_count = 0
        # the poller's requests (submit, polls, downloads) run on a thread of their own, one at a time: a timer tick
        # only looks whether the last one has finished, so a slow server never freezes Blender's UI
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="groupedit-edit")
        self._step: concurrent.futures.Future | None = None
        self._cancelling: concurrent.futures.Future | None = None
        hide_preview()
        self._timer = start_modal(self, context, 0.25)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: Any) -> set[str]:
        s = context.scene.groupedit
        if (event.type == "ESC" or not s.edit_running) and self._cancelling is None:
            self._cancelling = self._pool.submit(self._poller.cancel)  # after the step in flight, if any
        if self._cancelling is not None:
            if not self._cancelling.done():
                return {"RUNNING_MODAL"}
            try:
                self._cancelling.result()
            except ServerRequestError as exc:
                self.report({"WARNING"}, f"cancel: {exc}")
            return self._stop(context, {"CANCELLED"})
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        if self._step is None:
            self._step = self._pool.submit(self._poller.step)
        if not self._step.done():
            return {"RUNNING_MODAL"}
        st, self._step = self._step.result(), None  # step() turns request errors into a failed status
        s.edit_progress = st.fraction
        s.edit_status = f"{st.state} {st.stage} {st.step}/{st.total}" if st.total else st.message
        if st.preview_path is not None and st.preview_count != self._preview_count:
            self._preview_count = st.preview_count
            try:
                show_preview(st.preview_path)
            except RuntimeError as exc:  # an unreadable preview is skipped; the edit goes on
                log.warning("the live preview %s could not be loaded: %s", st.preview_path, exc)
        redraw(context)
        if st.finished:
            self._stop(context, set())
            return self._done(context, self._poller)
        return {"RUNNING_MODAL"}

    def _stop(self, context: bpy.types.Context, result: set[str]) -> set[str]:
        stop_modal(context, self._timer)
        self._pool.shutdown(wait=False)
        hide_preview()
        context.scene.groupedit.edit_running = False
        return result

    def _done(self, context: bpy.types.Context, poller: JobPoller) -> set[str]:
        st = poller.status
        context.scene.groupedit.edit_status = st.message
        context.scene.groupedit.edit_prompt = st.prompt
        if st.state == "done":
            from ..workflows import score_viewset

            scored = score_viewset(poller.viewset.root, EDITED_DIR, spread=False)
            context.scene.groupedit.edit_status = (
                f"{st.message}; consistency {scored['consistency_db']:.1f} dB (capture's own "
                f"{scored['capture_consistency_db']:.1f} dB)")
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

    @reports_errors
    def execute(self, context: bpy.types.Context) -> set[str]:
        p = _prefs(context)
        if self.restart:
            LOCAL_SERVER.restart(p.server_command, p.server_url)
        else:
            LOCAL_SERVER.start(p.server_command, p.server_url)
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
