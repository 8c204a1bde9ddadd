"""Where the GroupEditing editor's files come from: hub repositories, the docs that explain them, and the advice a
missing file gets. Nothing here downloads (:mod:`.download` does, on request only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

DOCS = "docs/models.md"
#: The diffusers-format Wan2.1-VACE bases by size.
BASE_REPOS = {"14B": "Wan-AI/Wan2.1-VACE-14B-diffusers", "1.3B": "Wan-AI/Wan2.1-VACE-1.3B-diffusers"}
#: The public GroupEditing release's weights.
RELEASE_REPO, RELEASE_FILE = "Heey731/group-editing", "epoch-9.safetensors"
#: VGGT-1B, for the geometry tokens (only its aggregator is read; licence: non-commercial, see docs/models.md).
VGGT_REPO, VGGT_FILE = "facebook/VGGT-1B", "model.safetensors"
#: How many names an error message lists before "… and N more".
LIST_FIRST = 10


def first_names(names: Sequence[str], n: int = LIST_FIRST) -> str:
    """``a, b, c, … and 7 more``: the first ``n`` of ``names`` for an error message."""
    shown = ", ".join(names[:n])
    return shown + (f", … and {len(names) - n} more" if len(names) > n else "")


def download_hint(what: Literal["base", "weights", "vggt"]) -> str:
    """What to download, and how to pass it, for a missing or unusable file."""
    if what == "base":
        return (
            f"Download the diffusers-format Wan2.1-VACE base ({BASE_REPOS['14B']}, or {BASE_REPOS['1.3B']} for low "
            "VRAM) with `groupedit-server download --to DIR` and pass --model-dir DIR/<repo name>; see " + DOCS
        )
    if what == "vggt":
        return (f"Download {VGGT_FILE} of {VGGT_REPO} (about 5 GB) with `groupedit-server download --to DIR` and "
                f"pass --vggt DIR/VGGT-1B; see {DOCS}")
    return (
        f"Download {RELEASE_FILE} from {RELEASE_REPO} with `groupedit-server download --to DIR` and pass "
        f"--weights DIR/group-editing/{RELEASE_FILE}, or use a file written by save_groupedit_weights; see {DOCS}"
    )
