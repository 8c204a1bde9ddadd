"""``groupedit batch`` end to end, in its own processes: good and bad assets, the report, and a batch killed mid-way
that finishes when run again without redoing finished stages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import bpy
import pytest

pytestmark = pytest.mark.slow

SMALL = ["--instruction", "make it red", "--views", "3", "--view-size", "64", "--samples", "2", "--texture-size",
         "512"]


def _groupedit_argv() -> list[str]:
    exe = Path(sys.executable).with_name("groupedit")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "blender_addon.cli"]


def _make_assets(folder: Path, good: tuple[str, ...] = ("normal map", "vertex colours")) -> None:
    """Good assets from the corpus (saved as .blend), a corrupt .glb and a mesh without UVs."""
    from tests.corpus import build

    folder.mkdir(parents=True)
    for name in good:
        build(name)
        bpy.ops.wm.save_as_mainfile(filepath=str(folder / (name.replace(" ", "_") + ".blend")), copy=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.mesh.primitive_cube_add()
    cube = bpy.context.object
    while cube.data.uv_layers:
        cube.data.uv_layers.remove(cube.data.uv_layers[0])
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "no_uv.blend"), copy=True)
    (folder / "corrupt.glb").write_bytes(b"glTF\x02\x00\x00\x00" + b"not a real glTF body" * 8)


def test_good_assets_finish_and_bad_ones_are_reported_with_reasons(empty_scene, tmp_path):
    _make_assets(tmp_path / "assets")
    out = tmp_path / "out"
    r = subprocess.run([*_groupedit_argv(), "batch", str(tmp_path / "assets"), *SMALL, "--workers", "2",
                        "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 6, r.stdout[-3000:] + r.stderr[-3000:]  # finished, with failures
    report = json.loads((out / "report.json").read_text())
    status = {a["id"]: a for a in report["assets"]}
    assert set(status) == {"normal_map", "vertex_colours", "no_uv", "corrupt"}
    for good in ("normal_map", "vertex_colours"):
        a = status[good]
        assert a["status"] == "done" and set(a["times"]) == {"capture", "edit", "bake"}, a
        assert a["metrics"]["psnr_db"] > 10.0 and a["metrics"]["consistency_db"] > 10.0
        assert (out / good / "result" / f"{good}_restyled.glb").is_file()
        assert (out / good / "before_after.png").is_file()
    assert status["no_uv"]["error"]["category"] == "input" and "no UV map" in status["no_uv"]["error"]["reason"]
    assert status["corrupt"]["error"]["stage"] == "capture" and "corrupt.glb" in status["corrupt"]["error"]["reason"]
    page = (out / "index.html").read_text()
    assert all(f">{name}<" in page for name in status)
    assert page.index(">no_uv<") < page.index(">normal_map<"), "failures first"
    assert "failed: no_uv: capture (input)" in r.stdout


def _done_stages(out: Path) -> dict[str, list[str]]:
    stages = {}
    for state in out.glob("*/state.json"):
        try:
            stages[state.parent.name] = json.loads(state.read_text())["done"]
        except (OSError, ValueError):
            pass
    return stages


def test_a_batch_killed_mid_way_finishes_without_redoing_finished_stages(empty_scene, tmp_path):
    _make_assets(tmp_path / "assets", good=("normal map", "vertex colours", "fine detail"))
    for bad in ("no_uv.blend", "corrupt.glb"):
        (tmp_path / "assets" / bad).unlink()
    out = tmp_path / "out"
    command = [*_groupedit_argv(), "batch", str(tmp_path / "assets"), *SMALL, "--workers", "1", "--out", str(out)]
    batch = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and batch.poll() is None:
        stages = _done_stages(out)
        if any(len(s) == 3 for s in stages.values()) and any(len(s) < 3 for s in stages.values()):
            break
        time.sleep(0.05)
    assert batch.poll() is None, "the batch ended before it could be killed mid-way"
    os.kill(batch.pid, signal.SIGKILL)  # a crash: no clean-up at all
    batch.wait()
    before = _done_stages(out)
    finished = [a for a, s in before.items() if len(s) == 3]
    captured = [a for a, s in before.items() if "capture" in s]
    stamps = {a: (out / a / "views" / "manifest.json").stat().st_mtime_ns for a in captured}
    stamps.update({a + "/bake": (out / a / "result" / "bake.json").stat().st_mtime_ns for a in finished})
    time.sleep(1.5)  # workers of the killed batch are gone (they die with it); nothing may change from now on
    assert stamps == {**{a: (out / a / "views" / "manifest.json").stat().st_mtime_ns for a in captured},
                      **{a + "/bake": (out / a / "result" / "bake.json").stat().st_mtime_ns for a in finished}}

    r = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert {a["id"]: a["status"] for a in report["assets"] if a["id"] in finished} == {a: "skipped" for a in finished}
    assert all(a["status"] in ("done", "skipped") for a in report["assets"]) and len(report["assets"]) == 3
    for a in captured:  # not captured again
        assert (out / a / "views" / "manifest.json").stat().st_mtime_ns == stamps[a]
    for a in finished:  # not baked again
        assert (out / a / "result" / "bake.json").stat().st_mtime_ns == stamps[a + "/bake"]
    assert not list(out.glob("*/*.part"))


def test_ctrl_c_stops_cleanly_and_the_report_says_what_is_unfinished(empty_scene, tmp_path):
    _make_assets(tmp_path / "assets", good=("normal map", "vertex colours"))
    for bad in ("no_uv.blend", "corrupt.glb"):
        (tmp_path / "assets" / bad).unlink()
    out = tmp_path / "out"
    command = [*_groupedit_argv(), "batch", str(tmp_path / "assets"), *SMALL, "--workers", "1", "--out", str(out)]
    # Ctrl-C as a terminal sends it, also where this test runs with SIGINT ignored (a background job of a shell)
    batch = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any("capture" in s for s in _done_stages(out).values()):
        time.sleep(0.05)
    batch.send_signal(signal.SIGINT)
    stdout, stderr = batch.communicate(timeout=120)
    assert batch.returncode == 130, stdout[-2000:] + stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["totals"]["interrupted"] and report["totals"]["unfinished"] >= 1
    assert all(json.loads(p.read_text())["status"] != "running" for p in out.glob("*/state.json"))
    r = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
