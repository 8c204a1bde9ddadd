"""The images an export writes: the capture's colour views or an edit of them, by view name, as RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bake.restyle import load_edited
from ..errors import InvalidInputError, ViewSetFormatError
from ..format.images import write_png
from ..format.viewset import ViewSet


def export_images(vs: ViewSet, edited: str | None) -> list[np.ndarray]:
    """N uint8 (H, W, 3) images in the ViewSet's order: its ``colour`` pass, or with ``edited`` the edit in that
    subfolder (e.g. ``edited``), read as a bake reads it (:func:`~..bake.restyle.load_edited`: every view, at its
    size, no other capture's); a missing or mismatched edit is an :class:`InvalidInputError` naming what differs."""
    if edited is None:
        return [vs.load(v, "colour")[..., :3] for v in vs.views]
    try:
        return load_edited(vs, edited)
    except ViewSetFormatError as exc:
        raise InvalidInputError(str(exc)) from exc


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
