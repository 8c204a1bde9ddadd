"""``groupedit-server download``: fetch the GroupEditing editor's weights from the Hugging Face hub, on request only.

Nothing else in the backend downloads: the server loads local directories (see :mod:`.base_model`, :mod:`.weights` and docs/models.md).
Layout written under ``DEST``::

    DEST/Wan2.1-VACE-14B-diffusers/   (or Wan2.1-VACE-1.3B-diffusers/)  → --model-dir
    DEST/group-editing/epoch-9.safetensors                              → --weights
    DEST/VGGT-1B/model.safetensors                                      → --vggt (non-commercial licence)

``huggingface_hub`` resumes interrupted downloads; running the command again completes a partial one.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import BackendError, ModelNotReady
from .sources import BASE_REPOS, DOCS, RELEASE_FILE, RELEASE_REPO, VGGT_FILE, VGGT_REPO

logger = logging.getLogger(__name__)

Size = Literal["14B", "1.3B"]

#: Approximate download sizes in GB (transformer stored in float32, UMT5-XXL encoder in bf16, VAE 0.5 GB; the
#: release file's size is estimated from its parameter count, 3.2 B, in bf16).
APPROX_GB: dict[str, float] = {BASE_REPOS["14B"]: 81.3, BASE_REPOS["1.3B"]: 20.5, RELEASE_REPO: 6.4, VGGT_REPO: 5.0}
#: The server flag each download is passed as.
FLAGS: dict[str, str] = {BASE_REPOS["14B"]: "--model-dir", BASE_REPOS["1.3B"]: "--model-dir", RELEASE_REPO: "--weights",
                         VGGT_REPO: "--vggt"}
#: Safety margin on top of the sizes when checking free disk space.
SPACE_MARGIN_GB = 2.0


@dataclass(frozen=True)
class Download:
    """One thing to fetch: a whole repository snapshot (``filename`` None) or one file, into ``target``."""

    repo_id: str
    filename: str | None
    target: Path
    approx_gb: float

    @property
    def result(self) -> Path:
        """The path to pass to the server: the snapshot directory, or the file."""
        return self.target if self.filename is None else self.target / self.filename

    def describe(self) -> str:
        what = self.repo_id if self.filename is None else f"{self.repo_id} {self.filename}"
        return f"{what} (~{self.approx_gb:g} GB) → {self.result}"


def plan_downloads(dest: str | Path, *, size: Size = "14B", base: bool = True, weights: bool = True,
                   vggt: bool = True) -> list[Download]:
    """What :func:`download_models` would fetch into ``dest``, in order."""
    if size not in BASE_REPOS:
        raise ValueError(f"size must be one of {', '.join(BASE_REPOS)}, not {size!r}")
    dest = Path(dest).expanduser()
    plan: list[Download] = []
    if base:
        repo = BASE_REPOS[size]
        plan.append(Download(repo, None, dest / repo.split("/")[-1], APPROX_GB[repo]))
    if weights:
        plan.append(Download(RELEASE_REPO, RELEASE_FILE, dest / RELEASE_REPO.split("/")[-1], APPROX_GB[RELEASE_REPO]))
    if vggt:
        plan.append(Download(VGGT_REPO, VGGT_FILE, dest / VGGT_REPO.split("/")[-1], APPROX_GB[VGGT_REPO]))
    return plan


def hub_offline() -> bool:
    """Whether the hub is switched off for this process (``HF_HUB_OFFLINE``, as huggingface_hub reads it)."""
    value = os.environ.get("HF_HUB_OFFLINE", "")
    if value.strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _check_space(plan: Sequence[Download]) -> None:
    need = sum(d.approx_gb for d in plan) + SPACE_MARGIN_GB
    folder = plan[0].target.parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free / 1e9
    if free < need:
        raise ModelNotReady(f"not enough disk space in {folder}: about {need:.0f} GB needed, {free:.0f} GB free "
                            "(files already downloaded count as needed too); free some or pass --no-space-check")


def download_models(
    dest: str | Path,
    *,
    size: Size = "14B",
    base: bool = True,
    weights: bool = True,
    vggt: bool = True,
    token: str | None = None,
    check_space: bool = True,
) -> dict[str, Path]:
    """Downloads the Wan2.1-VACE base (``size``), the release weights and/or VGGT-1B into ``dest``.

    Returns ``{server flag: path}`` (``--model-dir``, ``--weights``, ``--vggt``) for what was fetched. Raises
    ``ModelNotReady`` when the hub is switched off (``HF_HUB_OFFLINE``), not installed, unreachable, or the disk
    is too small.
    """
    plan = plan_downloads(dest, size=size, base=base, weights=weights, vggt=vggt)
    if not plan:
        raise ValueError("nothing to download: the base model, the weights and VGGT were all left out")
    if hub_offline():
        raise ModelNotReady(
            "downloads are switched off: HF_HUB_OFFLINE is set. Unset it to download, or copy the files by hand: "
            + "; ".join(d.describe() for d in plan) + f". See {DOCS}."
        )
    try:
        from huggingface_hub import hf_hub_download, snapshot_download
    except ImportError as exc:
        raise ModelNotReady(f"huggingface_hub is not installed (pip install huggingface_hub); see {DOCS}") from exc
    if check_space:
        _check_space(plan)
    out: dict[str, Path] = {}
    for item in plan:
        logger.info("downloading %s", item.describe())
        try:
            if item.filename is None:
                path = Path(snapshot_download(item.repo_id, local_dir=item.target, token=token))
            else:
                path = Path(hf_hub_download(item.repo_id, item.filename, local_dir=item.target, token=token))
            out[FLAGS[item.repo_id]] = path
        except (OSError, ValueError) as exc:  # the hub's HTTP and offline errors are OSErrors
            raise ModelNotReady(f"could not download {item.repo_id}: {exc}. Check the network and the repository "
                                f"name; running the command again resumes. See {DOCS}.") from exc
    return out


def build_parser(prog: str = "groupedit-server download") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Download the GroupEditing editor's weights (Wan2.1-VACE base in diffusers format, the "
                    f"GroupEditing release checkpoint and VGGT-1B for geometry tokens) from the Hugging Face hub. "
                    f"See {DOCS}.",
    )
    p.add_argument("--to", type=Path, required=True, metavar="DIR", help="folder to download into")
    p.add_argument("--size", choices=sorted(BASE_REPOS), default="14B",
                   help="base model size (default 14B; the released GroupEditing weights fit 14B only)")
    p.add_argument("--no-base", action="store_true", help="skip the Wan2.1-VACE base model")
    p.add_argument("--no-weights", action="store_true", help=f"skip {RELEASE_FILE}")
    p.add_argument("--no-vggt", action="store_true", help=f"skip {VGGT_REPO} (geometry tokens; non-commercial "
                                                          "licence)")
    p.add_argument("--token", default=None, help="Hugging Face token (default: the one huggingface_hub has stored)")
    p.add_argument("--no-space-check", action="store_true", help="skip the free-disk-space check")
    p.add_argument("--dry-run", action="store_true", help="print what would be downloaded and where, then stop")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "groupedit-server download") -> int:
    """Console entry; exit status 0 on success, 2 on an error (its message on stderr)."""
    args = build_parser(prog).parse_args(argv)
    if args.no_base and args.no_weights and args.no_vggt:
        print(f"{prog}: error: --no-base, --no-weights and --no-vggt leave nothing to download", file=sys.stderr)
        return 2
    plan = plan_downloads(args.to, size=args.size, base=not args.no_base, weights=not args.no_weights,
                          vggt=not args.no_vggt)
    if args.dry_run:
        for item in plan:
            print(item.describe())
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        out = download_models(args.to, size=args.size, base=not args.no_base, weights=not args.no_weights,
                              vggt=not args.no_vggt, token=args.token, check_space=not args.no_space_check)
    except BackendError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    flags = " ".join(f"{flag} {path}" for flag, path in out.items())
    print(f"done. Start the server with: groupedit-server --editor groupediting {flags}")
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m backend.groupediting.download"))
