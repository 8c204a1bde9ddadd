"""``groupedit dataset``: before/after groups that differ only inside the edited part's masks, exact correspondences,
deterministic from the seed and resumable."""

from __future__ import annotations

import json

import bpy
import numpy as np
import pytest

from blender_addon.core.capture.settings import CaptureSettings
from blender_addon.core.format.viewset import ViewSet

SMALL = CaptureSettings(view_size=64, samples=4)


@pytest.fixture
def assets(empty_scene, tmp_path):
    """A two-material figure (Jacket above, Trousers below) and a one-material sphere, as .blend files."""
    from tests.corpus import _sphere, _textured, two_part_figure

    folder = tmp_path / "assets"
    folder.mkdir()
    two_part_figure()
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "figure.blend"), copy=True)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    _textured(_sphere(), "Body", 128, 3)
    bpy.ops.wm.save_as_mainfile(filepath=str(folder / "ball.blend"), copy=True)
    return [folder / "figure.blend", folder / "ball.blend"]


def _bilinear(image, u, v):
    x, y = u - 0.5, v - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((1 - fx) * (1 - fy) * image[y0, x0] + fx * (1 - fy) * image[y0, x0 + 1]
            + (1 - fx) * fy * image[y0 + 1, x0] + fx * fy * image[y0 + 1, x0 + 1])


def test_groups_differ_only_inside_their_masks_and_reproject_exactly(assets, tmp_path):
    from blender_addon.blender.dataset import make_dataset

    out = tmp_path / "data"
    manifest = make_dataset(assets, out, 6, 3, ["recolour", "finish", "pattern", "material"], 3, SMALL,
                            say=lambda line: None)
    groups = [g for g in manifest["groups"] if "dropped" not in g]
    assert manifest["format"] == "groupedit.dataset" and len(groups) >= 4
    assert {g["edit"]["kind"] for g in groups} >= {"recolour", "material"}, [g["edit"]["kind"] for g in groups]
    for g in groups:
        root = out / g["id"]
        before, after = ViewSet.read(root / "before"), ViewSet.read(root / "after")
        assert (root / "sheet.png").is_file() and json.loads((root / "edit.json").read_text())["id"] == g["id"]
        changed = 0
        for vb, va in zip(before.views, after.views):
            assert np.array_equal(vb.camera.camera_to_world, va.camera.camera_to_world)
            mask = before.load(vb, "region" if "region" in vb.files else "mask")
            diff = np.abs(before.load(vb, "colour").astype(int) - after.load(va, "colour")).max(axis=2)
            assert not diff[~mask].any(), f"{g['id']} {vb.name}: pixels outside the edited part changed"
            changed += int((diff[mask] > 2).sum())
        assert changed > 0 and g["edit"]["instruction"] and g["edit"]["description"]
    # correspondences: a pixel's surface point carried into another view and back lands on its own pixel centre
    vs = ViewSet.read(out / groups[0]["id"] / "before")
    a, b = vs.views[0], vs.views[1]
    mask_a, pos_a, mask_b, pos_b = vs.load(a, "mask"), vs.load(a, "position"), vs.load(b, "mask"), vs.load(b, "position")
    rows, cols = np.nonzero(mask_a)
    uv, z = b.camera.project(pos_a[rows, cols])
    k = b.camera.intrinsics
    inside = (uv[:, 0] > 1.5) & (uv[:, 0] < k.width - 1.5) & (uv[:, 1] > 1.5) & (uv[:, 1] < k.height - 1.5)
    x0, y0 = np.floor(uv[inside, 0] - 0.5).astype(int), np.floor(uv[inside, 1] - 0.5).astype(int)
    taps = mask_b[y0, x0] & mask_b[y0 + 1, x0] & mask_b[y0, x0 + 1] & mask_b[y0 + 1, x0 + 1]
    back_pos = _bilinear(pos_b.astype(np.float64), uv[inside][taps, 0], uv[inside][taps, 1])
    depth_ok = np.abs((back_pos - b.camera.centre) @ b.camera.forward - z[inside][taps]) < 0.01  # not occluded
    back, _ = a.camera.project(back_pos[depth_ok])
    centres = np.stack([cols[inside][taps][depth_ok] + 0.5, rows[inside][taps][depth_ok] + 0.5], axis=1)
    error = np.linalg.norm(back - centres, axis=1)
    assert len(error) > 100 and np.percentile(error, 95) < 0.5, np.percentile(error, [50, 95, 99])


def test_the_same_seed_makes_the_same_dataset_and_a_rerun_resumes(assets, tmp_path):
    from blender_addon.blender.dataset import make_dataset
    from blender_addon.core.errors import InvalidInputError

    first = make_dataset(assets, tmp_path / "a", 2, 11, ["recolour"], 2, SMALL, say=lambda line: None)
    second = make_dataset(assets, tmp_path / "b", 2, 11, ["recolour"], 2, SMALL, say=lambda line: None)
    strip = lambda m: [{k: v for k, v in g.items() if k != "asset"} for g in m["groups"]]  # noqa: E731
    assert strip(first) == strip(second)
    stamp = {g["id"]: (tmp_path / "a" / g["id"] / "edit.json").stat().st_mtime_ns for g in first["groups"]}
    more = make_dataset(assets, tmp_path / "a", 3, 11, ["recolour"], 2, SMALL, say=lambda line: None)
    assert len(more["groups"]) == 3
    assert all((tmp_path / "a" / i / "edit.json").stat().st_mtime_ns == t for i, t in stamp.items())
    with pytest.raises(InvalidInputError, match="same ones to resume"):
        make_dataset(assets, tmp_path / "a", 3, 12, ["recolour"], 2, SMALL, say=lambda line: None)
