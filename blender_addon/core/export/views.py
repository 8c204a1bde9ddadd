"""The images an export writes: the capture's colour views or an edit of them, by view name, as RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InvalidInputError
from ..format.images import read_png, write_png
from ..format.viewset import ViewSet


def export_images(vs: ViewSet, edited: str | None) -> list[np.ndarray]:
    """N uint8 (H, W, 3) images in the ViewSet's order: its ``colour`` pass, or with ``edited`` the edit in that
    subfolder (e.g. ``edited``). An edit with missing or mis-sized views is an error that names the view."""
    if edited is None:
        return [vs.load(v, "colour")[..., :3] for v in vs.views]
    folder = vs.root / edited
    if not folder.is_dir():
        raise InvalidInputError(f"{folder} does not exist: edit the views first (groupedit edit), or leave out "
                                "--edited to export the captured views")
    out = []
    for v in vs.views:
        path = folder / f"{v.name}.png"
        if not path.is_file():
            raise InvalidInputError(f"{path} is missing: the edit in {folder} is incomplete")
        image = read_png(path)[..., :3]
        k = v.camera.intrinsics
        if image.shape[:2] != (k.height, k.width):
            raise InvalidInputError(f"{path} is {image.shape[1]}x{image.shape[0]}, its view {k.width}x{k.height}")
        out.append(image)
    return out


def write_images(folder: Path, names: list[str], images: list[np.ndarray]) -> list[str]:
    """Write ``<name>.png`` per image into ``folder``; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for name, image in zip(names, images):
        write_png(folder / f"{name}.png", image)
        files.append(f"{name}.png")
    return files


def prepare_out(out: Path) -> None:
    """``out`` must be new or empty: an export never mixes with other files."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError(f"{out} exists and is not empty: choose a new folder for the export")
    out.mkdir(parents=True, exist_ok=True)
