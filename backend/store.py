"""Jobs that survive: a FIFO queue and event log in SQLite, inputs and results in per-job folders.

States: ``queued`` -> ``running`` -> ``succeeded`` | ``failed`` | ``cancelled`` (a queued job may
go straight to ``cancelled``). On start, a job left ``running`` by a dead server becomes ``failed``
with code ``worker_crashed``: an interrupted job is never reported as succeeded.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blender_addon.core.format.protocol import TERMINAL_STATES as TERMINAL

from . import faults
from .errors import BackendError, Conflict, NotFound, QueueFull, StorageFull
from .jobfiles import remove_preview

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    state TEXT NOT NULL,
    instruction TEXT NOT NULL,
    options TEXT NOT NULL,
    views TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    error_code TEXT,
    error_message TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, id);
"""


@dataclass
class Job:
    """One job as stored. ``views`` are the view names in order; files live under ``folder``."""

    id: str
    seq: int
    state: str
    instruction: str
    options: dict[str, Any]
    views: list[str]
    created: float
    started: float | None
    finished: float | None
    error_code: str | None
    error_message: str | None
    cancel_requested: bool

    def to_dict(self, position: int | None = None) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("seq", "options")}
        d["options"] = self.options
        d["queue_position"] = position
        d["error"] = {"code": self.error_code, "message": self.error_message} if self.error_code else None
        del d["error_code"], d["error_message"]
        return d


class StoreUnusable(BackendError):
    """The job database cannot be opened or is corrupt."""


