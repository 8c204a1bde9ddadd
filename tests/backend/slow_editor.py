"""A test editor that sleeps at every step, so tests can cancel, kill and restart mid-job.

With the job option ``"preview": true`` it also sends a live preview at every step."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from backend.editors.base import CancelCheck, EditInput, Editor, Progress, check_cancel


class SlowEditor(Editor):
    name = "slow-test"

    def __init__(self, steps: int = 20, delay: float = 0.1) -> None:
        self.steps, self.delay = steps, delay

    def edit(self, group: EditInput, instruction: str, options: dict[str, Any], progress: Progress,
             cancel: CancelCheck) -> list[np.ndarray]:
        group.check()
        steps = int(options.get("steps", self.steps))
        previews = bool(options.get("preview", False))
        for i in range(steps):
            check_cancel(cancel)
            time.sleep(self.delay)
            progress("denoise", i + 1, steps)
            if previews:  # the views fading to the result, at full size (the worker makes the contact sheet)
                t = (i + 1) / steps
                self.send_preview(i + 1, [np.rint(img * (1 - t) + (255 - img) * t).astype(np.uint8)
                                          for img in group.images])
        return [255 - img for img in group.images]


class DiesWhileLoading(SlowEditor):
    """An editor whose loading kills its process outright (as a crashing CUDA library would)."""

    name = "dies-while-loading"

    def __init__(self) -> None:
        import os

        os._exit(3)
