"""Image files with numpy and the standard library: PNG read/write, OpenEXR read, sRGB curves.

PNG files are read through OpenImageIO (which Blender ships) or Pillow where either is present, else by our own
decoder (:func:`decode_png`, which also reads PNG bytes).

Arrays are (H, W) or (H, W, C), top row first. PNG supports 8- and 16-bit grey, grey+alpha, RGB and
RGBA, non-interlaced, every filter type. EXR supports scanline files with NONE, ZIPS or ZIP
compression and HALF, FLOAT or UINT channels (what Blender writes with those codecs).
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ImageFormatError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_PNG_COLOUR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}


# --------------------------------------------------------------------------------------------- sRGB
def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB decoding of values in [0, 1] (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    """IEC 61966-2-1 sRGB encoding; input clipped to [0, 1] (what Blender's Standard view transform does)."""
    x = np.clip(np.asarray(x, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] to uint8 with rounding."""
    return np.clip(np.rint(np.asarray(x, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- PNG
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(image: np.ndarray, compression: int = 6) -> bytes:
    """Encode a uint8 or uint16 array (H, W) or (H, W, 1..4) as PNG bytes ("Up" filter on every row)."""
    a = np.asarray(image)
    if a.dtype not in (np.uint8, np.uint16):
        raise ImageFormatError(f"PNG needs uint8 or uint16 pixels, got {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in _PNG_COLOUR_TYPE or a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageFormatError(f"PNG needs shape (H, W) or (H, W, 1..4), got {np.shape(image)}")
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    raw = a.astype(">u2").view(np.uint8).reshape(h, -1) if depth == 16 else a.reshape(h, -1)
    up = raw.copy()
    up[1:] = raw[1:] - raw[:-1]  # uint8 arithmetic wraps modulo 256, as the filter requires
    rows = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1)
    header = struct.pack(">IIBBBBB", w, h, depth, _PNG_COLOUR_TYPE[c], 0, 0, 0)
    return (
        _PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), compression))
        + _png_chunk(b"IEND", b"")
    )


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write :func:`encode_png` bytes to ``path`` (atomically: a temporary name, then a rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(encode_png(image))
    os.replace(tmp, path)


def _unfilter(data: np.ndarray, h: int, stride: int, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters. None, Up and Sub are vectorised; Average and Paeth depend on the pixel to the
    left, so they run per byte on plain Python ints (the slow part: a real codec is preferred, see :func:`read_png`)."""
    rows = data.reshape(h, stride + 1)
    out = np.zeros((h, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(h):
        ftype, line = rows[y, 0], rows[y, 1:]
        if ftype == 0:
            cur = line.copy()
        elif ftype == 2:
            cur = line + prev
        elif ftype == 1:  # Sub: running sum per byte lane, modulo 256
            lanes = np.zeros(stride + (-stride) % bpp, np.uint8)
            lanes[:stride] = line
            cur = np.cumsum(lanes.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)[:stride]
        elif ftype in (3, 4):
            cur = np.frombuffer(bytes(_unfilter_row(int(ftype), line.tolist(), prev.tolist(), bpp)), np.uint8)
        else:
            raise ImageFormatError(f"PNG row {y} has unknown filter type {ftype}")
        out[y] = cur
        prev = cur
    return out


def _unfilter_row(ftype: int, line: list[int], prev: list[int], bpp: int) -> list[int]:
    """One Average (3) or Paeth (4) row."""
    cur = [0] * len(line)
    for x, value in enumerate(line):
        left = cur[x - bpp] if x >= bpp else 0
        up = prev[x]
        if ftype == 3:
            cur[x] = (value + ((left + up) >> 1)) & 0xFF
            continue
        ul = prev[x - bpp] if x >= bpp else 0
        pa, pb, pc = abs(up - ul), abs(left - ul), abs(left + up - 2 * ul)
        cur[x] = (value + (left if pa <= pb and pa <= pc else up if pb <= pc else ul)) & 0xFF
    return cur


def png_header(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's header alone; :class:`ImageFormatError` if it is none."""
    if not data.startswith(_PNG_SIGNATURE) or len(data) < 33 or data[12:16] != b"IHDR":
        raise ImageFormatError("not a PNG file (bad signature or header)")
    w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
    return w, h, depth, ctype


def _codec_pillow() -> Any | None:
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def _codec_oiio() -> Any | None:
    """OpenImageIO's Python module: importable as is, or from the Python Blender ships when bpy is loaded."""
    try:
        import OpenImageIO

        return OpenImageIO
    except ImportError:
        pass
    bpy = sys.modules.get("bpy")
    if bpy is None:
        return None
    site = Path(bpy.utils.system_resource("PYTHON")) / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" \
        / "site-packages"
    if not (site / "OpenImageIO").is_dir():
        return None
    sys.path.append(str(site))
    try:
        import OpenImageIO

        return OpenImageIO
    except ImportError:
        return None
    finally:
        sys.path.remove(str(site))


def _as_png_array(px: np.ndarray, depth: int) -> np.ndarray:
    px = px if px.ndim == 3 else px[..., None]
    return px.astype(np.uint16 if depth == 16 else np.uint8, copy=False)


def _read_with_codec(path: Path) -> np.ndarray | None:
    """The PNG at ``path`` through OpenImageIO or Pillow (None when neither is there or either refuses it)."""
    with open(path, "rb") as f:
        w, h, depth, ctype = png_header(f.read(33))
    if ctype == 3:  # palette: decoded by our own reader's refusal, as before
        return None
    oiio = _codec_oiio()
    if oiio is not None:
        config = oiio.ImageSpec()
        config.attribute("oiio:UnassociatedAlpha", 1)  # the stored values, not premultiplied by alpha
        buf = oiio.ImageBuf(str(path), 0, 0, config)
        px = buf.get_pixels(oiio.UINT16 if depth == 16 else oiio.UINT8)
        if px is not None and not buf.has_error and px.shape[:2] == (h, w):
            return _as_png_array(np.asarray(px), depth)
    pillow = _codec_pillow()
    if pillow is not None:
        with pillow.open(path) as img:
            px = np.asarray(img)
        if px.shape[:2] == (h, w) and (depth == 8) == (px.dtype == np.uint8):
            return _as_png_array(px, depth)
    return None


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes to uint8/uint16 (H, W, C) with C in 1..4 (palette and interlaced files refused)."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ImageFormatError("not a PNG file (bad signature)")
    pos, idat, header = 8, [], None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length:
            raise ImageFormatError("truncated PNG file")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if header is None or not idat:
        raise ImageFormatError("PNG file without image header or data")
    w, h, depth, ctype, _, _, interlace = header
    if ctype not in _PNG_CHANNELS or depth not in (8, 16) or interlace:
        raise ImageFormatError(f"unsupported PNG (colour type {ctype}, depth {depth}, interlace {interlace})")
    c = _PNG_CHANNELS[ctype]
    bpp = c * depth // 8
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8)
    except zlib.error as exc:
        raise ImageFormatError(f"corrupt PNG data: {exc}") from exc
    if raw.size != h * (w * bpp + 1):
        raise ImageFormatError("PNG data size does not match its header")
    px = _unfilter(raw, h, w * bpp, bpp)
    if depth == 16:
        return px.view(">u2").astype(np.uint16).reshape(h, w, c)
    return px.reshape(h, w, c)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG file into uint8/uint16 (H, W, C), as :func:`decode_png` would: through a real codec where one is
    present (OpenImageIO, which Blender ships; Pillow, which the server has), else our own decoder, which is slow on
    the Average and Paeth filters that Blender and Pillow write (seconds for a 512² view)."""
    path = Path(path)
    try:
        px = _read_with_codec(path)
    except ImageFormatError:
        raise
    except Exception:  # noqa: BLE001 - a codec that fails falls back to our decoder, which says what is wrong
        px = None
    return px if px is not None else decode_png(path.read_bytes())


# --------------------------------------------------------------------------------------------- EXR
_EXR_MAGIC = 20000630
_EXR_PIXEL_TYPES = {0: np.dtype("<u4"), 1: np.dtype("<f2"), 2: np.dtype("<f4")}
_EXR_LINES_PER_CHUNK = {0: 1, 2: 1, 3: 16}  # NONE, ZIPS, ZIP


def _exr_unzip(chunk: bytes) -> bytes:
    t = np.frombuffer(zlib.decompress(chunk), np.uint8).astype(np.int16)
    t = (np.cumsum(np.concatenate([t[:1], t[1:] - 128])) & 0xFF).astype(np.uint8)  # undo the predictor
    half = (len(t) + 1) // 2
    out = np.empty(len(t), np.uint8)
    out[0::2], out[1::2] = t[:half], t[half:]  # undo the interleave
    return out.tobytes()


def read_exr(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every channel of a scanline OpenEXR file into float32 arrays (H, W), keyed by channel name.

    Blender's multilayer files name channels ``<view layer>.<pass>.<channel>``, for example
    ``ViewLayer.Position.X``.
    """
    data = Path(path).read_bytes()
    if len(data) < 8 or struct.unpack("<i", data[:4])[0] != _EXR_MAGIC:
        raise ImageFormatError(f"{path}: not an OpenEXR file")
    if struct.unpack("<i", data[4:8])[0] & 0x1A00:  # tiled, deep or multi-part (long names are fine)
        raise ImageFormatError(f"{path}: tiled, deep or multi-part EXR files are not supported")
    pos, attrs = 8, {}
    while data[pos] != 0:
        end = data.index(b"\0", pos)
        name = data[pos:end].decode()
        tend = data.index(b"\0", end + 1)
        atype = data[end + 1 : tend].decode()
        (size,) = struct.unpack("<i", data[tend + 1 : tend + 5])
        attrs[name] = (atype, data[tend + 5 : tend + 5 + size])
        pos = tend + 5 + size
    pos += 1
    channels = []
    raw = attrs["channels"][1]
    p = 0
    while raw[p] != 0:
        end = raw.index(b"\0", p)
        ptype, _, xs, ys = struct.unpack("<iB3xii", raw[end + 1 : end + 17])
        if xs != 1 or ys != 1:
            raise ImageFormatError(f"{path}: subsampled channels are not supported")
        channels.append((raw[p:end].decode(), _EXR_PIXEL_TYPES[ptype]))
        p = end + 17
    compression = attrs["compression"][1][0]
    if compression not in _EXR_LINES_PER_CHUNK:
        raise ImageFormatError(f"{path}: EXR compression {compression} unsupported (write NONE, ZIPS or ZIP)")
    xmin, ymin, xmax, ymax = struct.unpack("<iiii", attrs["dataWindow"][1])
    w, h = xmax - xmin + 1, ymax - ymin + 1
    lines = _EXR_LINES_PER_CHUNK[compression]
    n_chunks = (h + lines - 1) // lines
    offsets = [int(o) for o in np.frombuffer(data, "<u8", n_chunks, pos)]
    out = {name: np.empty((h, w), np.float32) for name, _ in channels}
    for off in offsets:
        y, size = struct.unpack("<ii", data[off : off + 8])
        chunk = data[off + 8 : off + 8 + size]
        n = min(lines, ymax + 1 - y)
        if compression != 0 and size < n * w * sum(dt.itemsize for _, dt in channels):
            chunk = _exr_unzip(chunk)
        p = 0
        for row in range(n):  # within a chunk: per scanline, every channel's row in turn
            for name, dt in channels:
                nbytes = w * dt.itemsize
                out[name][y - ymin + row] = np.frombuffer(chunk, dt, w, p)
                p += nbytes
    return out
