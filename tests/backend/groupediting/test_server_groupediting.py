"""The groupediting editor end to end: the real server over HTTP, loading a tiny model directory from disk.

The model directory is laid out like ``Wan2.1-VACE-*-diffusers`` (tiny random components saved with
``save_pretrained``) and the GroupEditing weights are a file in our own format; nothing is mocked.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from backend.editors.base import EditInput
from backend.editors.groupediting_editor import GroupEditingEditor
from backend.errors import InvalidInput
from backend.groupediting.weights import save_groupedit_weights

from ..server import Server, png
from .scene import SceneViews, sphere_views
from .tiny import moving_group, save_tiny_model_dir, save_tiny_vggt, tiny_transformer

SIZE, VIEWS = 64, 3
BUDGET = VIEWS * SIZE * SIZE
INSTRUCTION = "make the object red"


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(model_dir, weights): the tiny directory and a GroupEditing weights file (our format, other VACE weights)."""
    root = save_tiny_model_dir(tmp_path_factory.mktemp("Wan2.1-VACE-tiny-diffusers"))
    weights = save_groupedit_weights(tiny_transformer(seed=3), root.parent / "groupedit-tiny.safetensors")
    return root, weights


@pytest.fixture(scope="module")
def server(model_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    model_dir, weights = model_files
    s = Server(tmp_path_factory.mktemp("data"), "groupediting", "--model-dir", str(model_dir), "--weights",
               str(weights), "--device", "cpu", "--threads", "1", "--steps", "2", "--pixel-budget", str(BUDGET))
    s.start()
    s.wait_ready(timeout=120)
    s.health()
    yield s
    s.kill()


def geometry_job(scene: SceneViews, options: dict | None = None, cameras: bool = True,
                 positions: bool = True) -> tuple[dict, dict]:
    """(data, files) for requests.post: the scene's views with cameras and position passes (as .npy)."""
    files, views = {}, []
    for i, (img, m, pos, (k, c2w)) in enumerate(zip(scene.images, scene.masks, scene.positions, scene.cameras)):
        files[f"image_{i}"] = (f"{i}.png", png(img), "image/png")
        files[f"mask_{i}"] = (f"{i}m.png", png(m.astype(np.uint8) * 255), "image/png")
        view = {"name": f"view_{i:03d}", "image": f"image_{i}", "mask": f"mask_{i}"}
        if cameras:
            view["camera"] = {"K": k.tolist(), "camera_to_world": c2w.tolist()}
        if positions:
            buf = io.BytesIO()
            np.save(buf, pos)
            files[f"position_{i}"] = (f"{i}.npy", buf.getvalue(), "application/octet-stream")
            view["geometry"] = {"position": f"position_{i}"}
        views.append(view)
    manifest = {"instruction": INSTRUCTION, "options": options or {}, "views": views}
    return {"manifest": json.dumps(manifest)}, files


def dilate_square(mask: np.ndarray, r: int) -> np.ndarray:
    """``mask`` grown by a (2r+1)^2 square (a superset of the editor's disk of radius r)."""
    out = mask.copy()
    h, w = mask.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] |= \
                mask[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_http_job_with_cameras_and_positions_gives_edited_views(server: Server) -> None:
    health = server.health()
    assert health["status"] == "ready"
    editor = health["editor"]
    assert editor["name"] == "groupediting" and editor["weights"].endswith("groupedit-tiny.safetensors")
    assert editor["device"] == "cpu" and editor["dtype"] == "float32" and editor["geometry_passes"] == ["position"]
    scene = sphere_views(VIEWS, SIZE)
    data, files = geometry_job(scene)
    r = requests.post(server.url + "/v1/jobs", data=data, files=files, timeout=30)
    assert r.status_code == 202, r.text
    job = server.wait_state(r.json()["id"], ("succeeded", "failed"), timeout=120)
    assert job["state"] == "succeeded", job
    staged = server.data_dir / "jobs" / job["id"] / "inputs"
    assert (staged / "cameras.json").is_file() and (staged / "002_position.npy").is_file()
    stream = requests.get(f"{server.url}/v1/jobs/{job['id']}/events", timeout=30).text
    steps = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: ")]
    assert [(d["step"], d["total"]) for d in steps if d.get("stage") == "denoise"] == [(1, 2), (2, 2)]
    previews = [d for d in steps if "url" in d]
    assert previews and all(1 <= d["step"] <= 2 for d in previews), "live latent previews were sent"
    sheet = requests.get(server.url + previews[-1]["url"], timeout=30)
    assert sheet.status_code == 200 and sheet.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(sheet.content)).size == (previews[-1]["width"], previews[-1]["height"])
    for i in range(VIEWS):
        res = requests.get(f"{server.url}/v1/jobs/{job['id']}/results/{i}", timeout=30)
        assert res.status_code == 200 and res.headers["content-type"] == "image/png"
        out = np.asarray(Image.open(io.BytesIO(res.content)))
        assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8
        keep = ~dilate_square(scene.masks[i], 10)  # dilation 5 and the default feather band of 4
        assert keep.sum() > SIZE * SIZE // 6
        assert np.array_equal(out[keep], scene.images[i][keep]), "pixels beyond the feather band are unchanged"
        assert not np.array_equal(out[scene.masks[i]], scene.images[i][scene.masks[i]]), "the masked region changed"
    assert requests.get(f"{server.url}/v1/jobs/{job['id']}/results/{VIEWS}", timeout=5).status_code == 404
    result = server.job(job["id"])["result"]
    assert result["preset"] == "release" and result["settings"]["steps"] == 2
    assert result["text"]["prompt"] == "same red object in three scenes."
    assert result["ge_rope"]["flow_source"] == "contours" and result["geometry_tokens"] == "off"
    assert health["editor"]["geometry_tokens"] == "off" and health["editor"]["preset"] == "release"


