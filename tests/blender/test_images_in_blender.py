"""Inside Blender, PNGs are read through Blender's OpenImageIO: the stored values exactly (alpha not premultiplied)."""

import numpy as np

import bpy  # noqa: F401  (Blender's Python, where OpenImageIO lives)

from blender_addon.core.format import images


def test_blenders_openimageio_reads_stored_values(tmp_path):
    assert images._codec_oiio() is not None, "Blender ships OpenImageIO"
    rng = np.random.default_rng(1)
    for shape, dtype in (((7, 5, 2), np.uint8), ((6, 9, 4), np.uint8), ((6, 9, 4), np.uint16), ((8, 3, 3), np.uint8)):
        image = rng.integers(0, np.iinfo(dtype).max, shape, dtype=dtype)
        path = tmp_path / f"{shape[2]}_{np.dtype(dtype).name}.png"
        images.write_png(path, image)
        px = images._read_with_codec(path)
        assert px is not None and px.dtype == dtype and np.array_equal(px, image), path.name
