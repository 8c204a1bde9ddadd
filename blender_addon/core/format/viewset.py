"""The ViewSet: a captured group of views of one object, in memory and on disk.

On disk a ViewSet is a folder::

    manifest.json            what is below, the object, the cameras, conventions (see docs/viewset.md)
    mesh.npz                 the evaluated mesh in world space (positions, triangles, per-corner UVs, the edit
                             region's triangles, ...)
    colour/view_000.png      lit render, sRGB 8-bit RGB
    albedo/view_000.png      unlit base colour, sRGB 8-bit RGB
    mask/view_000.npy        bool (H, W): the object covers the pixel centre
    depth/view_000.npy       float32 (H, W): planar depth (OpenCV camera z), 0 outside the mask
    normal/view_000.npy      float32 (H, W, 3): world-space unit shading normal, 0 outside the mask
    uv/view_000.npy          float32 (H, W, 2): UV (origin bottom-left, as in Blender), 0 outside the mask
    position/view_000.npy    float32 (H, W, 3): world position of the surface at the pixel centre, 0 outside
    (albedo_filtered/, albedo_linear/, colour_linear/, diffuse_response/, metal_light/, metal_reflectance/, metal_edge/:
     the lighting-removal passes from the renders' light passes, see :data:`PASSES`)
    edited/view_000.png      after an edit: the edited views, and edited/edit.json (how they were made)

This module reads and writes that form with numpy alone (no bpy).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .cameras import Camera
from ..errors import ViewSetFormatError
from .images import read_png, write_png

FORMAT = "groupedit.viewset"
#: The version a capture writes. 2 added the edit region (the ``region`` pass, ``mesh.npz`` ``region``) and
#: ``metal_edge``: a reader that does not know the region must refuse such a ViewSet rather than edit all of it.
VERSION = 2
#: Versions this reader reads (a version 1 ViewSet has no region: the whole object).
READABLE_VERSIONS = (1, 2)
MANIFEST = "manifest.json"
MESH_FILE = "mesh.npz"

#: Every per-view pass: file kind and what it holds (mirrored in docs/viewset.md).
PASSES: dict[str, tuple[str, str]] = {
    "colour": ("png", "uint8 (H, W, 3), sRGB-encoded, lit as the scene (or the studio light) shows it"),
    "albedo": ("png", "uint8 (H, W, 3), sRGB-encoded unlit base colour"),
    "mask": ("npy", "bool (H, W), True where the object covers the pixel centre"),
    "depth": ("npy", "float32 (H, W), planar depth along the camera's optical axis, scene units, 0 outside"),
    "normal": ("npy", "float32 (H, W, 3), world-space unit shading normal, 0 outside"),
    "uv": ("npy", "float32 (H, W, 2), UV of the object's UV map (origin bottom-left), 0 outside"),
    "position": ("npy", "float32 (H, W, 3), world-space position at the pixel centre, 0 outside"),
    "albedo_filtered": ("png", "uint8 (H, W, 3), sRGB-encoded base colour through the colour render's pixel filter "
                        "and samples (what the colour render shows of it), the background colour outside"),
    "colour_linear": ("npy", "float16 (H, W, 3), the colour render in linear light before clipping and encoding"),
    "diffuse_response": ("npy", "float16 (H, W, 3), linear colour the diffuse light adds per unit of linear base "
                         "colour, 0 outside"),
    "metal_light": ("npy", "float16 (H, W, 3), linear colour a metal of reflectance 1 would add (metallic times "
                    "the glossy light), 0 outside"),
    "metal_reflectance": ("npy", "float16 (H, W, 3), the metal's reflectance where metallic >= 0.5 (a point of "
                          "how it rises with the base colour), NaN elsewhere"),
    "region": ("npy", "bool (H, W), True where the edit region (the capture's ``region`` setting) is the visible "
               "surface at the pixel centre; absent: the whole object is the region"),
    "metal_edge": ("npy", "float16 (H, W, 3), the metal's reflectance at base colour 0 (its Fresnel edge) at the "
                   "pixel centre, where metallic >= 0.5, NaN elsewhere"),
    "albedo_linear": ("npy", "float16 (H, W, 3), linear base colour through the colour render's pixel filter and "
                      "samples (``albedo_filtered`` before its 8-bit encoding), 0..1, the background colour outside"),
}

#: Folders and files that edits add beside the capture: the edited views (an earlier edit moves to ``edited.1``,
#: ``edited.2``, ...), the record of how they were made, and a running job's live preview.
EDITED_DIR = "edited"
EDIT_RECORD = "edit.json"
PREVIEW_FILE = ".preview.png"
#: The closed loop of the last Apply to texture: the restyled object's renders and error images.
VERIFY_DIR = "verify"

#: Everything a capture writes into a ViewSet folder besides the manifest: one folder per pass and the mesh.
CAPTURE_ENTRIES: tuple[str, ...] = (*PASSES, MESH_FILE)
#: Pass folders earlier versions wrote (the black/white response renders): removed with a capture they belong to.
RETIRED_PASSES: tuple[str, ...] = ("black", "white")


def stale_entries(root: Path) -> list[Path]:
    """What an overwritten capture removes from ``root`` first: every pass folder and the mesh
    (:data:`CAPTURE_ENTRIES`), and every edit of the earlier capture (``edited``, ``edited.1``, ..., a half-written
    ``edited.part``, the live preview, the closed loop's ``verify``), so that nothing of it can mix with the new
    views."""
    edits = [p for p in root.glob(EDITED_DIR + "*") if p.name == EDITED_DIR or p.name.startswith(EDITED_DIR + ".")]
    return [root / name for name in (*CAPTURE_ENTRIES, *RETIRED_PASSES, PREVIEW_FILE, VERIFY_DIR)] + sorted(edits)

CONVENTIONS: dict[str, str] = {
    "world": "Blender world frame: right-handed, +Z up, scene units (see units)",
    "camera": "OpenCV: +X right, +Y down, +Z forward; camera_to_world maps camera to world points; "
    "camera_to_world_opengl = camera_to_world @ diag(1, -1, -1, 1) is the Blender/OpenGL pose",
    "pixel": "u right, v down, origin at the top-left corner of the image; pixel (row i, col j) has its "
    "centre at (j + 0.5, i + 0.5); arrays store the top row first",
    "uv": "Blender UV: origin at the bottom-left of the texture, u right, v up",
    "depth": "planar depth = camera-frame z, not distance along the ray",
}


@dataclass
class View:
    """One view: its name, camera and files (paths relative to the ViewSet root, keyed by pass)."""

    name: str
    camera: Camera
    files: dict[str, str]
    azimuth_deg: float | None = None
    elevation_deg: float | None = None
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "azimuth_deg": self.azimuth_deg,
            "elevation_deg": self.elevation_deg,
            "camera": self.camera.to_dict(),
            "files": dict(self.files),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "View":
        return cls(
            name=str(d["name"]),
            camera=Camera.from_dict(d["camera"]),
            files={str(k): str(v) for k, v in d["files"].items()},
            azimuth_deg=d.get("azimuth_deg"),
            elevation_deg=d.get("elevation_deg"),
            label=str(d.get("label", "")),
        )


@dataclass
class MeshData:
    """The object's evaluated mesh in world space.

    ``positions`` (V, 3) float64; ``triangles`` (T, 3) int32 vertex indices, counter-clockwise seen from
    the front; ``uvs`` (T, 3, 2) float32 per-corner UVs (empty (T, 0, 2) when the mesh has none);
    ``corner_normals`` (T, 3, 3) float32 world-space shading normals; ``material_index`` (T,) int32;
    ``region`` (T,) bool: the triangles of the capture's edit region (None: the region is the whole object).
    """

    positions: np.ndarray
    triangles: np.ndarray
    uvs: np.ndarray
    corner_normals: np.ndarray
    material_index: np.ndarray
    region: np.ndarray | None = None

    @property
    def corners(self) -> np.ndarray:
        """World positions of each triangle's corners, (T, 3, 3)."""
        return self.positions[self.triangles]

    def face_normals_and_areas(self) -> tuple[np.ndarray, np.ndarray]:
        """Unit geometric normals (T, 3) and areas (T,) of the triangles."""
        c = self.corners
        n = np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
        length = np.linalg.norm(n, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            unit = np.where(length[:, None] > 0, n / length[:, None], 0.0)
        return unit, 0.5 * length

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            positions=self.positions,
            triangles=self.triangles,
            uvs=self.uvs,
            corner_normals=self.corner_normals,
            material_index=self.material_index,
            **({} if self.region is None else {"region": self.region}),
        )

    @classmethod
    def load(cls, path: Path) -> "MeshData":
        with np.load(path) as z:
            fields = {k: z[k] for k in ("positions", "triangles", "uvs", "corner_normals", "material_index")}
            return cls(**fields, region=z["region"].astype(bool) if "region" in z.files else None)


@dataclass
class ViewSet:
    """A captured group of views (see the module docstring for the folder layout)."""

    root: Path
    object_name: str
    views: list[View]
    rig: dict[str, Any] = field(default_factory=dict)
    uv_map: str | None = None
    materials: list[str] = field(default_factory=list)
    units: dict[str, Any] = field(default_factory=lambda: {"length": "metre", "scale_length": 1.0})
    capture: dict[str, Any] = field(default_factory=dict)
    coverage: float | None = None
    generator: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------- disk
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "generator": self.generator,
            "object": {"name": self.object_name, "uv_map": self.uv_map, "materials": self.materials, "mesh": MESH_FILE},
            "units": self.units,
            "conventions": CONVENTIONS,
            "passes": {k: {"file": kind, "content": what} for k, (kind, what) in PASSES.items()},
            "capture": self.capture,
            "rig": self.rig,
            "coverage": self.coverage,
            "views": [v.to_dict() for v in self.views],
        }

    def write_manifest(self) -> Path:
        """Write ``manifest.json`` atomically and return its path."""
        path = self.root / MANIFEST
        tmp = path.with_name(MANIFEST + ".part")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def read(cls, root: str | os.PathLike) -> "ViewSet":
        """Read a ViewSet folder's manifest (pixel data is loaded lazily with :meth:`load`)."""
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise ViewSetFormatError(f"{root} is not a ViewSet: it has no {MANIFEST} (capture views into it first)")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ViewSetFormatError(f"{path} is not valid JSON: {exc}") from exc
        if d.get("format") != FORMAT:
            raise ViewSetFormatError(f"{path} is not a GroupEdit ViewSet manifest (format {d.get('format')!r})")
        if d.get("version") not in READABLE_VERSIONS:
            raise ViewSetFormatError(
                f"{path} has ViewSet version {d.get('version')}; this version of GroupEdit reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}: update GroupEdit, or capture again"
            )
        try:
            return cls(
                root=root,
                object_name=d["object"]["name"],
                views=[View.from_dict(v) for v in d["views"]],
                rig=d.get("rig", {}),
                uv_map=d["object"].get("uv_map"),
                materials=list(d["object"].get("materials", [])),
                units=d.get("units", {}),
                capture=d.get("capture", {}),
                coverage=d.get("coverage"),
                generator=d.get("generator", {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ViewSetFormatError(f"{path} is missing or has a bad field: {exc}") from exc

    # ------------------------------------------------------------------------------------- data
    def view(self, name: str) -> View:
        for v in self.views:
            if v.name == name:
                return v
        raise ViewSetFormatError(f"the ViewSet has no view named {name!r}")

    def path(self, view: View, pass_name: str) -> Path:
        """Absolute path of one pass of one view; only names from the manifest, never outside the root."""
        if pass_name not in view.files:
            raise ViewSetFormatError(f"view {view.name} has no {pass_name!r} pass")
        p = (self.root / view.files[pass_name]).resolve()
        if self.root.resolve() not in p.parents:
            raise ViewSetFormatError(f"view {view.name}: file {view.files[pass_name]!r} lies outside the ViewSet")
        return p

    def load(self, view: View, pass_name: str) -> np.ndarray:
        """Load one pass of one view as a numpy array (shapes and types in :data:`PASSES`)."""
        p = self.path(view, pass_name)
        if not p.is_file():
            raise ViewSetFormatError(f"missing file {p} ({pass_name} of {view.name})")
        if p.suffix == ".png":
            img = read_png(p)
            return img[..., :3] if img.shape[2] >= 3 else img
        return np.load(p, allow_pickle=False)

    def mesh(self) -> MeshData:
        p = self.root / MESH_FILE
        if not p.is_file():
            raise ViewSetFormatError(f"{self.root} has no {MESH_FILE}")
        return MeshData.load(p)


def write_view_files(root: Path, name: str, passes: dict[str, np.ndarray]) -> dict[str, str]:
    """Write one view's passes under ``root`` (``<pass>/<name>.<png|npy>``) and return the relative paths."""
    files = {}
    for pass_name, array in passes.items():
        if pass_name not in PASSES:
            raise ViewSetFormatError(f"unknown pass {pass_name!r}")
        kind = PASSES[pass_name][0]
        rel = f"{pass_name}/{name}.{kind}"
        (root / pass_name).mkdir(parents=True, exist_ok=True)
        if kind == "png":
            write_png(root / rel, array)
        else:
            np.save(root / rel, array, allow_pickle=False)
        files[pass_name] = rel
    return files
