"""Build the installable extension zip with Blender's own extension tool.

Stages ``blender_manifest.toml`` and the contents of ``blender_addon/`` into ``build/extension/``,
validates the manifest and runs ``blender_ext.py build``. Usage::

    python tools/build_extension.py [--out dist]

Prints the path of the zip (``dist/groupedit-<version>.zip``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def blender_ext_tool() -> Path:
    """Path of ``blender_ext.py`` inside the installed ``bpy`` wheel (found without importing bpy)."""
    import importlib.util

    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the bpy module is not installed: run 'make venv' first")
    base = Path(next(iter(spec.submodule_search_locations)))
    found = sorted(base.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    if not found:
        raise SystemExit(f"blender_ext.py not found under {base}")
    return found[-1]


def version() -> str:
    """The version, from the one place it is written (``blender_addon/__init__.py``), read without importing."""
    import ast

    tree = ast.parse((ROOT / "blender_addon" / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__version__" for t in node.targets):
            return str(ast.literal_eval(node.value))
    raise SystemExit("blender_addon/__init__.py defines no __version__")


def stage(dest: Path) -> Path:
    """Copy the add-on and its manifest (with the version written in after ``id``) into ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(ROOT / "blender_addon", dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    lines = (ROOT / "blender_manifest.toml").read_text().splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("id ="))
    lines.insert(at + 1, f'version = "{version()}"')
    (dest / "blender_manifest.toml").write_text("\n".join(lines) + "\n")
    return dest


def build(out_dir: Path) -> Path:
    tool = blender_ext_tool()
    src = stage(ROOT / "build" / "extension")
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, str(tool), "validate", str(src)], check=True)
    zip_path = out_dir / f"groupedit-{version()}.zip"
    zip_path.unlink(missing_ok=True)
    subprocess.run(
        [sys.executable, str(tool), "build", "--source-dir", str(src), "--output-filepath", str(zip_path)], check=True
    )
    return zip_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    print(build(parser.parse_args().out.absolute()))


if __name__ == "__main__":
    main()
