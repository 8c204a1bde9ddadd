"""Live previews of a running job: the contact sheet, the ``preview`` events and ``GET /v1/jobs/{id}/preview``."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator

import numpy as np
import pytest
import requests
from PIL import Image

from backend.jobfiles import PREVIEW_MAX_WIDTH, contact_sheet

from .server import Server


def _error_code(r: requests.Response) -> str:
    body = r.json()
    assert set(body["error"]) == {"code", "message", "retryable", "details"}
    return body["error"]["code"]


def _wait_preview(server: Server, job_id: str, timeout: float = 20.0) -> dict:
    end = time.time() + timeout
    while time.time() < end:
        job = server.job(job_id)
        if job.get("preview"):
            return job
        assert job["state"] in ("queued", "running"), job
        time.sleep(0.05)
    raise TimeoutError(f"job {job_id} never showed a preview")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("data"), "tests.backend.slow_editor:SlowEditor").start()
    yield s
    s.kill()


def test_contact_sheet_layout() -> None:
    four = [np.full((300, 300, 3), 40 * i, np.uint8) for i in range(4)]
    sheet = contact_sheet(four)
    assert sheet.shape == (512, 512, 3) and sheet.dtype == np.uint8  # 2 x 2 cells of 256
    assert sheet[128, 384, 0] == 40 and sheet[384, 128, 0] == 80, "row-major in view order"
    small = contact_sheet([np.full((20, 40, 3), 9, np.uint8), np.full((30, 30, 3), 9, np.uint8)])
    assert small.shape == (40, 80, 3), "cells: the widest view, the tallest aspect"
    assert not small[:, 40:45].any() and not small[:5, 40:].any(), "the 30 x 30 view is not enlarged"
    assert small[10:30, 0:40].all() and not small[:10, 0:40].any(), "the 40 x 20 view is centred in its cell"
    many = contact_sheet([np.zeros((64, 64, 3), np.uint8)] * 10)
    assert many.shape[1] <= PREVIEW_MAX_WIDTH and many.shape == (3 * 64, 4 * 64, 3)  # 4 columns, 3 rows


def test_previews_are_streamed_served_and_kept_after_success(server: Server) -> None:
    r = server.submit(3, size=300, options={"preview": True, "steps": 12})
    job_id = r.json()["id"]
    job = _wait_preview(server, job_id)
    p = job["preview"]
    assert p["url"] == f"/v1/jobs/{job_id}/preview" and 1 <= p["step"] <= 12 and p["event_id"] > 0
    res = requests.get(server.url + p["url"], timeout=5)
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    img = Image.open(io.BytesIO(res.content))
    assert img.format == "PNG" and img.size == (512, 512) == (p["width"], p["height"])
    # the preview follows the job: a later one has a later step and a new event id
    end = time.time() + 20
    while server.job(job_id)["preview"]["event_id"] == p["event_id"] and time.time() < end:
        time.sleep(0.05)
    later = server.job(job_id)["preview"]
    assert later["event_id"] > p["event_id"] and later["step"] > p["step"]
    server.wait_state(job_id, ("succeeded",), timeout=30)
    stream = requests.get(f"{server.url}/v1/jobs/{job_id}/events", timeout=30).text
    events = [(line[7:], json.loads(data[6:])) for line, data in zip(stream.splitlines(), stream.splitlines()[1:])
              if line.startswith("event: ")]
    previews = [d for kind, d in events if kind == "preview"]
    assert len(previews) >= 2 and all(d["url"] == p["url"] for d in previews)
    assert [d["step"] for d in previews] == sorted(d["step"] for d in previews)
    assert requests.get(server.url + p["url"], timeout=5).status_code == 200, "kept with the results"


def test_no_preview_is_404_and_a_cancelled_job_loses_its_preview(server: Server) -> None:
    plain = server.submit(1, options={"steps": 2}).json()["id"]
    server.wait_state(plain, ("succeeded",), timeout=30)
    assert server.job(plain)["preview"] is None
    r = requests.get(f"{server.url}/v1/jobs/{plain}/preview", timeout=5)
    assert r.status_code == 404 and _error_code(r) == "not_found" and "no preview" in r.json()["error"]["message"]
    r = requests.get(f"{server.url}/v1/jobs/{'0' * 32}/preview", timeout=5)
    assert r.status_code == 404 and _error_code(r) == "not_found"
    for path in ("/v1/jobs/..%2f..%2fjobs.sqlite3/preview", "/v1/jobs/x/preview"):
        assert requests.get(server.url + path, timeout=5).status_code == 404

    job_id = server.submit(2, options={"preview": True, "steps": 200}).json()["id"]
    _wait_preview(server, job_id)
    url = f"{server.url}/v1/jobs/{job_id}/preview"
    r = requests.get(url, headers={"Origin": "http://evil.example"}, timeout=5)
    assert r.status_code == 403 and _error_code(r) == "forbidden", "the guard covers previews"
    assert requests.get(url, timeout=5).status_code == 200
    requests.post(f"{server.url}/v1/jobs/{job_id}/cancel", timeout=5)
    job = server.wait_state(job_id, ("cancelled", "succeeded"), timeout=10)
    assert job["state"] == "cancelled" and job["preview"] is None
    assert requests.get(url, timeout=5).status_code == 404
    assert not list((server.data_dir / "jobs" / job_id).glob("preview*")), "no preview files left"
