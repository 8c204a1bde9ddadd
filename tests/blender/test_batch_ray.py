"""``groupedit batch --ray`` on a local Ray cluster with two fake-GPU editors (a custom resource): the same outputs as
the local batch, and an editor whose process dies mid-batch loses nothing (its asset's edit is tried again)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.blender.test_batch import SMALL, _groupedit_argv, _make_assets

pytestmark = pytest.mark.slow


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture
def ray_cluster(tmp_path):
    """A one-node Ray cluster with 2 CPUs and 2 units of ``fake_gpu``, whose editors die once (the fault point)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    marker = tmp_path / "editor_died"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["GROUPEDIT_RAY_EXIT_ONCE"] = str(marker)
    subprocess.run([_ray_cli(), "start", "--head", "--num-cpus", "2", "--resources", '{"fake_gpu": 2}', "--port",
                    str(port), "--include-dashboard=false", "--disable-usage-stats"], env=env, check=True,
                   capture_output=True, timeout=180)
    try:
        yield f"127.0.0.1:{port}", marker
    finally:
        subprocess.run([_ray_cli(), "stop", "--force"], capture_output=True, timeout=120)


def test_ray_batch_gives_the_local_outputs_and_survives_a_dying_editor(empty_scene, tmp_path, ray_cluster):
    from blender_addon.core.format.images import read_png

    address, marker = ray_cluster
    _make_assets(tmp_path / "assets", good=("normal map", "vertex colours", "texture transform"))
    for bad in ("no_uv.blend", "corrupt.glb"):
        (tmp_path / "assets" / bad).unlink()
    common = [*_groupedit_argv(), "batch", str(tmp_path / "assets"), *SMALL, "--workers", "2"]
    ray_run = subprocess.run([*common, "--ray", "auto", "--ray-resource", "fake_gpu", "--out", str(tmp_path / "ray")],
                             capture_output=True, text=True, timeout=600, cwd=tmp_path,
                             env={**os.environ, "RAY_ADDRESS": address})  # auto: the cluster RAY_ADDRESS names
    assert ray_run.returncode == 0, ray_run.stdout[-3000:] + ray_run.stderr[-3000:]
    assert "Ray: 2 editor(s) (classical) on 'fake_gpu'" in ray_run.stdout
    assert marker.is_file(), "an editor's process died during the batch"
    states = [json.loads(p.read_text()) for p in (tmp_path / "ray").glob("*/state.json")]
    assert len(states) == 3 and all(s["status"] == "done" for s in states)
    assert sum(s["attempts"] for s in states) >= 1, "the dead editor's edit was tried again"

    local = subprocess.run([*common, "--out", str(tmp_path / "local")], capture_output=True, text=True, timeout=600,
                           cwd=tmp_path)
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    for state in states:
        a = state["id"]
        for png in sorted((tmp_path / "local" / a / "views" / "edited").glob("*.png")):
            ours = read_png(tmp_path / "ray" / a / "views" / "edited" / png.name)[..., :3].astype(int)
            assert np.abs(ours - read_png(png)[..., :3]).max() <= 2, (a, png.name)  # renders agree to a level or two
        assert (tmp_path / "ray" / a / "result" / f"{a}_restyled.glb").is_file()
    report = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert report["totals"]["done"] == 3
