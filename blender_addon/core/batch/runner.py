"""The batch scheduler: worker processes capture and bake while the edit server works through its queue.

Each asset goes capture -> edit -> bake (docs/batch.md). Captures and bakes run as ``groupedit capture`` /
``groupedit bake`` in separate Blender (bpy) processes (the capture saves the scene it captured, ``views/scene.blend``,
and the bake opens that: a UV map the capture added is there), at most ``workers`` at a time, bakes first (they finish
assets); every captured asset's edit is submitted to the server at once (up to :data:`MAX_EDITS_IN_FLIGHT`) and
polled one request at a time, so the server's queue stays full while the workers capture. A stage's outputs appear
under their final name only when complete (``views.part`` -> ``views``, ``result.part`` -> ``result``; the edit's
``edited.part`` -> ``edited``), and the asset's :class:`~.state.AssetState` is saved after every stage: a re-run
skips what is done and polls an edit job it had submitted instead of submitting again.

A failure is recorded with its stage, category (from the worker's exit code: ``input``, ``file``, ``server``,
``shortfall``, ``crash`` for a process killed by a signal, ``internal``) and reason (the worker's error line), and
never stops the other assets (unless ``fail_fast``). ``crash``, ``internal`` and ``server`` failures are tried again
up to ``retries`` times; bad input is not (it would fail the same way).
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..client.api import BackendClient, JobPoller, PollStatus
from ..consistency import viewset_consistency
from ..contact_sheet import contact_sheet
from ..processes import die_with_parent
from ..format.images import read_png, write_png
from ..format.viewset import EDIT_RECORD, EDITED_DIR, MANIFEST, ViewSet
from .manifest import BatchItem, option_flags
from .state import STAGES, AssetState

log = logging.getLogger(__name__)

#: Edit jobs submitted and not yet finished, at most (the server's queue has a limit too).
MAX_EDITS_IN_FLIGHT = 8
#: Settings that go to ``groupedit bake``; every other option goes to ``groupedit capture``.
BAKE_OPTIONS = frozenset({"texture_size", "format", "keep_lighting", "edited"})
#: Worker exit codes -> failure categories (the CLI's exit codes, :mod:`..errors`).
CATEGORIES = {2: "input", 3: "file", 4: "server", 5: "shortfall", 130: "cancelled"}
#: Categories worth another try.
RETRYABLE = frozenset({"crash", "internal", "server"})
SHEET_FILE = "before_after.png"
#: The scene as captured (the asset imported, a UV map the capture added): what the bake opens.
SCENE_FILE = "scene.blend"
BAKE_RECORD = "bake.json"


@dataclass
class BatchSettings:
    """``out``: the batch folder; ``workers``: Blender processes at once; ``retries``: further tries of a failed
    stage in this run; ``fail_fast``: stop at the first failure; ``servers``/``token``/``timeout``: the edit
    servers and how long one edit may take; ``verify``: the closed loop after each bake; ``command``: the argv that runs
    ``groupedit`` in a worker (e.g. ``[python, -m, blender_addon.cli]`` or ``[blender, -b, --command, groupedit]``);
    ``progress``: called with a one-line summary now and then."""

    out: Path
    servers: list[str]
    command: list[str]
    workers: int = 1
    retries: int = 2
    fail_fast: bool = False
    token: str = ""
    timeout: float = 3600.0
    verify: bool = True
    progress: Callable[[str], None] = print


class StageHandle(ABC):
    """A running capture or bake: :meth:`poll` gives None while it runs, then its exit code (negative: killed by
    that signal); :meth:`stop` ends it."""

    @abstractmethod
    def poll(self) -> int | None: ...

    @abstractmethod
    def stop(self) -> None: ...


class LocalStages:
    """Captures and bakes as child processes of this one (``command`` + the stage's arguments)."""

    def __init__(self, command: list[str]) -> None:
        self.command = command

    def start(self, args: list[str], log_path: Path) -> StageHandle:
        return _ProcessHandle([*self.command, *args], log_path)


class _ProcessHandle(StageHandle):
    def __init__(self, argv: list[str], log_path: Path) -> None:
        self.log_file = open(log_path, "w")  # noqa: SIM115 - closed when the process ends or is stopped
        self.process = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True, preexec_fn=die_with_parent)

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self.log_file.close()
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.process.kill()
        self.log_file.close()


