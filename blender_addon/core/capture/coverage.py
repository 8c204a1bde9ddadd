"""How much of an object's surface a set of views sees.

Coverage is the area-weighted share of the surface that at least one view sees at an angle of at
most ``max_angle_deg`` between the surface normal and the direction to the camera, unoccluded. The
surface is sampled at four points per triangle; occlusion is tested against each view's depth pass.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..format.cameras import Camera
from ..format.viewset import MeshData

#: Barycentric weights of the sample points in every triangle (centroid and three inner points).
_SAMPLES = np.array([[1 / 3, 1 / 3, 1 / 3], [2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])


def surface_samples(mesh: MeshData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample points (S, 3), their unit normals (S, 3) and area weights (S,) summing to the total area."""
    normals, areas = mesh.face_normals_and_areas()
    pts = np.einsum("sk,tkd->tsd", _SAMPLES, mesh.corners).reshape(-1, 3)
    k = len(_SAMPLES)
    return pts, np.repeat(normals, k, axis=0), np.repeat(areas / k, k)


def seen_by_view(
    points: np.ndarray, normals: np.ndarray, camera: Camera, depth: np.ndarray, max_angle_deg: float = 75.0
) -> np.ndarray:
    """Boolean (S,): which sample points ``camera`` sees within the angle limit, unoccluded.

    ``depth`` (H, W) is the view's planar depth pass (0 where the object is absent).
    """
    uv, z = camera.project(points)
    to_cam = camera.centre - points
    dist = np.linalg.norm(to_cam, axis=1)
    cos = np.einsum("sd,sd->s", normals, to_cam) / np.maximum(dist, 1e-12)
    k = camera.intrinsics
    ok = (z > 0) & (cos >= math.cos(math.radians(max_angle_deg)))
    col = np.floor(np.where(ok, uv[:, 0], -1)).astype(np.int64)
    row = np.floor(np.where(ok, uv[:, 1], -1)).astype(np.int64)
    ok &= (col >= 0) & (col < k.width) & (row >= 0) & (row < k.height)
    d = np.zeros_like(z)
    d[ok] = depth[row[ok], col[ok]]
    # tolerance: the depth change across a few pixels of a surface seen at the cut-off angle
    tol = 0.01 * z + 3.0 * z / k.fx / max(math.cos(math.radians(max_angle_deg)), 0.1)
    return ok & (d > 0) & (np.abs(d - z) <= tol)


def coverage(mesh: MeshData, views: Iterable[tuple[Camera, np.ndarray]], max_angle_deg: float = 75.0) -> float:
    """Area-weighted share (0..1) of the surface seen by at least one of ``views`` ((camera, depth) pairs)."""
    pts, normals, weights = surface_samples(mesh)
    total = weights.sum()
    if total <= 0:
        return 0.0
    seen = np.zeros(len(pts), bool)
    for camera, depth in views:
        seen |= seen_by_view(pts, normals, camera, depth, max_angle_deg)
    return float(weights[seen].sum() / total)
