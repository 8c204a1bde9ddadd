"""One GPU worker process, and the supervisor thread that feeds it jobs and restarts it when it dies.

The worker loads the editor once and runs one job at a time: it reads the job's inputs from the
job folder, edits, and writes ``results/<index>.png`` (and, while it runs, live previews as ``preview.png``). It talks to the supervisor through two
queues; cancel is a shared flag it checks at every step. An exception fails the job with a typed
error; a dead worker (killed, crashed) fails its job with ``worker_crashed`` and is restarted.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing as mp
import os
import queue
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from blender_addon.core.format.protocol import API

from .config import ServerConfig
from .editors.base import EditResult
from .errors import BackendError, Cancelled, ModelNotReady
from .store import JobStore

log = logging.getLogger(__name__)

_CTX = mp.get_context("spawn")


def load_editor(name: str, config: dict[str, Any]) -> Any:
    """An editor by registered name, or by ``package.module:Class`` for editors outside the package."""
    if ":" in name:
        module, cls = name.split(":", 1)
        return getattr(importlib.import_module(module), cls)(**config)
    from .editors import get_editor

    return get_editor(name, **config)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


#: Least seconds between two live previews of a job (editors may offer them more often; extra ones are dropped).
PREVIEW_MIN_INTERVAL_S = 0.25


def _preview_writer(job_id: str, folder: Path, events: Any) -> Any:
    """The ``preview(step, images)`` callback of one job: writes the contact sheet into the job folder
    atomically, then reports a ``preview`` event. At most one every :data:`PREVIEW_MIN_INTERVAL_S`; a preview
    that cannot be written is logged and dropped, never failing the job."""
    from .jobfiles import write_preview

    last = -float("inf")

    def preview(step: int, images: list[Any]) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last < PREVIEW_MIN_INTERVAL_S:
            return
        last = now
        try:
            width, height = write_preview(folder, images)
        except Exception:  # noqa: BLE001 - a preview is a courtesy: the edit goes on without it
            log.warning("job %s: the preview of step %s could not be written:\n%s", job_id, step,
                        traceback.format_exc())
            return
        events.put(("preview", job_id, {"step": int(step), "width": width, "height": height}))

    return preview


def device_memory() -> dict[str, Any]:
    """The worker's view of its GPU: device name, total/free bytes, peak bytes this process allocated
    (``None`` values on CPU or without torch)."""
    try:
        import torch

        if torch.cuda.is_available():
            free, total = torch.cuda.mem_get_info()
            return {"device": torch.cuda.get_device_name(0), "vram_total": total, "vram_free": free,
                    "vram_peak": torch.cuda.max_memory_allocated()}
    except Exception:  # noqa: BLE001 - memory figures must never fail a job
        pass
    return {"device": "cpu", "vram_total": None, "vram_free": None, "vram_peak": None}


def _exit_with_parent() -> None:
    """End this worker process as soon as the server process that started it is gone, even when that was
    killed outright (no clean shutdown): an orphaned worker would keep the model in GPU memory."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns when the parent's end of the sentinel pipe closes
        log.warning("the server process is gone: the worker exits")
        os._exit(0)

    threading.Thread(target=watch, name="groupedit-parent-watch", daemon=True).start()