class EditHandle(ABC):
    """An edit in flight: :meth:`step` advances it by at most one request and returns ``(finished, error)``:
    ``error`` None when it succeeded (the edited views are in ``<views>/edited``), else ``(category, reason)``;
    ``job_id`` and ``server``: the job to follow again after an interruption, and where (None where there is none)."""

    job_id: str | None = None
    server: str | None = None

    @abstractmethod
    def step(self) -> tuple[bool, tuple[str, str] | None]: ...

    def stop(self) -> None:
        """Leave the job: a re-run finds it again by :attr:`job_id` where the editor keeps jobs."""


class ServerEdits:
    """Edits on one or more edit servers (HTTP): each job goes to the server with the fewest of this batch's jobs,
    :data:`MAX_EDITS_IN_FLIGHT` per server at once; a job submitted by an earlier run is followed on its server."""

    def __init__(self, servers: list[str], token: str = "", timeout: float = 3600.0) -> None:
        self.clients = {url: BackendClient(url, token) for url in servers}
        self.load = dict.fromkeys(self.clients, 0)
        self.timeout = timeout
        self.capacity = MAX_EDITS_IN_FLIGHT * len(self.clients)

    def start(self, item: BatchItem, views: Path, job_key: str, job_id: str | None,
              job_server: str | None = None) -> EditHandle:
        resume = job_id is not None and job_server in self.clients
        url = job_server if resume else min(self.load, key=self.load.__getitem__)
        options: dict[str, Any] = {} if item.seed is None else {"seed": int(item.seed)}
        poller = JobPoller(self.clients[url], ViewSet.read(views), item.instruction, options=options,
                           description=item.description)
        poller.key = job_key
        if resume:  # submitted by an earlier run: follow that job
            poller.status = PollStatus("queued", job_id=job_id)
        self.load[url] += 1
        return _JobHandle(self, url, poller)


class _JobHandle(EditHandle):
    def __init__(self, edits: ServerEdits, server: str, poller: JobPoller) -> None:
        self.edits, self.server, self.poller = edits, server, poller
        self.timeout, self.started = edits.timeout, time.monotonic()
        self.job_id = poller.status.job_id
        self._counted = True

    def _release(self) -> None:
        if self._counted:
            self.edits.load[self.server] -= 1
            self._counted = False

    def stop(self) -> None:
        self._release()

    def step(self) -> tuple[bool, tuple[str, str] | None]:
        st = self.poller.step()
        self.job_id = st.job_id or self.job_id
        if time.monotonic() - self.started > self.timeout and not st.finished:
            self._release()
            self.poller.client.deadline = None
            try:
                self.poller.cancel()
            except Exception as exc:  # noqa: BLE001  (a server gone away: the timeout is what we report)
                log.info("could not cancel job %s: %s", self.job_id, exc)
            return True, ("server", f"the edit took longer than {self.timeout:.0f} s (--timeout)")
        if not st.finished:
            return False, None
        self._release()
        return True, None if st.state == "done" else ("server", f"{self.server}: {st.message or st.state}")


@dataclass
class _Work:
    item: BatchItem
    state: AssetState
    stage: str
    started: float
    process: StageHandle | None = None
    edit: EditHandle | None = None


@dataclass
class BatchResult:
    """The states of every asset at the end, the run's seconds and the share of it the edit server had no job of
    this batch (queued or running)."""

    states: list[AssetState]
    seconds: float
    edit_idle_share: float
    interrupted: bool = False
    stopped_early: bool = False
    skipped: list[str] = field(default_factory=list)


