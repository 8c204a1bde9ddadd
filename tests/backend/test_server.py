"""The real server over HTTP: reliability, cancel, crashes, restarts, limits and security."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import requests
from PIL import Image

from .server import ROOT, Server, job_files, png

@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data", "tests.backend.slow_editor:SlowEditor", "--max-queue", "4",
               "--max-body-mb", "2").start()
    s.health()
    yield s
    s.kill()


def _err(r: requests.Response) -> str:
    body = r.json()
    assert set(body["error"]) == {"code", "message", "retryable", "details"}
    return body["error"]["code"]


def test_job_runs_and_results_are_served(tmp_path):
    s = Server(tmp_path / "d", "classical").start()
    try:
        data, files = job_files(3, instruction="make it dark green")
        r = requests.post(s.url + "/v1/jobs", data=data, files=files)
        assert r.status_code == 202 and r.json()["queue_position"] in (0, 1)
        job = s.wait_state(r.json()["id"], ("succeeded", "failed"))
        assert job["state"] == "succeeded", job
        src = json.loads(data["manifest"])
        for i in range(3):
            res = requests.get(f"{s.url}/v1/jobs/{job['id']}/results/{i}")
            assert res.status_code == 200 and res.headers["content-type"] == "image/png"
            out = np.asarray(Image.open(io.BytesIO(res.content)))
            inp = np.asarray(Image.open(io.BytesIO(files[src["views"][i]["image"]][1])))
            assert np.array_equal(out[:4], inp[:4]) and not np.array_equal(out[10:20], inp[10:20])
        assert requests.get(f"{s.url}/v1/jobs/{job['id']}/results/3").status_code == 404
        pv = requests.get(f"{s.url}/v1/jobs/{job['id']}/preview")  # the classical editor's one preview
        assert pv.status_code == 200 and Image.open(io.BytesIO(pv.content)).size == (64, 64)  # 2 x 2 cells of 32
        assert job["preview"]["step"] == 3 and job["preview"]["url"].endswith("/preview")
    finally:
        s.kill()


@pytest.mark.parametrize(
    "mutate,code",
    [
        (lambda d, f: d.update(manifest="{not json"), "invalid_input"),
        (lambda d, f: f.update(image_0=("x.png", b"not an image", "image/png")), "invalid_input"),
        (lambda d, f: f.update(image_0=("x.png", png(np.zeros((8, 8, 3), np.uint8))[:30], "image/png")), "invalid_input"),
        (lambda d, f: f.update(mask_1=("m.png", png(np.zeros((16, 16), np.uint8)), "image/png")), "invalid_input"),
        (lambda d, f: f.pop("mask_1"), "invalid_input"),
        (lambda d, f: d.update(manifest=json.dumps({"instruction": "x" * 5000, "views": []})), "invalid_input"),
    ],
)
def test_bad_inputs_are_4xx_and_the_server_stays_ready(server, mutate, code):
    data, files = job_files(2)
    mutate(data, files)
    r = requests.post(server.url + "/v1/jobs", data=data, files=files)
    assert r.status_code == 400 and _err(r) == code
    health = server.health()
    assert health["status"] == "ready"
    assert health["device"] == "cpu" and {"vram_total", "vram_free", "vram_peak"} <= set(health)
    assert requests.get(server.url + "/v1/jobs").json()["jobs"] == []


def test_body_over_the_limit_is_refused_before_reading(server):
    limit = server.health()["limits"]["max_body_bytes"]
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: multipart/form-data; "
                     f"boundary=x\r\nContent-Length: {limit + 1}\r\n\r\n".encode())
        sock.settimeout(10)
        reply = b""
        while b"payload_too_large" not in reply:  # answered although no body byte was sent
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        reply = reply.decode()
    assert reply.startswith("HTTP/1.1 413") and "payload_too_large" in reply
    assert server.health()["status"] == "ready"


def test_cancel_queued_running_twice_finished_and_isolation(server):
    a = server.submit(1).json()["id"]
    b = server.submit(1).json()["id"]
    server.wait_state(a, ("running",))
    rb = requests.post(f"{server.url}/v1/jobs/{b}/cancel")
    assert rb.status_code == 200 and rb.json()["state"] == "cancelled"
    assert server.job(a)["state"] == "running", "cancelling B never touches running A"
    ra = requests.post(f"{server.url}/v1/jobs/{a}/cancel")
    assert ra.status_code == 200
    assert requests.post(f"{server.url}/v1/jobs/{a}/cancel").status_code == 200  # twice: idempotent
    job = server.wait_state(a, ("cancelled", "succeeded"), timeout=10)
    assert job["state"] == "cancelled"
    assert not (server.data_dir / "jobs" / a / "results").exists(), "no result files left"
    cid = server.submit(1).json()["id"]
    server.wait_state(cid, ("succeeded",), timeout=30)
    r = requests.post(f"{server.url}/v1/jobs/{cid}/cancel")
    assert r.status_code == 409 and _err(r) == "conflict"


@pytest.mark.slow
def test_killed_worker_fails_the_job_and_the_next_succeeds(server):
    a = server.submit(1).json()["id"]
    server.wait_state(a, ("running",))
    os.kill(server.health()["worker_pid"], signal.SIGKILL)
    job = server.wait_state(a, ("failed", "succeeded"), timeout=30)
    assert job["state"] == "failed" and job["error"]["code"] == "worker_crashed"
    b = server.submit(1).json()["id"]
    assert server.wait_state(b, ("succeeded", "failed"), timeout=60)["state"] == "succeeded"


@pytest.mark.slow
def test_restart_runs_queued_jobs_in_order_and_keeps_results(tmp_path):
    s = Server(tmp_path / "data").start()
    done = s.submit(1).json()["id"]
    s.wait_state(done, ("succeeded",))
    running = s.submit(1).json()["id"]
    queued = [s.submit(1).json()["id"] for _ in range(3)]
    s.wait_state(running, ("running",))
    s.health()
    s.kill()  # server and worker die with one job running and three queued
    s2 = Server(tmp_path / "data")
    s2.port, s2.url = s.port, s.url
    s2.start()
    try:
        assert s2.job(running)["state"] == "failed" and s2.job(running)["error"]["code"] == "worker_crashed"
        finished = [s2.wait_state(j, ("succeeded", "failed"), timeout=60) for j in queued]
        assert all(j["state"] == "succeeded" for j in finished)
        starts = [j["started"] for j in finished]
        assert starts == sorted(starts), "FIFO after restart"
        assert requests.get(f"{s2.url}/v1/jobs/{done}/results/0").status_code == 200
    finally:
        s2.kill()


def _process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


@pytest.mark.slow
def test_worker_exits_when_the_server_is_killed(tmp_path):
    s = Server(tmp_path / "data").start()
    worker = s.health()["worker_pid"]
    assert worker and _process_alive(worker)
    s.proc.kill()  # no clean shutdown: the supervisor never gets to stop its worker
    s.proc.wait()
    end = time.time() + 15
    while _process_alive(worker) and time.time() < end:
        time.sleep(0.1)
    alive = _process_alive(worker)
    s.kill()
    assert not alive, "the worker outlived its server (it would keep the model in GPU memory)"


def test_concurrent_clients_fifo_queue_limit_and_private_streams(server):
    results: list[requests.Response] = [None] * 10  # type: ignore[list-item]

    def submit(i: int) -> None:  # long jobs (100 steps) so that none finishes during the burst
        data, files = job_files(1, options={"steps": 100})
        results[i] = requests.post(server.url + "/v1/jobs", data=data, files=files, timeout=60)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    accepted = [r.json() for r in results if r.status_code == 202]
    refused = [r for r in results if r.status_code != 202]
    # 4 queued at most; the first may already have moved to running when the others arrive
    assert len({j["id"] for j in accepted}) == len(accepted) and 4 <= len(accepted) <= 5
    assert all(j["queue_position"] <= 4 for j in accepted)
    assert len(refused) == 10 - len(accepted) and all(r.status_code == 429 and _err(r) == "queue_full" for r in refused)
    time.sleep(0.5)
    jobs = requests.get(server.url + "/v1/jobs").json()["jobs"]
    assert [j["state"] for j in jobs].count("running") == 1
    assert [j["queue_position"] for j in jobs] == list(range(len(jobs))), "FIFO by arrival"
    for j in jobs[1:]:
        requests.post(f"{server.url}/v1/jobs/{j['id']}/cancel")
    requests.post(f"{server.url}/v1/jobs/{jobs[0]['id']}/cancel")
    for j in jobs:
        stream = requests.get(f"{server.url}/v1/jobs/{j['id']}/events", timeout=60).text
        kinds = [line[7:] for line in stream.splitlines() if line.startswith("event: ")]
        assert kinds[0] == "queued" and kinds[-1] == "cancelled" and kinds.count("queued") == 1
        assert kinds.count("started") == (1 if j is jobs[0] else 0), "a stream sees only its own job"


def test_idempotent_resubmit_gives_one_job(server):
    headers = {"Idempotency-Key": "abc-123"}
    one = server.submit(1, headers=headers).json()["id"]
    two = server.submit(1, headers=headers).json()["id"]
    assert one == two and len(requests.get(server.url + "/v1/jobs").json()["jobs"]) == 1


def test_event_stream_resumes_with_last_event_id(server):
    jid = server.submit(1).json()["id"]
    server.wait_state(jid, ("succeeded",), timeout=30)
    full = requests.get(f"{server.url}/v1/jobs/{jid}/events").text
    ids = [int(line[4:]) for line in full.splitlines() if line.startswith("id: ")]
    kinds = [line[7:] for line in full.splitlines() if line.startswith("event: ")]
    assert kinds[0] == "queued" and kinds[1] == "started" and kinds[-1] == "succeeded" and "progress" in kinds
    resumed = requests.get(f"{server.url}/v1/jobs/{jid}/events", headers={"Last-Event-ID": str(ids[3])}).text
    assert [int(line[4:]) for line in resumed.splitlines() if line.startswith("id: ")] == ids[4:]


def test_security(tmp_path, server):
    # foreign Host (DNS rebinding) and Origin (a web page)
    r = requests.get(server.url + "/v1/health", headers={"Host": "evil.example:80"})
    assert r.status_code == 403 and _err(r) == "forbidden"
    r = requests.get(server.url + "/v1/health", headers={"Origin": "http://evil.example"})
    assert r.status_code == 403
    # path traversal
    for path in ("/v1/jobs/..%2f..%2fjobs.sqlite3", "/v1/jobs/x/results/..%2f..%2fjobs.sqlite3", "/../jobs.sqlite3"):
        assert requests.get(server.url + path).status_code == 404
    # a non-loopback bind without a token refuses to start
    p = subprocess.run([sys.executable, "-m", "backend.cli", "--host", "0.0.0.0", "--data-dir", str(tmp_path / "x")],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "without a token" in p.stderr


def test_token(tmp_path):
    token_file = tmp_path / "token"
    s = Server(tmp_path / "d", "identity", "--token-file", str(token_file))
    s.start(wait=False)
    try:
        end = time.time() + 30
        while not token_file.exists() and time.time() < end:
            time.sleep(0.1)
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        token = token_file.read_text().strip()
        ok = {"Authorization": f"Bearer {token}"}
        while time.time() < end:
            try:
                if requests.get(s.url + "/v1/health", headers=ok).json()["status"] == "ready":
                    break
            except requests.RequestException:
                time.sleep(0.1)
        r = requests.get(s.url + "/v1/health", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401 and _err(r) == "unauthorized"
        assert requests.get(s.url + "/v1/health").status_code == 401
        assert requests.get(s.url + "/v1/health", headers=ok).status_code == 200
    finally:
        s.kill()


def test_token_file_is_whole_when_seen_and_one_token_wins(tmp_path):
    """Processes racing to make the token all read the one that landed; a reader never finds it empty."""
    path = tmp_path / "keys" / "token"
    code = ("import sys; from pathlib import Path; from backend.cli import read_token; "
            "print(read_token(Path(sys.argv[1]), create=True))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(6)]
    seen = set()
    while any(p.poll() is None for p in procs):
        if path.exists():
            seen.add(path.read_text())
    tokens = {p.communicate()[0].strip() for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert len(tokens) == 1 and seen <= tokens and "" not in seen
    assert sorted(os.listdir(path.parent)) == ["token"]  # no partial files left behind
    assert oct(path.stat().st_mode & 0o777) == "0o600"
