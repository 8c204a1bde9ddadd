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
