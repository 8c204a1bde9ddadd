"""Exports for downstream tools, read back by their own readers where one installs (pycolmap), and the consistency
score: an identity edit scores its ceiling, a per-view recolour far lower, two swapped views are found."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from blender_addon.core.consistency import viewset_consistency
from blender_addon.core.export.colmap import export_colmap
from blender_addon.core.export.must3r import export_must3r
from blender_addon.core.export.nerfstudio import export_nerfstudio
from blender_addon.core.export.views import export_images, prepare_out
from blender_addon.core.format.images import read_png, write_png
from blender_addon.core.format.viewset import ViewSet


@pytest.fixture(scope="module")
def captured(tmp_path_factory):
    """A colour-attribute sphere (diffuse) from a 6-view rig at 96 px."""
    from blender_addon.blender.capture.render import capture
    from blender_addon.core.capture.rigs import RigSpec
    from blender_addon.core.capture.settings import CaptureSettings
    from tests.corpus import build

    obj = build("vertex colours")
    return capture(obj, RigSpec(kind="orbit-poles", count=6), CaptureSettings(view_size=96, samples=8),
                   tmp_path_factory.mktemp("exports") / "views")


def test_colmap_export_reads_back_with_pycolmap(captured, tmp_path):
    import pycolmap

    vs = captured
    export_colmap(vs, export_images(vs, None), tmp_path)
    rec = pycolmap.Reconstruction(str(tmp_path / "sparse" / "0"))
    by_name = {img.name: img for img in rec.images.values()}
    assert sorted(by_name) == sorted(f"{v.name}.png" for v in vs.views)
    for v in vs.views:
        img = by_name[f"{v.name}.png"]
        cam = rec.cameras[img.camera_id]
        k = v.camera.intrinsics
        assert (cam.width, cam.height) == (k.width, k.height)
        np.testing.assert_allclose(cam.params, [k.fx, k.fy, k.cx, k.cy], atol=1e-6)
        np.testing.assert_allclose(img.projection_center(), v.camera.centre, atol=1e-6)
        np.testing.assert_allclose(img.cam_from_world().matrix(), v.camera.world_to_camera[:3], atol=1e-6)
        assert (tmp_path / "images" / img.name).is_file()


def test_nerfstudio_frames_are_the_opengl_poses(captured, tmp_path):
    vs = captured
    export_nerfstudio(vs, export_images(vs, None), tmp_path, masks=True, depth=True)
    doc = json.loads((tmp_path / "transforms.json").read_text())
    assert len(doc["frames"]) == len(vs.views)
    for v, frame in zip(vs.views, doc["frames"]):
        assert frame["file_path"] == f"images/{v.name}.png" and (tmp_path / frame["file_path"]).is_file()
        assert np.array_equal(np.array(frame["transform_matrix"]), v.camera.camera_to_world_opengl)
        k = v.camera.intrinsics
        assert (frame["fl_x"], frame["fl_y"], frame["cx"], frame["cy"], frame["w"], frame["h"]) == \
            (k.fx, k.fy, k.cx, k.cy, k.width, k.height)
        assert np.array_equal(read_png(tmp_path / frame["mask_path"])[..., 0] > 127, vs.load(v, "mask"))
        assert np.array_equal(np.load(tmp_path / frame["depth_file_path"]), vs.load(v, "depth"))


def test_must3r_folder_holds_only_4_3_images_with_their_exact_cameras(captured, tmp_path):
    vs = captured
    export_must3r(vs, export_images(vs, None), tmp_path)
    files = sorted(p.name for p in (tmp_path / "images").iterdir())
    assert files == [f"{v.name}.png" for v in vs.views], "only the images, in rig order"
    cameras = json.loads((tmp_path / "cameras.json").read_text())["views"]
    for v in vs.views:
        image = read_png(tmp_path / "images" / f"{v.name}.png")
        assert image.shape[2] == 3 and image.shape[1] * 3 == image.shape[0] * 4, image.shape
        cam = cameras[v.name]
        mask, position = vs.load(v, "mask"), vs.load(v, "position")
        rows, cols = np.nonzero(mask)
        pick = len(rows) // 2
        point = position[rows[pick], cols[pick]].astype(np.float64)  # a known surface point
        c2w = np.array(cam["camera_to_world"])
        pc = np.linalg.inv(c2w)[:3] @ np.append(point, 1.0)
        uv = (np.array(cam["K"]) @ (pc / pc[2]))[:2]
        pad = cam["padding"]
        expected = np.array([cols[pick] + 0.5 + pad["left"], rows[pick] + 0.5 + pad["top"]])
        assert np.abs(uv - expected).max() < 1e-2, (uv, expected)
        j, i = np.floor(uv).astype(int)
        assert np.array_equal(image[i, j], vs.load(v, "colour")[rows[pick], cols[pick], :3])
    assert "get_reconstruction.py" in (tmp_path / "README.md").read_text()


def test_exports_refuse_a_used_folder_and_an_incomplete_edit(captured, tmp_path):
    from blender_addon.core.errors import InvalidInputError

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("mine")
    with pytest.raises(InvalidInputError, match="not empty"):
        prepare_out(tmp_path / "used")
    with pytest.raises(InvalidInputError, match="does not exist"):
        export_images(captured, "no_such_edit")


def _edit(vs: ViewSet, folder: str, images: list[np.ndarray]) -> None:
    (vs.root / folder).mkdir(exist_ok=True)
    for v, image in zip(vs.views, images):
        write_png(vs.root / folder / f"{v.name}.png", image)


def test_the_score_finds_inconsistent_edits(captured):
    vs = captured
    colour = export_images(vs, None)
    ceiling, _ = viewset_consistency(vs, colour)
    assert ceiling.consistency_db > 20.0, ceiling.lines()  # lit views: highlights move, resampling blurs
    _edit(vs, "identity", colour)
    identity, _ = viewset_consistency(vs, export_images(vs, "identity"))
    assert identity.consistency_db == ceiling.consistency_db
    # one consistent recolour (the same channel swap everywhere) against a different random recolour per view
    consistent = [c[..., [2, 0, 1]] for c in colour]
    rng = np.random.default_rng(0)
    random = [np.clip(c.astype(int) * rng.uniform(0.5, 1.5, 3) + rng.integers(-40, 40, 3), 0, 255).astype(np.uint8)
              for c in colour]
    good, _ = viewset_consistency(vs, consistent)
    bad, _ = viewset_consistency(vs, random)
    assert good.consistency_db > ceiling.consistency_db - 3.0
    assert bad.consistency_db < good.consistency_db - 10.0, (good.consistency_db, bad.consistency_db)
    # from the texture's side: the views' samples of each texel lie far apart only for the random recolour
    from blender_addon.core.consistency import texel_spread

    spread = {name: texel_spread(vs, images) for name, images in (("capture", colour), ("good", consistent),
                                                                  ("bad", random))}
    assert spread["good"] < spread["capture"] + 1.0 and spread["bad"] > 3 * spread["good"], spread
    # two views swapped: the pairs that hold either score worst
    swapped = list(colour)
    swapped[1], swapped[3] = swapped[3], swapped[1]
    report, images = viewset_consistency(vs, swapped)
    assert report.consistency_db < ceiling.consistency_db - 5.0
    worst = min((p for p in report.pairs if p.pixels), key=lambda p: p.psnr_db)
    assert {vs.views[1].name, vs.views[3].name} & {worst.a, worst.b}
    assert len(images) == len(vs.views) * (len(vs.views) - 1) // 2
    shutil.rmtree(vs.root / "identity")


@pytest.mark.slow
def test_export_and_score_on_the_command_line(captured, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("groupedit")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "blender_addon.cli"]
    vs = captured
    _edit(vs, "edited", [c[..., [1, 2, 0]] for c in export_images(vs, None)])
    try:
        r = subprocess.run([*cmd, "export", str(vs.root), "--format", "colmap", "--edited", "--out",
                            str(tmp_path / "colmap")], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0 and "colmap: 6 edited views" in r.stdout, r.stderr[-2000:]
        assert np.array_equal(read_png(tmp_path / "colmap" / "images" / "view_002.png")[..., :3],
                              read_png(vs.root / "edited" / "view_002.png")[..., :3])
        r = subprocess.run([*cmd, "score", str(vs.root), "--edited", "--json", str(tmp_path / "score.json"),
                            "--images", str(tmp_path / "pairs")], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        score = json.loads((tmp_path / "score.json").read_text())
        assert score["consistency_db"] > 20.0 and score["capture_consistency_db"] > 20.0 and score["edited"] == "edited"
        assert 0.0 < score["texel_spread"] < 20.0
        assert len(list((tmp_path / "pairs").glob("view_000~view_*.png"))) == 5
        r = subprocess.run([*cmd, "export", str(vs.root), "--format", "must3r", "--masks", "--out",
                            str(tmp_path / "m")], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2 and "for --format nerfstudio" in r.stderr
    finally:
        shutil.rmtree(vs.root / "edited")