def test_cancel_mid_denoise_over_http(server: Server) -> None:
    data, files = geometry_job(sphere_views(2, SIZE), options={"steps": 1000})
    job_id = requests.post(server.url + "/v1/jobs", data=data, files=files, timeout=30).json()["id"]
    end = time.time() + 60
    while time.time() < end:
        progress = server.job(job_id).get("progress") or {}
        if progress.get("stage") == "denoise" and progress["step"] >= 2:
            break
        time.sleep(0.02)
    assert progress.get("stage") == "denoise" and progress["total"] == 1000
    assert requests.post(f"{server.url}/v1/jobs/{job_id}/cancel", timeout=5).status_code == 200
    job = server.wait_state(job_id, ("cancelled", "succeeded", "failed"), timeout=60)
    assert job["state"] == "cancelled" and job["progress"]["step"] < 1000
    assert requests.get(f"{server.url}/v1/jobs/{job_id}/results/0", timeout=5).status_code == 404
    assert not (server.data_dir / "jobs" / job_id / "results").exists()
    assert server.health()["status"] == "ready"


Mutation = Callable[[dict, dict], None]


def _mutations() -> list[tuple[str, Mutation]]:
    def view(i: int, key: str, value: object) -> Mutation:  # sets manifest views[i][key]
        return lambda m, f: m["views"][i].__setitem__(key, value)

    k, c2w = sphere_views(1, SIZE).cameras[0]
    bad_rot = c2w.copy()
    bad_rot[:3, :3] *= 2.0
    nan_k = k.copy()
    nan_k[0, 2] = np.nan
    return [
        ("K must be 3x3", view(0, "camera", {"K": [[1, 0], [0, 1]], "camera_to_world": c2w.tolist()})),
        ("holds NaN", view(0, "camera", {"K": nan_k.tolist(), "camera_to_world": c2w.tolist()})),
        ("rigid transform", view(1, "camera", {"K": k.tolist(), "camera_to_world": bad_rot.tolist()})),
        ("'K' (3x3) and 'camera_to_world'", view(0, "camera", {"K": k.tolist()})),
        ("for some views but not for views [1]", lambda m, f: m["views"][1].pop("camera")),
        ("unknown geometry pass 'depth'", view(0, "geometry", {"depth": "position_0"})),
        ("must be uploaded", view(0, "geometry", {"position": "nowhere"})),
        ("must have shape", lambda m, f: f.update(position_1=("p.npy", _npy(np.zeros((8, 8, 3), np.float32)), "x"))),
        ("not a readable .npy", lambda m, f: f.update(position_1=("p.npy", b"junk", "x"))),
        ("non-finite values", lambda m, f: f.update(position_0=("p.npy", _npy(np.full((SIZE, SIZE, 3), np.inf,
                                                                                        np.float32)), "x"))),
    ]


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


@pytest.mark.parametrize("message,mutate", _mutations(), ids=[m for m, _ in _mutations()])
def test_bad_cameras_and_passes_are_400(server: Server, message: str, mutate: Mutation) -> None:
    data, files = geometry_job(sphere_views(2, SIZE))
    manifest = json.loads(data["manifest"])
    mutate(manifest, files)
    r = requests.post(server.url + "/v1/jobs", data={"manifest": json.dumps(manifest)}, files=files, timeout=30)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "invalid_input" and message in err["message"], err


def test_exact_preset_uses_positions_and_falls_back_to_contours_without_them(server: Server) -> None:
    for cameras, source in ((True, "positions"), (False, "contours")):
        data, files = geometry_job(sphere_views(2, SIZE), {"preset": "exact"}, cameras=cameras, positions=cameras)
        job_id = requests.post(server.url + "/v1/jobs", data=data, files=files, timeout=30).json()["id"]
        job = server.wait_state(job_id, ("succeeded", "failed"), timeout=120)
        assert job["state"] == "succeeded", job
        assert job["result"]["preset"] == "exact" and job["result"]["ge_rope"]["flow_source"] == source