class BatchRunner:
    """Run a batch (see the module docstring); :meth:`run` returns a :class:`BatchResult`."""

    def __init__(self, items: list[BatchItem], settings: BatchSettings, stages: Any | None = None,
                 edits: Any | None = None) -> None:
        """``stages``: where captures and bakes run (default :class:`LocalStages` of ``settings.command``);
        ``edits``: where edits run (default :class:`ServerEdits` on ``settings.servers``); the Ray cluster's are in
        :mod:`backend.ray_batch`."""
        self.items, self.s = items, settings
        self.stages = stages or LocalStages(settings.command)
        self.edits = edits or ServerEdits(settings.servers, settings.token, settings.timeout)
        self.states = {i.id: AssetState.load(self.folder(i), i.id, str(i.asset)) for i in items}
        self.running: list[_Work] = []  # worker processes
        self.editing: list[_Work] = []  # edit jobs in flight
        self.skipped: list[str] = []

    # ------------------------------------------------------------------------------------------- paths
    def folder(self, item: BatchItem) -> Path:
        return self.s.out / item.id

    def views(self, item: BatchItem) -> Path:
        return self.folder(item) / "views"

    def result(self, item: BatchItem) -> Path:
        return self.folder(item) / "result"

    # ------------------------------------------------------------------------------------------- resume
    def _reconcile(self, item: BatchItem, state: AssetState) -> None:
        """Trust a finished stage only while its outputs are there; remove what a killed run left half-written."""
        present = {"capture": (self.views(item) / MANIFEST).is_file(),
                   "edit": (self.views(item) / EDITED_DIR / EDIT_RECORD).is_file(),
                   "bake": (self.result(item) / BAKE_RECORD).is_file()}
        kept = []
        for stage in STAGES:
            if stage in state.done and present[stage]:
                kept.append(stage)
            else:
                break
        state.done = kept
        for stale in (self.folder(item) / "views.part", self.folder(item) / "result.part"):
            shutil.rmtree(stale, ignore_errors=True)
        if "capture" in kept and "edit" not in kept:
            shutil.rmtree(self.views(item) / (EDITED_DIR + ".part"), ignore_errors=True)
        if state.next_stage is None:
            state.status = "done"
            self.skipped.append(item.id)
        else:
            state.status, state.attempts = "pending", 0

    # ------------------------------------------------------------------------------------------- stages
    def _start_process(self, item: BatchItem, state: AssetState, stage: str) -> None:
        folder = self.folder(item)
        logs = folder / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        capture_flags = option_flags({k: v for k, v in item.options.items() if k not in BAKE_OPTIONS})
        bake_flags = option_flags({k: v for k, v in item.options.items() if k in BAKE_OPTIONS})
        target = ["--object", item.object] if item.object else []
        if stage == "capture":
            part = folder / "views.part"
            shutil.rmtree(part, ignore_errors=True)
            region = ["--region", item.region] if item.region else []
            args = ["capture", str(item.asset), *target, *region, *capture_flags, "--out", str(part),
                    "--save-blend", str(part / SCENE_FILE)]
        else:
            part = folder / "result.part"
            shutil.rmtree(part, ignore_errors=True)
            stem = item.asset.stem + "_restyled"
            args = ["bake", "--views", str(self.views(item)), "--input", str(self.views(item) / SCENE_FILE), *target,
                    "--out", str(part / "textures" / "texture.png"), "--apply",
                    "--save-blend", str(part / f"{stem}.blend"), "--export", str(part / f"{stem}.glb"),
                    *(["--verify"] if self.s.verify else []), "--report", str(part / BAKE_RECORD), *bake_flags]
        handle = self.stages.start(args, logs / f"{stage}.log")
        state.status = "running"
        state.save(folder)
        self.running.append(_Work(item, state, stage, time.monotonic(), process=handle))

    def _start_edit(self, item: BatchItem, state: AssetState) -> None:
        if state.job_key is None or state.error is not None:  # a new try gets a new job
            state.job_key, state.job_id, state.job_server = f"batch-{item.id}-{int(time.time() * 1000)}", None, None
        handle = self.edits.start(item, self.views(item), state.job_key, state.job_id, state.job_server)
        state.status = "running"
        state.save(self.folder(item))
        self.editing.append(_Work(item, state, "edit", time.monotonic(), edit=handle))

    def _finish_stage(self, work: _Work) -> None:
        item, state = work.item, work.state
        folder = self.folder(item)
        if work.stage == "capture":
            os.replace(folder / "views.part", self.views(item))
        elif work.stage == "bake":
            os.replace(folder / "result.part", self.result(item))
            self._after_bake(item, state)
        state.done.append(work.stage)
        state.times[work.stage] = round(time.monotonic() - work.started, 3)
        state.error = None
        state.status = "done" if state.next_stage is None else "pending"
        state.save(folder)

    def _after_bake(self, item: BatchItem, state: AssetState) -> None:
        """The asset's before/after sheet and the bake's numbers into its state."""
        import json

        vs = ViewSet.read(self.views(item))
        before = [vs.load(v, "colour") for v in vs.views]
        after = [read_png(vs.root / EDITED_DIR / f"{v.name}.png")[..., :3] for v in vs.views]
        write_png(self.folder(item) / SHEET_FILE, contact_sheet(before + after, tile=160, columns=len(vs.views)))
        record = json.loads((self.result(item) / BAKE_RECORD).read_text())
        loop = record.get("closed_loop") or {}
        state.metrics = {k: loop[k] for k in ("psnr_db", "outside_psnr_db", "view_dependent_share")
                         if isinstance(loop.get(k), (int, float)) and np.isfinite(loop[k])}
        for key, images in (("consistency_db", after), ("capture_consistency_db", before)):
            score = viewset_consistency(vs, images)[0].consistency_db
            if np.isfinite(score):
                state.metrics[key] = score

    def _fail(self, work: _Work, category: str, reason: str) -> None:
        state = work.state
        state.attempts += 1
        state.error = {"stage": work.stage, "category": category, "reason": reason}
        retry = category in RETRYABLE and state.attempts <= self.s.retries
        state.status = "pending" if retry else "failed"
        state.save(self.folder(work.item))
        log.warning("%s: %s failed (%s): %s%s", work.item.id, work.stage, category, reason,
                    "; trying again" if retry else "")

    # ------------------------------------------------------------------------------------------- polling
    def _poll_processes(self) -> None:
        for work in list(self.running):
            code = work.process.poll()
            if code is None:
                continue
            self.running.remove(work)
            if code == 0:
                self._finish_stage(work)
            else:
                category = "crash" if code < 0 else CATEGORIES.get(code, "internal")
                self._fail(work, category, _reason(self.folder(work.item) / "logs" / f"{work.stage}.log", code))

    def _poll_edits(self) -> None:
        for work in list(self.editing):
            finished, error = work.edit.step()
            if work.edit.job_id and (work.state.job_id, work.state.job_server) != (work.edit.job_id, work.edit.server):
                work.state.job_id, work.state.job_server = work.edit.job_id, work.edit.server
                work.state.save(self.folder(work.item))
            if not finished:
                continue
            self.editing.remove(work)
            if error is None:
                self._finish_stage(work)
            else:
                self._fail(work, *error)

    # ------------------------------------------------------------------------------------------- the loop
    def _schedule(self) -> None:
        pending = [i for i in self.items if self.states[i.id].status == "pending"]
        for item in pending:  # edits of captured assets go to the server at once
            if self.states[item.id].next_stage == "edit" and len(self.editing) < self.edits.capacity:
                self._start_edit(item, self.states[item.id])
        for stage in ("bake", "capture"):  # bakes first: they finish assets
            for item in pending:
                if len(self.running) >= self.s.workers:
                    return
                state = self.states[item.id]
                if state.status == "pending" and state.next_stage == stage:
                    self._start_process(item, state, stage)

    def _summary(self, started: float) -> str:
        counts = {k: sum(s.status == k for s in self.states.values()) for k in ("done", "failed", "running")}
        waiting = len(self.states) - sum(counts.values())
        finished_now = counts["done"] + counts["failed"] - len(self.skipped)
        left = waiting + counts["running"]
        elapsed = time.monotonic() - started
        eta = f", ETA {_clock(elapsed / finished_now * left)}" if finished_now and left else ""
        return (f"batch: {counts['done']} done, {counts['failed']} failed, {counts['running']} running, {waiting} "
                f"waiting ({_clock(elapsed)}{eta})")

    def run(self) -> BatchResult:
        for item in self.items:
            self._reconcile(item, self.states[item.id])
            self.states[item.id].save(self.folder(item))
        started = time.monotonic()
        idle, last, shown, line = 0.0, started, 0.0, ""
        interrupted = stopped = False
        try:
            while any(s.status in ("pending", "running") for s in self.states.values()):
                self._schedule()
                self._poll_processes()
                self._poll_edits()
                now = time.monotonic()
                if not self.editing:
                    idle += now - last
                last = now
                if self.s.fail_fast and any(s.status == "failed" for s in self.states.values()):
                    stopped = True
                    break
                summary = self._summary(started)
                if summary != line or now - shown > 10.0:
                    self.s.progress(summary)
                    line, shown = summary, now
                time.sleep(0.05)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            self._stop_all()
        total = time.monotonic() - started
        return BatchResult([self.states[i.id] for i in self.items], total, idle / total if total > 0 else 0.0,
                           interrupted, stopped, list(self.skipped))

    def _stop_all(self) -> None:
        """Stop the captures and bakes (their stage is not done: a re-run does it again); edit jobs stay on the
        server, where a re-run finds them by their job ids."""
        for work in self.running:
            work.process.stop()
        for work in self.editing:
            work.edit.stop()
        for work in self.running + self.editing:
            if work.state.status == "running":
                work.state.status = "pending"
                work.state.save(self.folder(work.item))
        self.running, self.editing = [], []


def _reason(log_path: Path, code: int) -> str:
    """The worker's error line (``groupedit: error: ...``), else its last line, else the exit code."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    errors = [line.removeprefix("groupedit: error: ") for line in lines if line.startswith("groupedit: error:")]
    if errors:
        return errors[-1]
    if code < 0:
        return f"the Blender process was killed by signal {-code}" + (f" ({lines[-1]})" if lines else "")
    return lines[-1] if lines else f"exit code {code}"


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"
