"""A job's files: ``inputs/`` as the server staged them and ``results/`` as the worker wrote them.

Layout under the job folder (the server generates every name; none comes from a client)::

    inputs/000_image.png  inputs/000_mask.png  ...  [inputs/reference.png]   (PNG or JPEG bytes as uploaded)
    results/000.png ...   (written to results.part/ first, renamed when complete)
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from .editors.base import EditInput
from .errors import InvalidInput


def decode_image(data: bytes, what: str, max_pixels: int, mode: str) -> np.ndarray:
    """Decode an uploaded PNG/JPEG to a uint8 array in ``mode`` ('RGB' or 'L'), refusing bombs and junk."""
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > max_pixels:
            raise InvalidInput(f"{what} is {w}x{h}, over the limit of {max_pixels} pixels: lower the view size")
        if img.format not in ("PNG", "JPEG"):
            raise InvalidInput(f"{what} is {img.format}, not PNG or JPEG")
        img.load()
    except InvalidInput:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for bad data
        raise InvalidInput(f"{what} is not a readable image ({type(exc).__name__}: {exc})") from exc
    return np.asarray(img.convert(mode))


def stage_inputs(folder: Path, images: list[bytes], masks: list[bytes], reference: bytes | None) -> None:
    """Store the uploaded files as they came (already decoded once to validate them)."""
    inputs = folder / "inputs"
    inputs.mkdir(parents=True)
    for i, (img, m) in enumerate(zip(images, masks)):
        (inputs / f"{i:03d}_image.png").write_bytes(img)
        (inputs / f"{i:03d}_mask.png").write_bytes(m)
    if reference is not None:
        (inputs / "reference.png").write_bytes(reference)


def read_inputs(folder: Path) -> EditInput:
    inputs = folder / "inputs"
    n = len(list(inputs.glob("*_image.png")))
    images = [np.asarray(Image.open(inputs / f"{i:03d}_image.png").convert("RGB")) for i in range(n)]
    masks = [np.asarray(Image.open(inputs / f"{i:03d}_mask.png").convert("L")) > 127 for i in range(n)]
    ref = inputs / "reference.png"
    return EditInput(images, masks, np.asarray(Image.open(ref).convert("RGB")) if ref.exists() else None)


def write_results(folder: Path, images: list[np.ndarray]) -> None:
    part = folder / "results.part"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    for i, img in enumerate(images):
        Image.fromarray(img).save(part / f"{i:03d}.png", compress_level=1)
    os.replace(part, folder / "results")


def result_path(folder: Path, index: int) -> Path:
    return folder / "results" / f"{int(index):03d}.png"