def photo_job(images: list[np.ndarray], masks: list[np.ndarray], tokens: np.ndarray | None = None,
              **manifest: object) -> tuple[dict, dict]:
    """(data, files) of a job as another tool sends it: images and masks only (optionally release tokens)."""
    files = {}
    for i, (img, m) in enumerate(zip(images, masks)):
        files[f"image_{i}"] = (f"{i}.png", png(img), "image/png")
        files[f"mask_{i}"] = (f"{i}m.png", png(m.astype(np.uint8) * 255), "image/png")
    views = [{"name": f"photo_{i}", "image": f"image_{i}", "mask": f"mask_{i}"} for i in range(len(images))]
    if tokens is not None:
        files["tokens"] = ("351-origin_aggregated_tokens.npy", _npy(tokens), "application/octet-stream")
        manifest["geometry_tokens"] = "tokens"
    return {"manifest": json.dumps({"instruction": INSTRUCTION, "views": views, **manifest})}, files


@pytest.mark.slow
def test_photo_job_gets_ge_rope_and_geometry_tokens_with_vggt(model_files: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    """A job with no cameras and no position pass (photos): Ge-RoPE from the mask contours moves tokens, and the
    server's VGGT makes geometry tokens; a description given with the job is the prompt's."""
    model_dir, weights = model_files
    vggt = save_tiny_vggt(tmp_path / "VGGT-1B" / "model.safetensors")
    s = Server(tmp_path / "data", "groupediting", "--model-dir", str(model_dir), "--weights", str(weights),
               "--vggt", str(vggt.parent), "--device", "cpu", "--threads", "1", "--steps", "1",
               "--pixel-budget", str(2 * 528 * 528))
    s.start()
    try:
        health = s.wait_ready(timeout=120)
        assert health["editor"]["geometry_tokens"] == "vggt"
        images, masks = moving_group(2, 528, 96)
        data, files = photo_job(images, masks, description="robotic fox with armour plates", subject="SM_Fox.001")
        job = s.wait_state(requests.post(s.url + "/v1/jobs", data=data, files=files, timeout=30).json()["id"],
                           ("succeeded", "failed"), timeout=120)
        assert job["state"] == "succeeded", job
        result = job["result"]
        assert result["ge_rope"]["flow_source"] == "contours" and result["ge_rope"]["tokens_moved"] > 20
        assert result["geometry_tokens"] == "vggt"
        assert result["text"]["prompt"] == "same robotic fox with armour plates in two scenes."
        assert result["text"]["description_source"] == "given" and result["text"]["subject"] == "fox"
    finally:
        s.kill()


def test_release_token_files_are_accepted_with_a_job(server: Server) -> None:
    """The release's ``*_aggregated_tokens.npy`` (1, N, 1374, C) rides along with a job; bad shapes are 400."""
    scene = sphere_views(2, SIZE)
    tokens = np.random.default_rng(0).normal(size=(1, 2, 1374, 16)).astype(np.float32)
    data, files = photo_job(scene.images, scene.masks, tokens)
    job = server.wait_state(requests.post(server.url + "/v1/jobs", data=data, files=files, timeout=30).json()["id"],
                            ("succeeded", "failed"), timeout=120)
    assert job["state"] == "succeeded" and job["result"]["geometry_tokens"] == "job"
    staged = np.load(server.data_dir / "jobs" / job["id"] / "inputs" / "geometry_tokens.npy")
    assert np.array_equal(staged, tokens[0, :, 5:].reshape(2 * 1369, 16))  # the 5 special tokens dropped
    for bad, message in ((tokens[:, :1], "do not fit 2 views"), (tokens.astype(np.int32), "finite floats")):
        data, files = photo_job(scene.images, scene.masks, bad)
        r = requests.post(server.url + "/v1/jobs", data=data, files=files, timeout=30)
        assert r.status_code == 400 and message in r.json()["error"]["message"], r.text


@pytest.mark.slow
def test_missing_model_dir_fails_load_and_jobs(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    s = Server(tmp_path / "data", "groupediting", "--model-dir", str(missing), "--device", "cpu")
    s.start(wait=False)
    try:
        end = time.time() + 90
        health: dict = {}
        while time.time() < end:
            try:
                health = s.health()
                if health["status"] == "failed":
                    break
            except requests.RequestException:
                pass
            time.sleep(0.1)
        assert health["status"] == "failed", health
        assert str(missing) in health["load_error"] and "docs/models.md" in health["load_error"]
        assert health["load_error"].startswith("ModelNotReady")
        data, files = geometry_job(sphere_views(1, SIZE))
        r = requests.post(s.url + "/v1/jobs", data=data, files=files, timeout=30)
        assert r.status_code == 202
        job = s.wait_state(r.json()["id"], ("failed", "succeeded"), timeout=30)
        assert job["state"] == "failed" and job["error"]["code"] == "model_not_ready"
        assert "docs/models.md" in job["error"]["message"] and "restart" in job["error"]["message"]
        assert s.health()["status"] == "failed", "the server still answers"
    finally:
        s.kill()


def test_editor_is_deterministic_and_uses_geometry(model_files: tuple[Path, Path]) -> None:
    model_dir, weights = model_files
    editor = GroupEditingEditor(model_dir=model_dir, weights=weights, device="cpu", steps=2, pixel_budget=BUDGET)
    assert GroupEditingEditor(model_dir=model_dir, weights=weights, device="cpu").pipeline is editor.pipeline, "cached"
    scene = sphere_views(VIEWS, SIZE)
    group = EditInput(scene.images, scene.masks, geometry={"position": scene.positions}, cameras=scene.cameras)
    seen: list[tuple[str, int, int]] = []

    def run(g: EditInput, **options: object) -> list[np.ndarray]:
        return editor.edit(g, INSTRUCTION, dict(options), lambda *a: seen.append(a), lambda: False).images

    a, b = run(group, seed=5, preset="exact"), run(group, seed=5, preset="exact")
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert [s for s in seen if s[0] == "denoise"] == [("denoise", 1, 2), ("denoise", 2, 2)] * 2
    c = run(group, seed=6, preset="exact")
    assert any(not np.array_equal(x, y) for x, y in zip(a, c)), "another seed, another edit"
    grid = run(group, seed=5, preset="grid")
    assert any(not np.array_equal(x, y) for x, y in zip(a, grid)), "Ge-RoPE from the geometry changes the edit"
    with pytest.raises(InvalidInput, match="unknown option"):
        run(group, stepz=3)


def test_addon_client_sends_cameras_and_positions(server: Server, tmp_path: Path) -> None:
    from blender_addon.core.format.cameras import Camera, Intrinsics
    from blender_addon.core.client.api import BackendClient, JobPoller
    from blender_addon.core.format.viewset import View, ViewSet, write_view_files

    scene = sphere_views(2, SIZE)
    views = []
    for i, (img, m, pos, (k, c2w)) in enumerate(zip(scene.images, scene.masks, scene.positions, scene.cameras)):
        files = write_view_files(tmp_path, f"view_{i:03d}", {"colour": img, "mask": m, "position": pos})
        intrinsics = Intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], SIZE, SIZE)
        views.append(View(f"view_{i:03d}", Camera(intrinsics, c2w), files))
    viewset = ViewSet(root=tmp_path, object_name="Sphere", views=views)
    viewset.write_manifest()
    client = BackendClient(server.url)
    assert client.geometry_passes() == ["position"]
    poller = JobPoller(client, viewset, INSTRUCTION)
    end = time.time() + 120
    while not poller.step().finished and time.time() < end:
        time.sleep(0.05)
    assert poller.status.state == "done", poller.status
    staged = server.data_dir / "jobs" / poller.status.job_id / "inputs"
    assert np.array_equal(np.load(staged / "001_position.npy"), scene.positions[1])
    cameras = json.loads((staged / "cameras.json").read_text())
    assert np.allclose(cameras["camera_to_world"][1], scene.cameras[1][1])
    assert np.allclose(cameras["K"][0], scene.cameras[0][0])
    assert (tmp_path / "edited" / "view_001.png").is_file()
    assert poller.status.prompt == "same red sphere in two scenes."  # "the object" is the ViewSet's Sphere
    assert "the model was told: 'same red sphere in two scenes.'" in poller.status.message
    record = json.loads((tmp_path / "edited" / "edit.json").read_text())
    assert record["result"]["preset"] == "release" and record["result"]["text"]["subject"] == "sphere"
    cli = subprocess.run([sys.executable, "-m", "blender_addon.cli", "edit", "--views", str(tmp_path), "--instruction",
                          INSTRUCTION, "--description", "glossy red ball", "--option", "preset=exact", "--option",
                          "steps=1", "--server", server.url],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]
    assert "the model was told: 'same glossy red ball in two scenes.'" in cli.stdout
    assert (tmp_path / "edited.1" / "view_000.png").is_file()  # the first edit is kept
    again = json.loads((tmp_path / "edited" / "edit.json").read_text())["result"]
    assert again["preset"] == "exact" and again["settings"]["steps"] == 1
    bad = subprocess.run([sys.executable, "-m", "blender_addon.cli", "edit", "--views", str(tmp_path), "--instruction",
                          INSTRUCTION, "--option", "stepz=3", "--server", server.url],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unknown option(s) stepz" in bad.stderr
