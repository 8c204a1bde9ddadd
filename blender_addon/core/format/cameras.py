"""Pinhole cameras and the conventions every other module uses.

Conventions (stated once, used everywhere):

* **World frame**: Blender's world frame, right-handed, +Z up, lengths in scene units (metres times
  ``scene.unit_settings.scale_length``; the ViewSet manifest records the scale).
* **Camera frame**: OpenCV, +X right, +Y down, +Z forward (the viewing direction). ``camera_to_world``
  is a 4x4 matrix mapping camera-frame points to world points. The Blender/OpenGL camera frame
  (+X right, +Y up, -Z forward) is ``camera_to_world_opengl = camera_to_world @ diag(1, -1, -1, 1)``.
* **Pixel frame**: continuous coordinates ``(u, v)``, ``u`` to the right, ``v`` down, origin at the
  top-left *corner* of the image, so the image spans ``[0, W] x [0, H]`` and the centre of pixel
  (row ``i``, column ``j``) is ``(j + 0.5, i + 0.5)`` (COLMAP's convention). Arrays store the top row first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError

#: Flips the Y and Z camera axes: OpenCV <-> OpenGL/Blender camera frames (its own inverse).
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])
#: How far ``R Rᵀ`` may be from the identity for a pose to count as rigid (float32 round trips stay well inside).
RIGID_TOLERANCE = 1e-4


def is_rigid(camera_to_world: np.ndarray) -> bool:
    """Whether a 4x4 pose is rigid: orthonormal rotation within :data:`RIGID_TOLERANCE`, no reflection, last row
    ``0 0 0 1``. The one check of poses, for the ViewSet and for the edit server's jobs alike."""
    m = np.asarray(camera_to_world, dtype=np.float64)
    if m.shape != (4, 4) or not np.isfinite(m).all():
        return False
    r = m[:3, :3]
    return (bool(np.array_equal(m[3], [0.0, 0.0, 0.0, 1.0])) and bool(np.allclose(r @ r.T, np.eye(3),
            atol=RIGID_TOLERANCE)) and float(np.linalg.det(r)) > 0)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels (see the module docstring for the pixel frame)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise InvalidInputError(f"image size must be positive, got {self.width}x{self.height}")
        if self.fx <= 0 or self.fy <= 0:
            raise InvalidInputError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_fov(cls, fov_deg: float, width: int, height: int) -> "Intrinsics":
        """Square-pixel intrinsics whose *larger* image side spans ``fov_deg`` (Blender's AUTO sensor fit)."""
        if not 1.0 <= fov_deg <= 170.0:
            raise InvalidInputError(f"field of view must be between 1 and 170 degrees, got {fov_deg}")
        f = 0.5 * max(width, height) / math.tan(math.radians(fov_deg) / 2.0)
        return cls(fx=f, fy=f, cx=width / 2.0, cy=height / 2.0, width=width, height=height)

    @property
    def matrix(self) -> np.ndarray:
        """The 3x3 calibration matrix K (float64)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def half_tangents(self) -> tuple[float, float, float, float]:
        """Tangents of the view frustum's left, right, top and bottom half-angles (all positive)."""
        return (self.cx / self.fx, (self.width - self.cx) / self.fx, self.cy / self.fy, (self.height - self.cy) / self.fy)

    def to_dict(self) -> dict[str, float | int]:
        return {"fx": self.fx, "fy": self.fy, "cx": self.cx, "cy": self.cy, "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict) -> "Intrinsics":
        return cls(float(d["fx"]), float(d["fy"]), float(d["cx"]), float(d["cy"]), int(d["width"]), int(d["height"]))


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: intrinsics plus an OpenCV camera-to-world pose (4x4, float64, rigid)."""

    intrinsics: Intrinsics
    camera_to_world: np.ndarray

    def __post_init__(self) -> None:
        m = np.asarray(self.camera_to_world, dtype=np.float64)
        if m.shape != (4, 4):
            raise InvalidInputError(f"camera_to_world must be 4x4, got {m.shape}")
        if not is_rigid(m):
            raise InvalidInputError("camera_to_world must be a rigid transform (orthonormal rotation, no scale, "
                                    "last row 0 0 0 1)")
        object.__setattr__(self, "camera_to_world", m)

    @property
    def camera_to_world_opengl(self) -> np.ndarray:
        """Camera-to-world in Blender/OpenGL camera axes (+Y up, -Z forward)."""
        return self.camera_to_world @ OPENCV_TO_OPENGL

    @property
    def world_to_camera(self) -> np.ndarray:
        """World-to-camera (OpenCV axes), the inverse of ``camera_to_world``."""
        r = self.camera_to_world[:3, :3]
        t = self.camera_to_world[:3, 3]
        out = np.eye(4)
        out[:3, :3] = r.T
        out[:3, 3] = -r.T @ t
        return out

    @property
    def centre(self) -> np.ndarray:
        """Camera centre in world coordinates, shape (3,)."""
        return self.camera_to_world[:3, 3].copy()

    @property
    def forward(self) -> np.ndarray:
        """Unit viewing direction in world coordinates, shape (3,)."""
        return self.camera_to_world[:3, 2].copy()

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> OpenCV camera-frame points (..., 3)."""
        w2c = self.world_to_camera
        return np.asarray(points, dtype=np.float64) @ w2c[:3, :3].T + w2c[:3, 3]

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points (..., 3) to pixel coordinates (..., 2) and planar depth (...,).

        Depth is the OpenCV camera-frame z (distance along the optical axis); points behind the
        camera get a non-positive depth and meaningless pixel coordinates.
        """
        pc = self.to_camera(points)
        z = pc[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = self.intrinsics.fx * pc[..., 0] / z + self.intrinsics.cx
            v = self.intrinsics.fy * pc[..., 1] / z + self.intrinsics.cy
        return np.stack([u, v], axis=-1), z

    def pixel_rays(self) -> np.ndarray:
        """Unit world-space ray directions through every pixel centre, shape (H, W, 3)."""
        k = self.intrinsics
        j, i = np.meshgrid(np.arange(k.width) + 0.5, np.arange(k.height) + 0.5)
        d = np.stack([(j - k.cx) / k.fx, (i - k.cy) / k.fy, np.ones_like(j)], axis=-1)
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        return d @ self.camera_to_world[:3, :3].T

    def to_dict(self) -> dict:
        return {
            **self.intrinsics.to_dict(),
            "camera_to_world": self.camera_to_world.tolist(),
            "camera_to_world_opengl": self.camera_to_world_opengl.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        return cls(Intrinsics.from_dict(d), np.array(d["camera_to_world"], dtype=np.float64))


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, 0.0, 1.0])) -> np.ndarray:
    """OpenCV camera-to-world (4x4) of a camera at ``eye`` looking at ``target``.

    Image "up" follows the world ``up`` vector; when the view is (anti)parallel to it (straight down or
    up), world +Y is used instead so that top and bottom views are still well defined.
    """
    eye = np.asarray(eye, dtype=np.float64)
    fwd = np.asarray(target, dtype=np.float64) - eye
    norm = np.linalg.norm(fwd)
    if norm == 0:
        raise InvalidInputError("camera position equals its target")
    fwd /= norm
    up = np.asarray(up, dtype=np.float64)
    if abs(float(np.dot(fwd, up / np.linalg.norm(up)))) > 0.999:
        up = np.array([0.0, 1.0, 0.0]) if fwd[2] < 0 else np.array([0.0, -1.0, 0.0])
    right = np.cross(fwd, up)
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, fwd, eye
    return m


def blender_intrinsics(
    lens_mm: float,
    sensor_width_mm: float,
    sensor_height_mm: float,
    sensor_fit: str,
    width: int,
    height: int,
    shift_x: float = 0.0,
    shift_y: float = 0.0,
) -> Intrinsics:
    """Intrinsics of a Blender perspective camera rendered at ``width`` x ``height`` square pixels.

    ``sensor_fit`` is Blender's 'AUTO', 'HORIZONTAL' or 'VERTICAL'. Shifts are in units of the
    fitted sensor side, as in Blender (positive ``shift_y`` moves the image content down).
    """
    if sensor_fit == "AUTO":
        fit_px, sensor = max(width, height), sensor_width_mm
    elif sensor_fit == "HORIZONTAL":
        fit_px, sensor = width, sensor_width_mm
    elif sensor_fit == "VERTICAL":
        fit_px, sensor = height, sensor_height_mm
    else:
        raise InvalidInputError(f"unknown sensor fit {sensor_fit!r}")
    f = lens_mm / sensor * fit_px
    return Intrinsics(f, f, width / 2.0 - shift_x * fit_px, height / 2.0 + shift_y * fit_px, width, height)


def framing_distance(points: np.ndarray, camera_to_world: np.ndarray, intrinsics: Intrinsics, margin: float) -> float:
    """How far back along its viewing axis a camera must sit so every point fits the frame.

    ``points`` (N, 3) are world points; ``camera_to_world`` is an OpenCV pose whose orientation is
    kept and whose position is the point the camera backs off from (usually the object's centre);
    ``margin`` is the share of the frame's width and height kept free on each side (0.05 = 5 %).
    Returns the distance ``d`` such that the camera at ``position - d * forward`` sees every point
    inside the margin. Points on the camera plane are kept at least 1e-6 in front.
    """
    if not 0.0 <= margin < 0.5:
        raise InvalidInputError(f"margin must be in [0, 0.5), got {margin}")
    r = camera_to_world[:3, :3]
    pc = (np.asarray(points, dtype=np.float64) - camera_to_world[:3, 3]) @ r  # camera-frame coordinates
    left, right, top, bottom = (t * (1.0 - 2.0 * margin) for t in intrinsics.half_tangents)
    x, y, z = pc[:, 0], pc[:, 1], pc[:, 2]
    # A point fits when -left <= x / (z + d) <= right (and likewise for y); solve each for the smallest d.
    need = np.maximum.reduce([x / right - z, -x / left - z, y / bottom - z, -y / top - z, 1e-6 - z])
    return float(need.max())
