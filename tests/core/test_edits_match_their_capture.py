"""A bake takes only edits of its own capture: the same view names, every one, each at its view's size."""

import numpy as np
import pytest

from blender_addon.core.bake.restyle import load_edited
from blender_addon.core.errors import ViewSetFormatError
from blender_addon.core.format.cameras import Camera, Intrinsics, look_at
from blender_addon.core.format.images import write_png
from blender_addon.core.format.viewset import View, ViewSet, write_view_files


def make_viewset(root, n: int, size: int) -> ViewSet:
    views = []
    for i in range(n):
        files = write_view_files(root, f"view_{i:03d}", {"colour": np.zeros((size, size, 3), np.uint8),
                                                          "mask": np.ones((size, size), bool)})
        camera = Camera(Intrinsics.from_fov(40, size, size), look_at(np.array([0.0, -3.0, float(i)]), np.zeros(3)))
        views.append(View(f"view_{i:03d}", camera, files))
    vs = ViewSet(root=root, object_name="Thing", views=views)
    vs.write_manifest()
    return vs


def test_edits_of_another_capture_are_refused(tmp_path):
    vs = make_viewset(tmp_path, n=2, size=32)
    edited = tmp_path / "edited"
    edited.mkdir()
    for v in vs.views:
        write_png(edited / f"{v.name}.png", np.full((32, 32, 3), 100, np.uint8))
    assert [e.shape for e in load_edited(vs)] == [(32, 32, 3)] * 2
    write_png(edited / "view_009.png", np.zeros((32, 32, 3), np.uint8))
    with pytest.raises(ViewSetFormatError, match="views this capture does not have \\(view_009\\)"):
        load_edited(vs)
    (edited / "view_009.png").unlink()
    write_png(edited / "view_001.png", np.zeros((48, 32, 3), np.uint8))
    with pytest.raises(ViewSetFormatError, match="32x48 but view view_001 was captured at 32x32"):
        load_edited(vs)
    (edited / "view_001.png").unlink()
    with pytest.raises(ViewSetFormatError, match="view_001.png is missing"):
        load_edited(vs)
