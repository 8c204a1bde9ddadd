"""Per-asset batch state, written atomically after every stage: what a re-run may skip (docs/batch.md).

``OUT/<id>/state.json``: the stages done (in order: capture, edit, bake), each with its seconds; the edit job's id,
server and idempotency key (a re-run polls the same job instead of submitting again); the status (``pending``,
``running``, ``done``, ``failed``), the attempts of this run, and the last failure (stage, category, reason).
A stage's outputs are written under a ``.part`` name and renamed when complete, so a crash never leaves a half
stage that looks done.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STAGES = ("capture", "edit", "bake")
STATE_FILE = "state.json"


@dataclass
class AssetState:
    """See the module docstring. ``times``: seconds per finished stage; ``metrics``: the closed loop and region
    numbers of the bake; ``error``: ``{"stage", "category", "reason"}`` of the last failure."""

    id: str
    asset: str
    status: str = "pending"
    done: list[str] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)
    attempts: int = 0
    job_id: str | None = None
    job_key: str | None = None
    job_server: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: dict[str, str] | None = None

    @property
    def next_stage(self) -> str | None:
        return next((s for s in STAGES if s not in self.done), None)

    def save(self, folder: Path) -> None:
        """Write ``folder/state.json`` whole (a temporary file renamed over it)."""
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / (STATE_FILE + ".part")
        part.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(part, folder / STATE_FILE)

    @classmethod
    def load(cls, folder: Path, id: str, asset: str) -> "AssetState":
        """The saved state (a fresh one when there is none, or it is unreadable or of another asset)."""
        try:
            d = json.loads((folder / STATE_FILE).read_text())
            state = cls(**d)
        except (OSError, ValueError, TypeError):
            return cls(id, asset)
        if state.asset != asset:
            return cls(id, asset)
        state.done = [s for s in STAGES if s in state.done]
        return state
