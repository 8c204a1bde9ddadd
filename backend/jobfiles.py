"""A job's files: ``inputs/`` as the server staged them and ``results/`` as the worker wrote them.

Layout under the job folder (the server generates every name; none comes from a client)::

    inputs/000_image.png  inputs/000_mask.png  ...  [inputs/reference.png]   (PNG or JPEG bytes as uploaded)
    [inputs/cameras.json]                  {"K": [N x 3x3], "camera_to_world": [N x 4x4]} (checked, float64)
    [inputs/000_<pass>.npy ...]            geometry passes (checked, float32 (H, W, C); see :mod:`.viewdata`)
    [inputs/text.json]                     {"description": ..., "subject": ...} when the job gave either
    [inputs/geometry_tokens.npy]           the job's geometry tokens (checked, float32 (N*P, C))
    results/000.png ... results/metadata.json   (written to results.part/ first, renamed when complete; the
                          metadata says how the edit was made, see :class:`~.editors.base.EditResult`)
    [preview.png]         the latest live preview of a running job: one contact sheet of all views
                          (written to preview.png.part first, renamed; removed with the results on fail/cancel)
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .editors.base import EditInput, EditResult
from .errors import InvalidInput
from blender_addon.core.format.protocol import GEOMETRY_PASSES

from .viewdata import Camera

TEXT_FILE = "text.json"
TOKENS_FILE = "geometry_tokens.npy"
METADATA_FILE = "metadata.json"


def image_size(data: bytes, what: str) -> tuple[int, int]:
    """(width, height) of an uploaded PNG/JPEG from its header alone (nothing is decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception as exc:  # noqa: BLE001 - PIL raises many kinds for bad data
        raise InvalidInput(f"{what} is not a readable image ({type(exc).__name__}: {exc})") from exc


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
    return as_mode(img, mode)


def as_mode(img: Image.Image, mode: str) -> np.ndarray:
    """uint8 pixels of ``img`` in ``mode`` ('RGB' or 'L'); 16-bit grey is scaled to 8 bits (Pillow's own conversion
    clips it at 255, which would turn a 16-bit mask's near-black into 'edit here')."""
    if img.mode.startswith("I") and mode == "L":
        wide = np.asarray(img).astype(np.float64)
        return np.rint(np.clip(wide, 0, 65535) / 65535.0 * 255.0).astype(np.uint8)
    return np.asarray(img.convert(mode))


def stage_inputs(folder: Path, images: list[bytes], masks: list[bytes], reference: bytes | None,
                 cameras: list[Camera] | None = None, geometry: dict[str, list[np.ndarray]] | None = None,
                 text: dict[str, str] | None = None, geometry_tokens: np.ndarray | None = None) -> None:
    """Store the uploaded files as they came (already decoded once to validate them), the checked cameras
    (N pairs of K (3, 3), camera_to_world (4, 4)) and geometry passes (name -> N float32 (H, W, C)), the job's
    ``description`` / ``subject`` (``text``) and its geometry tokens (float32 (N*P, C))."""
    inputs = folder / "inputs"
    inputs.mkdir(parents=True)
    for i, (img, m) in enumerate(zip(images, masks)):
        (inputs / f"{i:03d}_image.png").write_bytes(img)
        (inputs / f"{i:03d}_mask.png").write_bytes(m)
    if reference is not None:
        (inputs / "reference.png").write_bytes(reference)
    if cameras:
        doc = {"K": [k.tolist() for k, _ in cameras], "camera_to_world": [c.tolist() for _, c in cameras]}
        (inputs / "cameras.json").write_text(json.dumps(doc))
    for name, arrays in (geometry or {}).items():
        if name not in GEOMETRY_PASSES:  # names come from a fixed list, never from a client
            raise InvalidInput(f"unknown geometry pass {name!r}")
        for i, array in enumerate(arrays):
            np.save(inputs / f"{i:03d}_{name}.npy", np.asarray(array, np.float32), allow_pickle=False)
    if text:
        (inputs / TEXT_FILE).write_text(json.dumps(text))
    if geometry_tokens is not None:
        np.save(inputs / TOKENS_FILE, np.asarray(geometry_tokens, np.float32), allow_pickle=False)


def read_inputs(folder: Path) -> EditInput:
    """The staged job as an :class:`EditInput` (cameras and geometry passes when the job has them)."""
    inputs = folder / "inputs"
    n = len(list(inputs.glob("*_image.png")))
    images = [np.asarray(Image.open(inputs / f"{i:03d}_image.png").convert("RGB")) for i in range(n)]
    masks = [as_mode(Image.open(inputs / f"{i:03d}_mask.png"), "L") > 127 for i in range(n)]
    ref = inputs / "reference.png"
    cameras = None
    if (inputs / "cameras.json").is_file():
        doc = json.loads((inputs / "cameras.json").read_text())
        cameras = [(np.asarray(k, np.float64), np.asarray(c, np.float64))
                   for k, c in zip(doc["K"], doc["camera_to_world"])]
    geometry = {name: [np.load(inputs / f"{i:03d}_{name}.npy", allow_pickle=False) for i in range(n)]
                for name in GEOMETRY_PASSES if (inputs / f"000_{name}.npy").is_file()}
    text = json.loads((inputs / TEXT_FILE).read_text()) if (inputs / TEXT_FILE).is_file() else {}
    tokens = np.load(inputs / TOKENS_FILE, allow_pickle=False) if (inputs / TOKENS_FILE).is_file() else None
    return EditInput(images, masks, np.asarray(Image.open(ref).convert("RGB")) if ref.exists() else None,
                     geometry, cameras, description=text.get("description"), subject=text.get("subject"),
                     geometry_tokens=tokens)


def write_results(folder: Path, result: EditResult) -> None:
    """The edited views as ``results/000.png`` … and the edit's ``results/metadata.json``, atomically."""
    part = folder / "results.part"
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir()
    for i, img in enumerate(result.images):
        Image.fromarray(img).save(part / f"{i:03d}.png", compress_level=1)
    (part / METADATA_FILE).write_text(json.dumps(result.metadata, ensure_ascii=False))
    os.replace(part, folder / "results")


def read_metadata(folder: Path) -> dict[str, Any] | None:
    """The metadata of a job's results (None before they exist)."""
    path = folder / "results" / METADATA_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def result_path(folder: Path, index: int) -> Path:
    return folder / "results" / f"{int(index):03d}.png"


#: Widest live preview contact sheet, in pixels.
PREVIEW_MAX_WIDTH = 512
PREVIEW_FILE = "preview.png"


def contact_sheet(images: list[np.ndarray], max_width: int = PREVIEW_MAX_WIDTH) -> np.ndarray:
    """All views on one uint8 (H, W, 3) sheet no wider than ``max_width``, for a live preview.

    Grid: ``cols = ceil(sqrt(N))`` columns, ``ceil(N / cols)`` rows, row-major in view order. Every cell is
    ``cell_w = min(widest view, max_width // cols)`` wide and ``ceil(cell_w * tallest aspect h/w)`` high;
    each view is scaled to fit its cell keeping its aspect (never enlarged), centred, on black.
    """
    if not images:
        raise InvalidInput("a preview needs at least one image")
    n = len(images)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell_w = max(1, min(max(a.shape[1] for a in images), max_width // cols))
    cell_h = max(1, math.ceil(cell_w * max(a.shape[0] / a.shape[1] for a in images)))
    sheet = np.zeros((rows * cell_h, cols * cell_w, 3), np.uint8)
    for i, a in enumerate(images):
        img = Image.fromarray(np.ascontiguousarray(np.asarray(a, np.uint8)[..., :3]))
        scale = min(1.0, cell_w / img.width, cell_h / img.height)
        w, h = max(1, round(img.width * scale)), max(1, round(img.height * scale))
        if (w, h) != img.size:
            img = img.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=2.0)
        r, c = divmod(i, cols)
        y, x = r * cell_h + (cell_h - h) // 2, c * cell_w + (cell_w - w) // 2
        sheet[y:y + h, x:x + w] = np.asarray(img)
    return sheet


def write_preview(folder: Path, images: list[np.ndarray]) -> tuple[int, int]:
    """Write the contact sheet of ``images`` as the job's ``preview.png`` atomically; returns its (width, height)."""
    sheet = contact_sheet(images)
    part = folder / (PREVIEW_FILE + ".part")
    Image.fromarray(sheet).save(part, format="PNG", compress_level=1)
    os.replace(part, folder / PREVIEW_FILE)
    return sheet.shape[1], sheet.shape[0]


def preview_path(folder: Path) -> Path:
    """The job's latest live preview (it may not exist)."""
    return folder / PREVIEW_FILE


def remove_preview(folder: Path) -> None:
    """Delete the job's live preview and any half-written one."""
    for name in (PREVIEW_FILE, PREVIEW_FILE + ".part"):
        (folder / name).unlink(missing_ok=True)
