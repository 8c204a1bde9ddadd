"""The version is written once (blender_addon/__init__.py); the package, the server and the extension agree."""

import importlib.metadata
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))

import build_extension  # noqa: E402

import backend  # noqa: E402
import blender_addon  # noqa: E402


def test_one_version_everywhere(tmp_path):
    staged = build_extension.stage(tmp_path / "ext")
    manifest = tomllib.loads((staged / "blender_manifest.toml").read_text())
    assert manifest["version"] == blender_addon.__version__ == backend.__version__ == build_extension.version()
    assert importlib.metadata.version("groupedit") == blender_addon.__version__
    assert "version" not in tomllib.loads((ROOT / "blender_manifest.toml").read_text())