def worker_main(editor_name: str, editor_config: dict[str, Any], jobs: Any, events: Any, cancel_flag: Any) -> None:
    """Entry point of the worker process."""
    from .jobfiles import read_inputs, write_results

    _exit_with_parent()

    try:
        editor = load_editor(editor_name, editor_config)
    except Exception as exc:  # noqa: BLE001 - reported to the server, which shows it in /v1/health
        if isinstance(exc, BackendError):
            message = exc.message
            log.error("the %s editor could not be loaded: %s", editor_name, message)
        else:
            message = str(exc)
            log.error("the %s editor could not be loaded:\n%s", editor_name, traceback.format_exc())
        events.put(("load_failed", None, {"message": f"{type(exc).__name__}: {message}"}))
        return
    events.put(("ready", None, {"editor": editor.info(), "pid": os.getpid(), "memory": device_memory()}))
    while True:
        item = jobs.get()
        if item is None:
            return
        job_id, folder, instruction, options = item
        folder = Path(folder)
        t0 = time.monotonic()

        def progress(stage: str, step: int, total: int) -> None:
            elapsed = time.monotonic() - t0
            eta = elapsed / step * (total - step) if step else None
            events.put(("progress", job_id, {"stage": stage, "step": step, "total": total, "eta": eta}))

        editor.preview = _preview_writer(job_id, folder, events)
        try:
            group = read_inputs(folder)
            result = EditResult.of(editor.edit(group, instruction, options, progress,
                                               lambda: bool(cancel_flag.value)))
            if cancel_flag.value:
                raise Cancelled("the job was cancelled")
            write_results(folder, result)
            events.put(("succeeded", job_id, {}))
        except BackendError as exc:
            state = "cancelled" if isinstance(exc, Cancelled) else "failed"
            events.put((state, job_id, {"code": exc.code, "message": exc.message}))
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed job error
            if _is_oom(exc):
                events.put(("failed", job_id, {"code": "oom", "message": "out of GPU memory: lower the view size "
                                                                       "or enable offload"}))
            else:
                log.error("job %s failed:\n%s", job_id, traceback.format_exc())
                events.put(("failed", job_id, {"code": "internal", "message": f"{type(exc).__name__}: {exc}"}))
        finally:
            editor.preview = None
            events.put(("memory", None, device_memory()))


#: Worker deaths in a row while loading the editor after which the server reports ``failed`` (and stops restarting).
MAX_FAILED_STARTS = 5
#: Seconds before the first restart after such a death; doubled each time (at most 30 s).
RESTART_BACKOFF_S = 0.5


