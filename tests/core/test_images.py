import io

import numpy as np
import pytest
from PIL import Image

from blender_addon.core.errors import ImageFormatError
from blender_addon.core.format.images import decode_png, encode_png, linear_to_srgb, read_png, srgb_to_linear, write_png


@pytest.mark.parametrize("shape", [(7, 5), (7, 5, 2), (7, 5, 3), (6, 9, 4)])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_round_trip(tmp_path, shape, dtype):
    rng = np.random.default_rng(0)
    a = rng.integers(0, np.iinfo(dtype).max + 1, size=shape, dtype=dtype)
    write_png(tmp_path / "a.png", a)
    b = read_png(tmp_path / "a.png")
    assert b.dtype == dtype and np.array_equal(b.reshape(a.shape), a)
    # and another decoder agrees
    c = np.array(Image.open(tmp_path / "a.png"))
    if dtype == np.uint8:
        assert np.array_equal(c.reshape(a.shape), a)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_decodes_every_filter_type_written_by_pil(mode):
    rng = np.random.default_rng(2)
    base = np.cumsum(rng.integers(0, 4, size=(40, 33, 4)), axis=1).astype(np.uint8)  # smooth: PIL picks many filters
    img = Image.fromarray(base[..., : len(mode)].squeeze() if mode != "L" else base[..., 0], mode)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    out = decode_png(buf.getvalue())
    assert np.array_equal(out.reshape(np.array(img).shape), np.array(img))


def test_png_errors():
    with pytest.raises(ImageFormatError, match="signature"):
        decode_png(b"GIF89a")
    data = encode_png(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ImageFormatError):
        decode_png(data[:40])
    with pytest.raises(ImageFormatError, match="uint8 or uint16"):
        encode_png(np.zeros((2, 2), np.float32))


def test_srgb_curves_invert_and_match_8bit_levels():
    x = np.linspace(0, 1, 256, dtype=np.float32)
    assert np.abs(linear_to_srgb(srgb_to_linear(x)) - x).max() < 1e-5
    assert np.isclose(linear_to_srgb(np.float32(0.5)), 0.7353569, atol=1e-5)


def test_pngs_with_every_filter_read_alike_through_a_codec_and_our_decoder(tmp_path):
    """Pillow writes adaptive filters (Average and Paeth among them, as Blender does): the codec path of read_png and
    our own decoder give the exact pixels, 8-bit RGB/RGBA and 16-bit grey alike."""
    import zlib

    from blender_addon.core.format.images import png_header

    rng = np.random.default_rng(0)
    smooth = np.cumsum(rng.integers(0, 3, (64, 80, 3)), axis=1).astype(np.uint8)  # gradients: Paeth/Average rows
    cases = [smooth, np.dstack([smooth, smooth[..., :1]]), (np.cumsum(rng.integers(0, 900, (40, 30)), 1) % 65536)
             .astype(np.uint16)]
    for i, image in enumerate(cases):
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="PNG", optimize=True)
        data = buf.getvalue()
        if i == 0:  # the rows' filter bytes: Average (3) or Paeth (4) among them
            raw = zlib.decompressobj().decompress(data[data.index(b"IDAT") + 4:])
            assert {3, 4} & set(raw[:: 80 * 3 + 1])
        path = tmp_path / f"{i}.png"
        path.write_bytes(data)
        want = image if image.ndim == 3 else image[..., None]
        assert np.array_equal(read_png(path), want) and read_png(path).dtype == want.dtype
        assert np.array_equal(decode_png(data), want)
        assert png_header(data)[:2] == (image.shape[1], image.shape[0])
