"""Faults and hostile inputs: every one gets a typed error in the documented shape, and the server stays ready.

Future changes keep this module green (issue: reliability). Each case reproduces a fault seen when the server was
probed as a hostile user would, and checks the documented behaviour (docs/protocol.md, docs/server.md).
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import requests
from PIL import Image

from .server import Server, job_files


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("faults") / "data", "tests.backend.slow_editor:SlowEditor",
               "--max-queue", "4", "--max-job-megapixels", "40").start()
    s.health()
    yield s
    s.kill()


def _error_code(r: requests.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "retryable", "details"}, body
    return body["error"]["code"]


def _manifest_with(raw: str) -> dict:
    """The form of a two-view job whose manifest is ``raw`` with its views filled in."""
    data, files = job_files(2)
    views = json.dumps(json.loads(data["manifest"])["views"])
    return {"data": {"manifest": raw.replace("VIEWS", views)}, "files": files}


@pytest.mark.parametrize("raw, words", [
    ('{"instruction": "make it red", "views": VIEWS, "options": {"steps": NaN}}', "NaN"),
    ('{"instruction": "make it red", "views": VIEWS, "options": {"cfg": Infinity}}', "Infinity"),
    ('{"instruction": "make it \\ud800 red", "views": VIEWS}', "not valid Unicode"),
    ('{"instruction": "make it red", "views": VIEWS, "options": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    ('{"instruction": "make it red", "views": VIEWS, "options": {"x": ' + "[" * 40 + "]" * 40 + "}}", "nested"),
])
def test_malformed_manifests_are_typed_400s_and_create_nothing(server, raw, words):
    for _ in range(2):  # a retry with the same idempotency key gets the same answer, not a 500
        r = requests.post(server.url + "/v1/jobs", headers={"Idempotency-Key": "same-key"}, **_manifest_with(raw))
        assert r.status_code == 400 and _error_code(r) == "invalid_input", r.text
        assert words in r.json()["error"]["message"]
    assert requests.get(server.url + "/v1/jobs").json()["jobs"] == []
    assert server.health()["status"] == "ready"


def test_a_lone_surrogate_in_a_view_name_is_refused(server):
    data, files = job_files(2)
    raw = data["manifest"].replace('"view_000"', '"view_\\udc00"')
    r = requests.post(server.url + "/v1/jobs", data={"manifest": raw}, files=files)
    assert r.status_code == 400 and _error_code(r) == "invalid_input"


def _one_bit_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("1", (side, side), 1).save(buf, format="PNG")
    return buf.getvalue()


def test_total_pixels_of_a_job_are_limited_from_the_headers(server):
    """Three 4096² one-bit PNGs (a few kB each, 48 M pixels together) are over this server's 40 M pixel limit: refused
    with 413 before any image is decoded; the limit is in health."""
    data, files = job_files(3)
    big = _one_bit_png(4096)
    assert len(big) < 100_000
    for i in range(3):
        files[f"image_{i}"] = (f"{i}.png", big, "image/png")
    r = requests.post(server.url + "/v1/jobs", data=data, files=files)
    assert r.status_code == 413 and _error_code(r) == "payload_too_large"
    assert r.json()["error"]["details"] == {"limit": 40 * 2**20, "pixels": 3 * 4096 * 4096}
    assert server.health()["limits"]["max_job_pixels"] == 40 * 2**20


@pytest.mark.parametrize("method, path, status, code", [
    ("DELETE", "/v1/jobs", 405, "method_not_allowed"),
    ("PUT", "/v1/health", 405, "method_not_allowed"),
    ("GET", "/v1/jobs/abc/results/first", 400, "invalid_input"),
    ("GET", "/v1/nothing/here", 404, "not_found"),
])
def test_the_frameworks_own_errors_come_in_the_documented_shape(server, method, path, status, code):
    r = requests.request(method, server.url + path)
    assert r.status_code == status and _error_code(r) == code, r.text


def test_a_second_server_on_the_same_data_folder_is_refused_and_touches_nothing(tmp_path):
    """*Start server* in the panel while one runs in a terminal: the second one says which server holds the folder
    and exits, before it could mark the first one's running job as crashed."""
    first = Server(tmp_path / "data", "tests.backend.slow_editor:SlowEditor").start()
    try:
        job = first.submit(2, options={"steps": 30}).json()["id"]
        first.wait_state(job, ("running",))
        second = Server(tmp_path / "data", "classical").start(wait=False)
        assert second.proc.wait(timeout=60) == 2
        said = second.proc.stdout.read().decode()
        assert f"127.0.0.1:{first.port}" in said and "another --data-dir" in said, said
        assert first.wait_state(job, ("succeeded", "failed"))["state"] == "succeeded"
    finally:
        first.kill()
