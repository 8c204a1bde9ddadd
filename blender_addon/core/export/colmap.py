"""COLMAP text model: ``cameras.txt`` (one PINHOLE camera per view), ``images.txt`` (world-to-camera rotation as a
quaternion and translation, OpenCV axes) and an empty ``points3D.txt``, beside ``images/``.

COLMAP's conventions are ours: OpenCV camera axes, pixel centres at +0.5 from the image's top-left corner, so ``fx,
fy, cx, cy`` go as they are and the pose is ``world_to_camera``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..format.viewset import ViewSet
from .views import write_images


def rotation_to_quaternion(r: np.ndarray) -> np.ndarray:
    """(w, x, y, z), w >= 0, of a 3x3 rotation matrix (Shepperd's method: stable for every rotation)."""
    m = np.asarray(r, np.float64)
    t = np.trace(m)
    if t > 0:
        s = 2.0 * np.sqrt(1.0 + t)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def export_colmap(vs: ViewSet, images: list[np.ndarray], out: Path) -> None:
    """Write ``out/images/<view>.png`` and the text model ``out/sparse/0/{cameras,images,points3D}.txt``."""
    names = write_images(out / "images", [v.name for v in vs.views], images)
    model = out / "sparse" / "0"
    model.mkdir(parents=True, exist_ok=True)
    cams = ["# Camera list: CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[] (PINHOLE: fx, fy, cx, cy)"]
    imgs = ["# Image list: IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME (world-to-camera, OpenCV axes), "
            "then the image's 2D points (none)"]
    for i, (v, name) in enumerate(zip(vs.views, names), start=1):
        k = v.camera.intrinsics
        cams.append(f"{i} PINHOLE {k.width} {k.height} {k.fx!r} {k.fy!r} {k.cx!r} {k.cy!r}")
        w2c = v.camera.world_to_camera
        q, t = rotation_to_quaternion(w2c[:3, :3]), w2c[:3, 3]
        imgs.append(f"{i} {' '.join(repr(float(x)) for x in q)} {' '.join(repr(float(x)) for x in t)} {i} {name}")
        imgs.append("")
    (model / "cameras.txt").write_text("\n".join(cams) + "\n")
    (model / "images.txt").write_text("\n".join(imgs) + "\n")
    (model / "points3D.txt").write_text("# 3D point list: none (the cameras are exact; triangulate if you need points)\n")
