"""A Must3R input folder: ``images/`` holding only RGB images (Must3R opens every file there), each padded to exactly
4:3 (an aspect its 512 model takes as it is: anything else it centre-crops, losing the object's top and bottom), the
padding in the capture's background colour and the principal point shifted by it; names in rig order (its ``linseq``
mode pairs neighbours); the exact cameras beside the folder (``cameras.json``) and a README with the command and how
to compare its cameras with ours (:func:`align_sim3`: Must3R's poses come in the first camera's frame at an arbitrary
scale).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..format.images import linear_to_srgb, to_uint8
from ..format.viewset import ViewSet
from .views import write_images

#: Width : height of the padded images.
ASPECT = (4, 3)


def padding(width: int, height: int) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` pixels that make a ``width`` x ``height`` image exactly 4:3, as little as
    possible and centred (the odd pixel right / bottom)."""
    k = max(-(-width // ASPECT[0]), -(-height // ASPECT[1]))
    pad_w, pad_h = ASPECT[0] * k - width, ASPECT[1] * k - height
    return pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2


def export_must3r(vs: ViewSet, images: list[np.ndarray], out: Path) -> None:
    """Write ``out/images/``, ``out/cameras.json`` (per view: K of the padded image, OpenCV camera-to-world, the
    padding) and ``out/README.md``."""
    background = to_uint8(linear_to_srgb(np.asarray((vs.capture or {}).get("background", (0.5, 0.5, 0.5)),
                                                    np.float32)))
    padded, cameras = [], {}
    for v, image in zip(vs.views, images):
        h, w = image.shape[:2]
        left, top, right, bottom = padding(w, h)
        canvas = np.empty((h + top + bottom, w + left + right, 3), np.uint8)
        canvas[:] = background
        canvas[top:top + h, left:left + w] = image
        padded.append(canvas)
        k = v.camera.intrinsics
        cameras[v.name] = {"K": [[k.fx, 0.0, k.cx + left], [0.0, k.fy, k.cy + top], [0.0, 0.0, 1.0]],
                           "width": canvas.shape[1], "height": canvas.shape[0],
                           "camera_to_world": v.camera.camera_to_world.tolist(),
                           "padding": {"left": left, "top": top, "right": right, "bottom": bottom}}
    write_images(out / "images", [v.name for v in vs.views], padded)
    (out / "cameras.json").write_text(json.dumps({"conventions": "OpenCV camera axes (+X right, +Y down, +Z forward); "
                                                  "pixel centres at +0.5 from the top-left corner; world units as "
                                                  "captured", "views": cameras}, indent=2) + "\n")
    (out / "README.md").write_text(_README.format(n=len(vs.views), w=padded[0].shape[1], h=padded[0].shape[0]))


def align_sim3(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The similarity ``x -> s R x + t`` that best maps ``source`` points (N, 3) onto ``target`` (N, 3) in the least
    squares sense (Umeyama 1991), N >= 3 not collinear: ``(s, R (3, 3), t (3,))``. Use it on camera centres: Must3R's
    against the capture's."""
    src, dst = np.asarray(source, np.float64), np.asarray(target, np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    xs, xd = src - mu_s, dst - mu_d
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    r = u @ sign @ vt
    s = float(np.trace(np.diag(d) @ sign) / (xs ** 2).sum() * len(src))
    return s, r, mu_d - s * r @ mu_s


_README = """# Must3R input ({n} views, {w} x {h})

`images/` holds only the views, padded to exactly 4:3 in the capture's background colour (Must3R's 512 model takes
4:3 as it is; it would centre-crop other aspects and cut the object), named in rig order.
`cameras.json` (beside the folder, not in it: Must3R opens every file in `images/`) holds the capture's exact camera
of each padded image: `K` (the principal point shifted by the padding) and the OpenCV camera-to-world pose.

Reconstruct (Must3R's own repository and weights, not part of GroupEdit):

    python get_reconstruction.py --image_dir images --weights MUSt3R_512.pth --image_size 512 \\
        --execution_mode linseq --output out

Must3R's poses are OpenCV camera-to-world in its first camera's frame at an arbitrary scale. To compare them with
ours, align the camera centres with a similarity (scale, rotation, translation), e.g. with GroupEdit's
`blender_addon.core.export.must3r.align_sim3(must3r_centres, our_centres)`, then compare the aligned centres and
rotations view by view (same order: the file names).
"""
