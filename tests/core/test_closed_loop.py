"""The closed loop's numbers: PSNR on object pixels per view and overall, error images, refusals."""

import math

import numpy as np
import pytest

from blender_addon.core.bake.verify import ERROR_GAIN, closed_loop
from blender_addon.core.errors import InvalidInputError


def test_psnr_on_object_pixels_and_error_images():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    edited = [np.full((8, 8, 3), 100, np.uint8), np.full((8, 8, 3), 100, np.uint8)]
    rendered = [edited[0].copy(), edited[1].copy()]
    rendered[1][2:6, 2:6] = 110  # off by 10 levels on the object
    rendered[1][0, 0] = 0  # off the object: ignored
    report, errors = closed_loop(["a", "b"], edited, rendered, [mask, mask])
    assert math.isinf(report.views[0].psnr_db) and report.views[0].off_share == 0.0
    assert report.views[1].psnr_db == pytest.approx(10 * math.log10(255**2 / 100))
    assert report.views[1].off_share == 1.0 and report.worst_view == "b"
    assert report.psnr_db == pytest.approx(10 * math.log10(255**2 / 50))  # half the object pixels off by 10
    assert errors[1][3, 3, 0] == 10 * ERROR_GAIN and errors[1][0, 0, 0] == 0 and not errors[0].any()
    assert "closed loop" in report.lines()[-1]
    with pytest.raises(InvalidInputError, match="differ"):
        closed_loop(["a"], [edited[0]], [np.zeros((4, 4, 3), np.uint8)], [mask])


def test_the_view_dependent_share_of_the_error():
    """Two views of one flat patch (the same world positions): an error both views show is shared (0 view-dependent);
    a highlight painted into one view only is half view-dependent (it differs from the views' mean by half of it)."""
    h = w = 16
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    position = np.stack([xx * 0.01, yy * 0.01, np.zeros_like(xx)], -1)
    mask = np.ones((h, w), bool)
    edited = [np.full((h, w, 3), 120, np.uint8) for _ in range(2)]
    shared = [e.copy() for e in edited]
    for r in shared:
        r[4:8, 4:8] = 100  # the bake missed a patch: both views show it
    report, _ = closed_loop(["a", "b"], edited, shared, [mask, mask], [position, position])
    assert report.view_dependent_share == pytest.approx(0.0, abs=1e-9)
    highlight = [e.copy() for e in edited]
    edited_hl = [edited[0].copy(), edited[1]]
    edited_hl[0][4:8, 4:8] = 250  # painted into view a only
    report, _ = closed_loop(["a", "b"], edited_hl, highlight, [mask, mask], [position, position])
    assert report.view_dependent_share == pytest.approx(0.5)  # +130 in a, 0 in b: about their mean 65, half varies
    assert "view-dependent" in report.lines()[-1]
    report, _ = closed_loop(["a", "b"], edited, shared, [mask, mask])
    assert math.isnan(report.view_dependent_share)
