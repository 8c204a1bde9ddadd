"""nerfstudio ``transforms.json``: per-frame intrinsics (``fl_x, fl_y, cx, cy, w, h``) and a camera-to-world
``transform_matrix`` in OpenGL camera axes (+Y up, -Z forward: ``camera_to_world_opengl``), world units as captured;
with masks (``mask_path``, white on the object) and planar depth (``depth_file_path``, ``.npy`` float32 in scene
units, 0 off the object) where asked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..format.images import write_png
from ..format.viewset import ViewSet
from .views import write_images


def export_nerfstudio(vs: ViewSet, images: list[np.ndarray], out: Path, masks: bool = False,
                      depth: bool = False) -> None:
    names = write_images(out / "images", [v.name for v in vs.views], images)
    frames = []
    for v, name in zip(vs.views, names):
        k = v.camera.intrinsics
        frame = {"file_path": f"images/{name}", "transform_matrix": v.camera.camera_to_world_opengl.tolist(),
                 "fl_x": k.fx, "fl_y": k.fy, "cx": k.cx, "cy": k.cy, "w": k.width, "h": k.height}
        if masks:
            (out / "masks").mkdir(exist_ok=True)
            write_png(out / "masks" / name, (vs.load(v, "mask").astype(np.uint8) * 255))
            frame["mask_path"] = f"masks/{name}"
        if depth:
            (out / "depth").mkdir(exist_ok=True)
            np.save(out / "depth" / f"{v.name}.npy", vs.load(v, "depth").astype(np.float32))
            frame["depth_file_path"] = f"depth/{v.name}.npy"
        frames.append(frame)
    doc = {"camera_model": "OPENCV", "frames": frames}
    if depth:
        doc["depth_unit_scale_factor"] = 1.0
    (out / "transforms.json").write_text(json.dumps(doc, indent=2) + "\n")
