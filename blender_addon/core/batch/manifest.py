"""What a batch restyles: one :class:`BatchItem` per asset, from paths (files, folders, globs) and/or a JSONL
manifest, with the command line's values as defaults (docs/batch.md)."""

from __future__ import annotations

import glob
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError

#: Files a batch takes as assets when given a folder or a glob.
ASSET_SUFFIXES = (".blend", ".glb", ".gltf", ".fbx", ".obj")
#: Keys of a manifest line besides ``options`` (capture and bake settings by their flag names, e.g. ``views``).
ITEM_KEYS = ("asset", "object", "instruction", "description", "region", "seed", "options")


@dataclass
class BatchItem:
    """One asset of a batch: its file, the folder name of its outputs (``id``, unique in the batch), what to do
    (``instruction``, optional ``description``, edit ``region``, editor ``seed``) and ``options``: capture and bake
    settings by flag name (``{"views": 8, "texture_size": 512}`` is ``--views 8 --texture-size 512``)."""

    asset: Path
    id: str
    instruction: str
    object: str | None = None
    description: str | None = None
    region: str | None = None
    seed: int | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def flags(self) -> list[str]:
        """``options`` as command-line flags (:func:`option_flags`)."""
        return option_flags(self.options)


def option_flags(options: dict[str, Any]) -> list[str]:
    """Settings by name as command-line flags: ``{"view_size": 256, "add_uv": True}`` -> ``["--view-size", "256",
    "--add-uv"]`` (``True``: the flag alone; ``False``/None: left out; lists comma-separated)."""
    out: list[str] = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value not in (False, None):
            out += [flag, ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    return out


def expand_assets(patterns: list[str]) -> list[Path]:
    """Asset files from ``patterns``: files as they are, folders (searched recursively) and globs for files with an
    :data:`ASSET_SUFFIXES` suffix; in order, each file once. A pattern that finds nothing is an error."""
    out: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in ASSET_SUFFIXES and p.is_file())
        else:
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True)
                           if Path(p).suffix.lower() in ASSET_SUFFIXES and Path(p).is_file())
        if not found:
            raise InvalidInputError(f"{pattern!r} names no asset file ({', '.join(ASSET_SUFFIXES)})")
        out += [p.absolute() for p in found if p.absolute() not in out]
    return out


def read_manifest(path: Path) -> list[dict[str, Any]]:
    """The lines of a JSONL manifest (blank lines and lines starting with ``#`` skipped), each a JSON object with at
    least ``asset``; asset paths are relative to the manifest's folder."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read the manifest {path}: {exc.strerror or exc}") from exc
    lines = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInputError(f"{path}, line {n}: not JSON ({exc.msg}); write one JSON object per line, e.g. "
                                    '{"asset": "chair.glb", "instruction": "make it red"}') from exc
        if not isinstance(entry, dict) or not isinstance(entry.get("asset"), str):
            raise InvalidInputError(f"{path}, line {n}: a line is a JSON object with an \"asset\" path")
        unknown = sorted(set(entry) - set(ITEM_KEYS))
        if unknown:
            raise InvalidInputError(f"{path}, line {n}: unknown key(s) {', '.join(unknown)}; a line may have: "
                                    f"{', '.join(ITEM_KEYS)} (capture and bake settings go under \"options\")")
        if not isinstance(entry.get("options", {}), dict):
            raise InvalidInputError(f"{path}, line {n}: \"options\" is an object of settings, e.g. {{\"views\": 8}}")
        entry["asset"] = str((path.parent / entry["asset"]).absolute())
        lines.append(entry)
    if not lines:
        raise InvalidInputError(f"the manifest {path} lists no asset")
    return lines


def _unique_id(asset: Path, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", asset.stem).strip("._") or "asset"
    name, n = stem, 2
    while name in taken:
        name, n = f"{stem}-{n}", n + 1
    taken.add(name)
    return name


def batch_items(assets: list[str], manifest: Path | None, defaults: dict[str, Any]) -> list[BatchItem]:
    """The batch: the manifest's lines, then the ``assets`` patterns (expanded), each with ``defaults``
    (``instruction``, ``description``, ``region``, ``object``, ``seed`` and ``options``) where it says nothing."""
    entries = read_manifest(manifest) if manifest is not None else []
    entries += [{"asset": str(p)} for p in expand_assets(assets)] if assets else []
    if not entries:
        raise InvalidInputError("give the assets to restyle (files, folders, globs) or --manifest FILE")
    taken: set[str] = set()
    items = []
    for entry in entries:
        asset = Path(entry["asset"])
        merged = {k: entry.get(k, defaults.get(k)) for k in ("instruction", "description", "region", "object", "seed")}
        if not merged["instruction"]:
            raise InvalidInputError(f"{asset.name}: no instruction: give --instruction or an \"instruction\" in its "
                                    "manifest line")
        items.append(BatchItem(asset, _unique_id(asset, taken), str(merged["instruction"]), merged["object"],
                               merged["description"], merged["region"], merged["seed"],
                               {**defaults.get("options", {}), **entry.get("options", {})}))
    return items
