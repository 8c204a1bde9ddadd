"""The add-on's bpy-free client and job poller against the real server."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from blender_addon.core.format.cameras import Camera, Intrinsics, look_at
from blender_addon.core.client.api import BackendClient, JobPoller
from blender_addon.core.errors import ServerNotRunning, ServerRequestError
from blender_addon.core.format.images import read_png
from blender_addon.core.format.viewset import View, ViewSet, write_view_files

from .server import ROOT, Server, free_port


def make_viewset(root, n=3, size=32) -> ViewSet:
    rng = np.random.default_rng(0)
    views = []
    for i in range(n):
        mask = np.zeros((size, size), bool)
        mask[6:-6, 6:-6] = True
        colour = rng.integers(40, 200, (size, size, 3), dtype=np.uint8)
        files = write_view_files(root, f"view_{i:03d}", {"colour": colour, "mask": mask})
        cam = Camera(Intrinsics.from_fov(40, size, size), look_at(np.array([0.0, -3.0, float(i)]), np.zeros(3)))
        views.append(View(f"view_{i:03d}", cam, files))
    vs = ViewSet(root=root, object_name="Thing", views=views)
    vs.write_manifest()
    return vs


def drive(poller: JobPoller, timeout: float = 60.0) -> list:
    seen = []
    end = time.time() + timeout
    while not poller.step().finished and time.time() < end:
        seen.append((poller.status.state, poller.status.step, poller.status.total))
        time.sleep(0.05)
    return seen


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("data"), "tests.backend.slow_editor:SlowEditor").start()
    yield s
    s.kill()


def test_poller_reports_progress_and_downloads(tmp_path, slow_server):
    vs = make_viewset(tmp_path)
    poller = JobPoller(BackendClient(slow_server.url), vs, "anything")
    seen = drive(poller)
    assert poller.status.state == "done", poller.status
    running = [s for s in seen if s[0] == "running" and s[2]]
    assert running and running[-1][2] == 20 and len({s[1] for s in running}) > 2, "steps advance"
    assert ("downloading", 1, 3) in seen or poller.status.step == 3
    for v in vs.views:
        edited = read_png(tmp_path / "edited" / f"{v.name}.png")[..., :3]
        assert np.array_equal(edited, 255 - vs.load(v, "colour"))  # what the test editor does
    # a second edit keeps the first
    poller2 = JobPoller(BackendClient(slow_server.url), vs, "again")
    drive(poller2)
    assert (tmp_path / "edited.1").is_dir() and (tmp_path / "edited").is_dir()


def test_poller_cancel_mid_job(tmp_path, slow_server):
    vs = make_viewset(tmp_path)
    client = BackendClient(slow_server.url)
    poller = JobPoller(client, vs, "anything")
    while poller.step().state != "running" or poller.status.step < 2:
        time.sleep(0.05)
    job_id = poller.status.job_id
    assert poller.cancel().state == "cancelled"
    assert slow_server.wait_state(job_id, ("cancelled", "succeeded"), timeout=10)["state"] == "cancelled"
    assert not (tmp_path / "edited").exists()


def test_poller_downloads_live_previews(tmp_path, slow_server):
    vs = make_viewset(tmp_path, n=3, size=32)
    poller = JobPoller(BackendClient(slow_server.url), vs, "anything", options={"preview": True, "steps": 15})
    counts, end = [], time.time() + 60
    while not poller.step().finished and time.time() < end:
        st = poller.status
        if st.preview_count and (not counts or counts[-1] != st.preview_count):
            counts.append(st.preview_count)
            assert st.preview_path == tmp_path / ".preview.png" and st.preview_path.is_file()
            sheet = read_png(st.preview_path)
            assert sheet.shape[:2] == (64, 64), "3 views of 32 px: 2 x 2 cells of 32"
            assert 1 <= st.preview_step <= 15
        time.sleep(0.05)
    assert poller.status.state == "done", poller.status
    assert len(counts) >= 2 and counts == sorted(counts), "the counter goes up with every new preview"
    assert poller.status.preview_count == counts[-1] and not (tmp_path / ".preview.png.part").exists()
    # a job without previews leaves the counter at 0
    plain = JobPoller(BackendClient(slow_server.url), vs, "anything", options={"steps": 3})
    drive(plain)
    assert plain.status.state == "done" and plain.status.preview_count == 0 and plain.status.preview_path is None


def test_error_mapping(tmp_path):
    vs = make_viewset(tmp_path, n=1)
    dead = JobPoller(BackendClient(f"http://127.0.0.1:{free_port()}", start_hint="groupedit-server --port X"), vs, "red")
    st = dead.step()
    assert st.state == "failed" and "backend not running" in st.message and "groupedit-server" in st.message
    with pytest.raises(ServerNotRunning):
        BackendClient(f"http://127.0.0.1:{free_port()}").health()
    with pytest.raises(ServerRequestError, match="online access"):
        BackendClient("http://192.0.2.10:8765", online_access=False)
    s = Server(tmp_path / "d", "classical").start()
    try:
        poller = JobPoller(BackendClient(s.url), vs, "make it nicer")
        drive(poller)
        assert poller.status.state == "failed" and "needs a colour" in poller.status.message
        good = JobPoller(BackendClient(s.url), vs, "make it dark green")
        drive(good)
        assert good.status.state == "done"
    finally:
        s.kill()


def test_headless_edit_command(tmp_path, slow_server):
    vs = make_viewset(tmp_path, n=2)
    exe = [sys.executable, "-m", "blender_addon.cli"]
    r = subprocess.run(exe + ["edit", "--views", str(vs.root), "--instruction", "x", "--server", slow_server.url],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "running denoise" in r.stdout and "2 edited views" in r.stdout
    r = subprocess.run(exe + ["edit", "--views", str(vs.root), "--instruction", "x", "--server",
                              f"http://127.0.0.1:{free_port()}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 4 and "backend not running" in r.stderr
