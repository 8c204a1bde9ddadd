"""An editor run straight on a ViewSet on disk, without the HTTP server (Ray editors, the evaluation).

The editor gets what the add-on would upload (:meth:`blender_addon.core.client.api.BackendClient.submit`): the colour
views, the edit region's masks where the capture has them (else the object's), the cameras, the passes the editor
says it uses, the description and the object's name as the subject.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from blender_addon.core.format.images import write_png
from blender_addon.core.format.viewset import EDIT_RECORD, EDITED_DIR, ViewSet

from .editors import EditInput, Editor
from .editors.base import EditResult


def edit_input(vs: ViewSet, editor: Editor, description: str | None) -> EditInput:
    """The editor's input for the ViewSet ``vs`` (checked)."""
    wants = editor.info().get("geometry_passes") or []
    group = EditInput(
        images=[vs.load(v, "colour")[..., :3] for v in vs.views],
        masks=[vs.load(v, "region" if "region" in v.files else "mask") for v in vs.views],
        geometry={p: [vs.load(v, p) for v in vs.views] for p in wants if all(p in v.files for v in vs.views)},
        cameras=[(v.camera.intrinsics.matrix, v.camera.camera_to_world) for v in vs.views],
        description=description, subject=vs.object_name)
    group.check()
    return group


def edit_viewset(editor: Editor, vs: ViewSet, instruction: str, options: dict[str, Any] | None = None,
                 description: str | None = None) -> EditResult:
    """Run ``editor`` on ``vs`` (no progress, no cancel): the edited views, N uint8 (H, W, 3), and its metadata."""
    group = edit_input(vs, editor, description)
    result = EditResult.of(editor.edit(group, instruction, options or {}, lambda *a: None, lambda: False))
    result.images = [np.asarray(im, np.uint8)[..., :3] for im in result.images]
    return result


def write_edited(vs: ViewSet, result: EditResult, record: dict[str, Any], folder: Path | None = None) -> Path:
    """Write ``result`` as ``<folder or vs.root>/edited/`` whole (``edited.part`` renamed; an earlier ``edited/``
    becomes ``edited.1/``, ...) with ``record`` as its ``edit.json``; returns the folder."""
    root = folder or vs.root
    part = root / (EDITED_DIR + ".part")
    part.mkdir(parents=True, exist_ok=True)
    for v, image in zip(vs.views, result.images):
        write_png(part / f"{v.name}.png", image)
    (part / EDIT_RECORD).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    final = root / EDITED_DIR
    if final.exists():  # keep an earlier edit, as the add-on does: edited -> edited.1, edited.2, ...
        n = 1
        while final.with_name(f"{EDITED_DIR}.{n}").exists():
            n += 1
        os.replace(final, final.with_name(f"{EDITED_DIR}.{n}"))
    os.replace(part, final)
    return final