class JobStore:
    """Thread-safe access to the job database under ``data_dir``."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.jobs_dir = self.data_dir / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        path = self.data_dir / "jobs.sqlite3"
        try:
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            (check,) = self._db.execute("PRAGMA quick_check").fetchone()
            if check != "ok":
                raise sqlite3.DatabaseError(check)
        except sqlite3.DatabaseError as exc:
            raise StoreUnusable(f"the job database {path} cannot be used ({exc}): move it away (the server then "
                                "starts with a new, empty one; the jobs in it are lost) or restore it") from exc
        self.changed = threading.Condition(self._lock)
        self._remove_orphans()

    def _remove_orphans(self) -> None:
        """Job folders no row points to (a server that died while it staged a job's inputs) are removed."""
        with self._lock:
            known = {r[0] for r in self._db.execute("SELECT id FROM jobs")}
        for folder in self.jobs_dir.iterdir():
            if folder.is_dir() and folder.name not in known:
                shutil.rmtree(folder, ignore_errors=True)

    # ---------------------------------------------------------------------------------- helpers
    def folder(self, job_id: str) -> Path:
        """Folder of a job: the id is always one this store generated (a UUID hex), never client text."""
        return self.jobs_dir / uuid.UUID(hex=job_id).hex

    def _row(self, row: tuple) -> Job:
        (seq, jid, state, instruction, options, views, _key, created, started, finished, code, msg, cancel) = row
        return Job(jid, seq, state, instruction, json.loads(options), json.loads(views), created, started, finished,
                   code, msg, bool(cancel))

    # ---------------------------------------------------------------------------------- jobs
    def create(self, instruction: str, options: dict[str, Any], views: list[str], idempotency_key: str | None,
               stage: Any, max_queue: int) -> tuple[Job, bool]:
        """Insert a queued job; ``stage(folder)`` writes its inputs first. Returns (job, created).

        With an ``idempotency_key`` already used, the existing job is returned and nothing is written.
        Raises :class:`QueueFull` when ``max_queue`` jobs are already waiting (checked under the lock,
        so concurrent submits cannot overfill the queue).
        """
        with self._lock:
            if idempotency_key and (known := self.by_key(idempotency_key)) is not None:
                return known, False
            (waiting,) = self._db.execute("SELECT COUNT(*) FROM jobs WHERE state='queued'").fetchone()
            if waiting >= max_queue:
                raise QueueFull(f"the queue is full ({max_queue} jobs): try again when a job has finished",
                                {"max_queue": max_queue})
            jid = uuid.uuid4().hex
            folder = self.folder(jid)
            try:
                faults.check("store.stage")
                stage(folder)
                self._db.execute(
                    "INSERT INTO jobs (id, state, instruction, options, views, idempotency_key, created) "
                    "VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                    (jid, instruction, json.dumps(options), json.dumps(views), idempotency_key, time.time()),
                )
            except (OSError, sqlite3.OperationalError) as exc:  # a full disk, a database that cannot be written
                shutil.rmtree(folder, ignore_errors=True)
                raise StorageFull(f"the server could not store the job ({exc}): free space in its data folder, then "
                                  "submit again") from exc
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            self.add_event(jid, "queued", {"state": "queued"})
            return self.get(jid), True

    def by_key(self, idempotency_key: str) -> Job | None:
        """The job submitted earlier with this Idempotency-Key, if any."""
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE idempotency_key=?", (idempotency_key,)).fetchone()
        return self._row(row) if row else None

    def get(self, job_id: str) -> Job:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id!r}")
        return self._row(row)

    def list(self) -> list[Job]:
        with self._lock:
            return [self._row(r) for r in self._db.execute("SELECT * FROM jobs ORDER BY seq").fetchall()]

    def queued(self) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE state='queued' ORDER BY seq").fetchall()
        return [self._row(r) for r in rows]

    def position(self, job: Job) -> int | None:
        """0 for the running job, 1.. for queued ones in order, None when finished."""
        if job.state == "running":
            return 0
        if job.state != "queued":
            return None
        with self._lock:
            (ahead,) = self._db.execute("SELECT COUNT(*) FROM jobs WHERE state='queued' AND seq<?", (job.seq,)).fetchone()
        return ahead + 1

    def start(self, job_id: str) -> None:
        self._transition(job_id, "running", "started", {"state": "running"}, started=time.time())

    def finish(self, job_id: str, state: str, code: str | None = None, message: str | None = None) -> None:
        """Move a job to a terminal state (results and live preview of a failed or cancelled job are removed)."""
        if state not in TERMINAL:
            raise ValueError(state)
        faults.check("store.finish")
        if state != "succeeded":
            shutil.rmtree(self.folder(job_id) / "results", ignore_errors=True)
            remove_preview(self.folder(job_id))
        self._transition(job_id, state, state, {"state": state, "error": {"code": code, "message": message} if code else None},
                         finished=time.time(), error_code=code, error_message=message)

    def _transition(self, job_id: str, state: str, kind: str, data: dict[str, Any], **fields: Any) -> None:
        """The job's new state and the event that announces it, in one transaction: whoever sees the state sees the
        event (an event stream that stops at a final state never misses its final event)."""
        cols = "".join(f", {k}=?" for k in fields)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(f"UPDATE jobs SET state=?{cols} WHERE id=?", (state, *fields.values(), job_id))
                self._db.execute("INSERT INTO events (job_id, type, data) VALUES (?, ?, ?)",
                                 (job_id, kind, json.dumps(data)))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.changed.notify_all()

    def request_cancel(self, job_id: str) -> Job:
        """Cancel a job: queued -> cancelled now; running -> flagged (the worker stops at the next step).

        Idempotent for a job already cancelled or being cancelled; a finished job raises Conflict.
        """
        with self._lock:
            job = self.get(job_id)
            if job.state == "queued":
                self.finish(job_id, "cancelled", "cancelled", "cancelled before it started")
            elif job.state == "running":
                self._db.execute("UPDATE jobs SET cancel_requested=1 WHERE id=?", (job_id,))
                self.changed.notify_all()
            elif job.state != "cancelled":
                raise Conflict(f"job {job_id} has already {job.state}; there is nothing to cancel")
            return self.get(job_id)

    def recover(self) -> int:
        """After a restart: jobs left running failed (worker_crashed). Returns how many."""
        with self._lock:
            ids = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE state='running'").fetchall()]
        for jid in ids:
            self.finish(jid, "failed", "worker_crashed", "the server stopped while the job was running")
        return len(ids)

    def purge(self, ttl_s: float) -> int:
        """Delete finished jobs older than ``ttl_s`` seconds (rows, events and files)."""
        cutoff = time.time() - ttl_s
        with self._lock:
            ids = [r[0] for r in self._db.execute(
                "SELECT id FROM jobs WHERE state IN ('succeeded','failed','cancelled') AND finished<?", (cutoff,))]
            for jid in ids:
                self._db.execute("DELETE FROM events WHERE job_id=?", (jid,))
                self._db.execute("DELETE FROM jobs WHERE id=?", (jid,))
                shutil.rmtree(self.folder(jid), ignore_errors=True)
        return len(ids)

    # ---------------------------------------------------------------------------------- events
    def add_event(self, job_id: str, kind: str, data: dict[str, Any]) -> int:
        with self._lock:
            cur = self._db.execute("INSERT INTO events (job_id, type, data) VALUES (?, ?, ?)",
                                   (job_id, kind, json.dumps(data)))
            self.changed.notify_all()
            return int(cur.lastrowid)

    def last_progress(self, job_id: str) -> dict[str, Any] | None:
        """The newest progress event's data of a job (stage, step, total, eta), if any."""
        with self._lock:
            row = self._db.execute("SELECT data FROM events WHERE job_id=? AND type='progress' ORDER BY id DESC LIMIT 1",
                                   (job_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def last_preview(self, job_id: str) -> dict[str, Any] | None:
        """The newest preview event of a job: its data (step, width, height, url) and ``event_id``, if any."""
        with self._lock:
            row = self._db.execute("SELECT id, data FROM events WHERE job_id=? AND type='preview' ORDER BY id DESC "
                                   "LIMIT 1", (job_id,)).fetchone()
        return {**json.loads(row[1]), "event_id": int(row[0])} if row else None

    def events(self, job_id: str, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
        """Events of one job with id > ``after``, oldest first: (event id, type, data)."""
        with self._lock:
            rows = self._db.execute("SELECT id, type, data FROM events WHERE job_id=? AND id>? ORDER BY id",
                                    (job_id, after)).fetchall()
        return [(i, t, json.loads(d)) for i, t, d in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
