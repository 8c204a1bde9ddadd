"""The protocol written once (blender_addon/core/format/protocol.py): the add-on's real client against the real app,
in this process, and the manifest model both sides use."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from backend.app import create_app
from backend.config import ServerConfig
from backend.errors import BackendError
from blender_addon.core.client.api import BackendClient, JobPoller
from blender_addon.core.format import protocol
from blender_addon.core.format.protocol import JobManifest, ManifestError, ManifestView

from .server import free_port
from .test_client import make_viewset


@pytest.fixture()
def in_process_server(tmp_path: Path):
    """The FastAPI app served by uvicorn on a thread of this process (classical editor)."""
    port = free_port()
    config = ServerConfig(data_dir=tmp_path / "data", port=port, editor="classical")
    server = uvicorn.Server(uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    client = BackendClient(f"http://127.0.0.1:{port}")
    end = time.time() + 60
    while time.time() < end:
        try:
            if client.health()["status"] == "ready":
                break
        except Exception:  # noqa: BLE001 - not listening yet
            pass
        time.sleep(0.1)
    yield client, config
    server.should_exit = True
    thread.join(timeout=15)


def test_the_clients_manifest_is_what_the_app_reads(in_process_server, tmp_path: Path) -> None:
    client, config = in_process_server
    vs = make_viewset(tmp_path / "vs", n=2)
    poller = JobPoller(client, vs, "make it red", options={}, description="a red thing")
    end = time.time() + 60
    while not poller.step().finished and time.time() < end:
        time.sleep(0.05)
    assert poller.status.state == "done", poller.status
    job = client.job(poller.status.job_id)
    assert job["state"] in protocol.TERMINAL_STATES and job["views"] == [v.name for v in vs.views]
    inputs = config.data_dir / "jobs" / job["id"] / "inputs"
    assert json.loads((inputs / "text.json").read_text()) == {"description": "a red thing", "subject": "Thing"}
    cameras = json.loads((inputs / "cameras.json").read_text())
    assert np.allclose(cameras["camera_to_world"][1], vs.views[1].camera.camera_to_world)
    assert (vs.root / "edited" / "view_001.png").is_file()


def test_manifest_round_trip_and_refusals() -> None:
    m = JobManifest("make it red", [ManifestView("v0", protocol.image_field(0), protocol.mask_field(0),
                                                 {"K": [[1, 0, 0], [0, 1, 0], [0, 0, 1]], "camera_to_world": []},
                                                 {"position": protocol.pass_field("position", 0)})],
                    options={"steps": 3}, description="red", subject="Cube")
    again = JobManifest.from_json(m.to_json())
    assert again == m and "reference" not in json.loads(m.to_json())
    for raw, message in (("[]", "JSON object"), ('{"views": {}}', "'views'"), ('{"views": [{"name": "a"}]}',
                         "'name', 'image' and 'mask'"), ('{"views": [], "options": []}', "'options'"),
                         ('{"views": [], "subject": 3}', "'subject' must be a string"), ("{", "not valid JSON")):
        with pytest.raises(ManifestError, match=message):
            JobManifest.from_json(raw)
    with pytest.raises(ManifestError, match="1 to 4 views"):
        JobManifest("x", []).check_sizes(4, 10)
    with pytest.raises(ManifestError, match="subject of 201 characters"):
        JobManifest("x", [m.views[0]], subject="s" * 201).check_sizes(4, 10)


def test_error_statuses_come_from_the_protocol() -> None:
    def all_errors(cls: type) -> list[type]:
        return [cls] + [c for sub in cls.__subclasses__() for c in all_errors(sub)]

    for cls in all_errors(BackendError):
        assert cls.status == protocol.ERROR_STATUS[cls.code], cls
    assert set(protocol.ERROR_STATUS) >= {cls.code for cls in all_errors(BackendError)}
