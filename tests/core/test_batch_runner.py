"""The batch scheduler without Blender: manifests, resume bookkeeping, and failures with their categories, retries
and reasons, with worker commands that fail in known ways."""

import json
import sys
from pathlib import Path

import pytest

from blender_addon.core.batch.manifest import BatchItem, batch_items, expand_assets, read_manifest
from blender_addon.core.batch.report import write_report
from blender_addon.core.batch.runner import BatchRunner, BatchSettings
from blender_addon.core.batch.state import AssetState
from blender_addon.core.errors import InvalidInputError

DEAD_SERVER = "http://127.0.0.1:9"


def _assets(tmp_path, names=("a.glb", "b.blend")):
    folder = tmp_path / "assets"
    (folder / "sub").mkdir(parents=True)
    for n in names:
        (folder / "sub" / n).write_bytes(b"x")
    (folder / "notes.txt").write_text("not an asset")
    return folder


def test_assets_from_folders_globs_and_a_manifest(tmp_path):
    folder = _assets(tmp_path)
    assert [p.name for p in expand_assets([str(folder)])] == ["a.glb", "b.blend"]
    assert [p.name for p in expand_assets([str(folder / "sub" / "*.glb")])] == ["a.glb"]
    with pytest.raises(InvalidInputError, match="names no asset"):
        expand_assets([str(folder / "*.fbx")])
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('# a comment\n{"asset": "assets/sub/a.glb", "instruction": "red", "options": {"views": 4}}\n\n'
                        '{"asset": "assets/sub/b.blend", "region": "material:Seat", "seed": 3}\n')
    items = batch_items([str(folder / "sub" / "a.glb")], manifest,
                        {"instruction": "blue", "options": {"views": 8, "samples": 4}})
    assert [(i.id, i.instruction, i.region, i.seed) for i in items] == [
        ("a", "red", None, None), ("b", "blue", "material:Seat", 3), ("a-2", "blue", None, None)]
    assert items[0].options == {"views": 4, "samples": 4} and items[0].flags() == ["--views", "4", "--samples", "4"]


@pytest.mark.parametrize("line, message", [
    ("not json", "line 1: not JSON"),
    ('{"path": "a.glb"}', 'with an "asset" path'),
    ('{"asset": "a.glb", "colour": "red"}', "unknown key.*colour"),
    ('{"asset": "a.glb", "options": 3}', '"options" is an object'),
])
def test_bad_manifest_lines_are_named(tmp_path, line, message):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(line + "\n")
    with pytest.raises(InvalidInputError, match=message):
        read_manifest(manifest)


def test_an_asset_without_an_instruction_is_refused(tmp_path):
    with pytest.raises(InvalidInputError, match="no instruction"):
        batch_items([str(_assets(tmp_path))], None, {})


def _run(tmp_path, code: str, retries: int = 1, fail_fast: bool = False):
    items = batch_items([str(_assets(tmp_path))], None, {"instruction": "red"})
    worker = [sys.executable, "-c", code]
    settings = BatchSettings(tmp_path / "out", [DEAD_SERVER], worker, workers=2, retries=retries, fail_fast=fail_fast,
                             progress=lambda line: None)
    return BatchRunner(items, settings).run()


def test_a_crashing_worker_is_retried_then_reported_and_never_stops_the_others(tmp_path):
    """Every capture process kills itself: each asset is tried 1 + retries times, then failed as a crash with the
    signal named; both assets get there (one failure does not stop the other); the report names both."""
    result = _run(tmp_path, "import os, signal; print('rendering'); os.kill(os.getpid(), signal.SIGKILL)", retries=2)
    assert [s.status for s in result.states] == ["failed", "failed"]
    for s in result.states:
        assert s.attempts == 3 and s.error["stage"] == "capture" and s.error["category"] == "crash"
        assert "killed by signal 9" in s.error["reason"] and s.done == []
    report = write_report(result, tmp_path / "out")
    assert report["totals"]["failed"] == 2
    page = (tmp_path / "out" / "index.html").read_text()
    assert all(f">{s.id}<" in page for s in result.states) and "killed by signal 9" in page


def test_bad_input_is_not_retried_and_its_error_line_is_the_reason(tmp_path):
    code = "import sys; print('groupedit: error: the file is not a glTF', file=sys.stderr); sys.exit(2)"
    result = _run(tmp_path, code, retries=3)
    assert all(s.attempts == 1 and s.error == {"stage": "capture", "category": "input",
                                                "reason": "the file is not a glTF"} for s in result.states)


def test_fail_fast_stops_at_the_first_failure(tmp_path):
    result = _run(tmp_path, "import sys; sys.exit(3)", fail_fast=True)
    assert result.stopped_early and sum(s.status == "failed" for s in result.states) >= 1


def test_state_is_written_whole_and_a_stage_counts_only_with_its_outputs(tmp_path):
    """A state that says "captured" while the views are gone (a crash between two writes, a folder deleted by hand)
    starts that stage again; a state of another asset under the same name is not taken."""
    folder = tmp_path / "out" / "a"
    AssetState("a", "/x/a.glb", status="done", done=["capture", "edit", "bake"]).save(folder)
    assert json.loads((folder / "state.json").read_text())["done"] == ["capture", "edit", "bake"]
    assert not (folder / "state.json.part").exists()
    assert AssetState.load(folder, "a", "/elsewhere/a.glb").done == []
    state = AssetState.load(folder, "a", "/x/a.glb")
    (folder / "views.part").mkdir()
    runner = BatchRunner([BatchItem(Path("/x/a.glb"), "a", "red")],
                         BatchSettings(tmp_path / "out", [DEAD_SERVER], ["true"], progress=lambda line: None))
    runner._reconcile(runner.items[0], state)
    assert state.done == [] and state.status == "pending" and not (folder / "views.part").exists()


def test_edits_spread_over_servers_and_a_resumed_job_stays_on_its_server(tmp_path):
    from blender_addon.core.batch.runner import ServerEdits

    from .test_viewset import _write_small_viewset

    vs, _ = _write_small_viewset(tmp_path / "views")
    edits = ServerEdits(["http://127.0.0.1:9", "http://127.0.0.1:10"])
    item = BatchItem(Path("/x/a.glb"), "a", "red")
    first, second = (edits.start(item, vs.root, f"key{i}", None) for i in range(2))
    assert {first.server, second.server} == {"http://127.0.0.1:9", "http://127.0.0.1:10"}
    assert edits.capacity == 16 and edits.load == {"http://127.0.0.1:9": 1, "http://127.0.0.1:10": 1}
    resumed = edits.start(item, vs.root, "key0", "job-7", "http://127.0.0.1:10")
    assert resumed.server == "http://127.0.0.1:10" and resumed.poller.status.job_id == "job-7"
    first.stop()
    assert edits.load["http://127.0.0.1:9"] == 0
    gone = edits.start(item, vs.root, "key1", "job-8", "http://127.0.0.1:99")  # a server no longer given
    assert gone.poller.status.state == "submitting" and gone.server == "http://127.0.0.1:9"
