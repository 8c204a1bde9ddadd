"""The identity editor: returns the views unchanged (round-trip checks of capture, transport and bake)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import CancelCheck, EditInput, Editor, Progress, check_cancel


class IdentityEditor(Editor):
    name = "identity"

    def edit(self, group: EditInput, instruction: str, options: dict[str, Any], progress: Progress,
             cancel: CancelCheck) -> list[np.ndarray]:
        group.check()
        out = []
        for i, img in enumerate(group.images):
            check_cancel(cancel)
            out.append(img.copy())
            progress("edit", i + 1, len(group.images))
        return out