class Supervisor:
    """Runs queued jobs in FIFO order on one worker process; restarts the worker when it dies."""

    def __init__(self, store: JobStore, config: ServerConfig) -> None:
        self.store = store
        self.config = config
        self.status = "starting"
        self.editor_info: dict[str, Any] = {}
        self.load_error: str | None = None
        self.current: str | None = None
        self.worker_pid: int | None = None
        #: the worker's last reported device memory (see :func:`device_memory`)
        self.memory: dict[str, Any] = {}
        #: why the server had to stop (the job store cannot be written), if it had to
        self.fatal: str | None = None
        #: called once ``fatal`` is set: the HTTP server's shutdown (by default this process ends at once)
        self.on_fatal: Any = lambda: os._exit(1)
        self._stop = threading.Event()
        self._failed_starts = 0  # worker deaths in a row before it reported ready
        self._thread = threading.Thread(target=self._run, name="groupedit-supervisor", daemon=True)
        self._proc: Any = None

    # ------------------------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self.store.recover()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._kill_worker()

    def _spawn(self) -> None:
        self._jobs, self._events = _CTX.Queue(), _CTX.Queue()
        self._cancel = _CTX.Value("b", 0)
        self._proc = _CTX.Process(
            target=worker_main, name="groupedit-worker", daemon=True,
            args=(self.config.editor, self.config.editor_config, self._jobs, self._events, self._cancel),
        )
        self._proc.start()
        self.worker_pid = self._proc.pid
        self.status = "starting"

    def _kill_worker(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)

    # ------------------------------------------------------------------------------- loop
    def _run(self) -> None:
        self._spawn()
        while not self._stop.is_set():
            try:
                self._tick()
            except Exception:  # noqa: BLE001 - the supervisor must outlive any one failure
                log.exception("supervisor error")
                time.sleep(0.5)

    def _tick(self) -> None:
        if not self._proc.is_alive() and self.status != "failed":
            self._drain()  # a worker that reported a load failure and exited must not be restarted
        if self.status == "failed":
            self._fail_queued()
        if not self._proc.is_alive() and self.status != "failed":
            if self.current:
                self._end_job(self.current, "failed", "worker_crashed",
                              "the worker process died during the job; it has been restarted")
            if self.status == "starting":  # it died while loading the editor
                self._failed_starts += 1
                if self._failed_starts >= MAX_FAILED_STARTS:
                    self.status = "failed"
                    self.load_error = (f"the {self.config.editor} editor's worker died while loading "
                                       f"{self._failed_starts} times in a row (last exit code {self._proc.exitcode}): "
                                       "see the server's log for the cause")
                    log.error(self.load_error)
                    return
                delay = min(RESTART_BACKOFF_S * 2 ** (self._failed_starts - 1), 30.0)
                log.warning("worker died while loading (exit code %s); restarting in %.1f s", self._proc.exitcode,
                            delay)
                if self._stop.wait(delay):
                    return
            else:
                log.warning("worker exited (code %s); restarting", self._proc.exitcode)
            self._spawn()
        if self.current is None and self.status == "ready":
            queued = self.store.queued()
            if queued:
                job = queued[0]
                self.current = job.id
                self._cancel.value = 0
                self.store.start(job.id)
                self.status = "busy"
                self._jobs.put((job.id, str(self.store.folder(job.id)), job.instruction, job.options))
        if self.current is not None and self.store.get(self.current).cancel_requested:
            self._cancel.value = 1
        try:
            kind, job_id, data = self._events.get(timeout=0.05)
        except queue.Empty:
            return
        self._handle(kind, job_id, data)

    def _drain(self) -> None:
        """Handle every event the worker has already sent."""
        while True:
            try:
                kind, job_id, data = self._events.get(timeout=0.2)
            except queue.Empty:
                return
            self._handle(kind, job_id, data)

    def _end_job(self, job_id: str, state: str, code: str | None, message: str | None) -> None:
        """Record the current job's end. When the store cannot write it (a full disk, a broken database), the job
        fails with a typed ``internal`` error and the queue goes on; when even that cannot be written, the server
        stops (loudly: logged, exit status 1) rather than run on with a job it cannot finish."""
        try:
            self.store.finish(job_id, state, code, message)
        except Exception as exc:  # noqa: BLE001 - any store failure
            log.error("could not record the end (%s) of job %s: %s", state, job_id, exc)
            try:
                self.store.finish(job_id, "failed", "internal", f"the server could not record the job's end "
                                  f"({exc}): check the disk of its data folder, then submit the job again")
            except Exception as again:  # noqa: BLE001
                self.status = "failed"
                self.fatal = f"the job store cannot be written ({again}): check the disk of {self.config.data_dir}"
                log.critical("the job store cannot be written (%s): stopping the server", again)
                self._stop.set()
                self._kill_worker()
                self.on_fatal()
                return
        self.current = None
        self.status = "ready"

    def _fail_queued(self) -> None:
        """With no editor loaded, queued jobs fail at once with ``model_not_ready`` and the load error."""
        for job in self.store.queued():
            self.store.finish(job.id, "failed", ModelNotReady.code,
                              f"the server's {self.config.editor} editor could not be loaded: {self.load_error}. "
                              "Fix that and restart the server")

    def _handle(self, kind: str, job_id: str | None, data: dict[str, Any]) -> None:
        if kind == "ready":
            self._failed_starts = 0
            self.editor_info, self.worker_pid = data["editor"], data["pid"]
            self.memory = data.get("memory", {})
            self.status = "busy" if self.current else "ready"
        elif kind == "memory":
            self.memory = data
        elif kind == "load_failed":
            self.status, self.load_error = "failed", data["message"]
            log.error("the editor could not be loaded: %s", data["message"])
        elif kind == "progress" and job_id == self.current:
            self.store.add_event(job_id, "progress", data)
        elif kind == "preview" and job_id == self.current:
            self.store.add_event(job_id, "preview", {**data, "url": f"{API}/jobs/{job_id}/preview"})
        elif kind in ("succeeded", "failed", "cancelled") and job_id == self.current:
            self._end_job(job_id, kind, data.get("code"), data.get("message"))
