"""A ray-traced sphere seen by N cameras: images, masks, exact position passes and cameras, as a ViewSet has them.

Conventions as in docs/viewset.md: K in pixels (centre of pixel (i, j) at (j + 0.5, i + 0.5)), OpenCV
camera_to_world (+X right, +Y down, +Z forward), world +Z up, positions 0 outside the object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from blender_addon.core.format.cameras import look_at


@dataclass
class SceneViews:
    """``images`` N uint8 (S, S, 3); ``masks`` N bool (S, S); ``positions`` N float32 (S, S, 3);
    ``cameras`` N pairs (K (3, 3), camera_to_world (4, 4)) float64."""

    images: list[np.ndarray]
    masks: list[np.ndarray]
    positions: list[np.ndarray]
    cameras: list[tuple[np.ndarray, np.ndarray]]


def sphere_views(n: int = 3, size: int = 64, radius: float = 1.0, distance: float = 3.5,
                 step_deg: float = 20.0) -> SceneViews:
    """A textured unit sphere at the origin from ``n`` cameras ``step_deg`` apart in azimuth."""
    f = size / (2 * np.tan(np.radians(25)))
    K = np.array([[f, 0, size / 2], [0, f, size / 2], [0, 0, 1.0]])
    jj, ii = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    rays = np.stack([(jj - K[0, 2]) / f, (ii - K[1, 2]) / f, np.ones_like(jj)], -1)
    out = SceneViews([], [], [], [])
    for k in range(n):
        a = np.radians(-90 + step_deg * k)
        centre = distance * np.array([np.cos(a), np.sin(a), 0.15])
        c2w = look_at(centre, np.zeros(3))
        d = rays @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        b = d @ centre
        disc = b * b - (centre @ centre - radius**2)
        hit = disc > 0
        t = -b - np.sqrt(np.where(hit, disc, 0.0))
        pos = np.where(hit[..., None], centre + t[..., None] * d, 0.0).astype(np.float32)
        colour = 128 + 100 * np.sin(4.0 * pos + np.array([0.0, 1.0, 2.0]))
        img = np.where(hit[..., None], colour, 60.0).astype(np.uint8)
        out.images.append(img)
        out.masks.append(hit)
        out.positions.append(pos)
        out.cameras.append((K.copy(), c2w))
    return out
