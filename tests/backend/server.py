"""Start the real server in its own process on a free loopback port, and a small client for tests."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def job_files(n: int = 2, size: int = 32, instruction: str = "make it red", **manifest_extra) -> tuple[dict, dict]:
    """(data, files) for requests.post: n views with a square mask each."""
    files, views = {}, []
    rng = np.random.default_rng(n)
    for i in range(n):
        img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        m = np.zeros((size, size), np.uint8)
        m[4:-4, 4:-4] = 255
        files[f"image_{i}"] = (f"{i}.png", png(img), "image/png")
        files[f"mask_{i}"] = (f"{i}m.png", png(m), "image/png")
        views.append({"name": f"view_{i:03d}", "image": f"image_{i}", "mask": f"mask_{i}"})
    manifest = {"instruction": instruction, "views": views, **manifest_extra}
    return {"manifest": json.dumps(manifest)}, files


class Server:
    """A ``groupedit-server`` subprocess; ``url`` is its base URL."""

    def __init__(self, data_dir: Path, editor: str = "tests.backend.slow_editor:SlowEditor", *extra: str) -> None:
        self.data_dir, self.editor, self.extra = data_dir, editor, extra
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        #: more environment for the server process (e.g. GROUPEDIT_FAULTS, see backend/faults.py)
        self.env: dict[str, str] = {}

    def start(self, wait: bool = True) -> "Server":
        cmd = [sys.executable, "-m", "backend.cli", "--port", str(self.port), "--data-dir", str(self.data_dir),
               "--editor", self.editor, *self.extra]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     env=dict(os.environ, PYTHONPATH=str(ROOT), **self.env))
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60.0) -> dict:
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()}")
            try:
                h = requests.get(self.url + "/v1/health", timeout=1).json()
                if h["status"] in ("ready", "busy"):
                    return h
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise TimeoutError("server did not become ready")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        pid = self._worker_pid
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass

    _worker_pid: int | None = None

    def health(self) -> dict:
        h = requests.get(self.url + "/v1/health", timeout=5).json()
        self._worker_pid = h.get("worker_pid")
        return h

    def submit(self, n: int = 2, headers: dict | None = None, **kw) -> requests.Response:
        data, files = job_files(n, **kw)
        return requests.post(self.url + "/v1/jobs", data=data, files=files, headers=headers or {}, timeout=30)

    def job_list(self) -> list:
        return requests.get(self.url + "/v1/jobs", timeout=5).json()["jobs"]

    def job(self, job_id: str) -> dict:
        return requests.get(f"{self.url}/v1/jobs/{job_id}", timeout=5).json()

    def wait_state(self, job_id: str, states: tuple[str, ...], timeout: float = 60.0) -> dict:
        end = time.time() + timeout
        while time.time() < end:
            j = self.job(job_id)
            if j["state"] in states:
                return j
            time.sleep(0.05)
        raise TimeoutError(f"job {job_id} never reached {states}: {self.job(job_id)}")
