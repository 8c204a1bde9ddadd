"""Which texels an edit of a region may write (bpy-free).

A capture with an edit region stores the region's triangles (``MeshData.region``). A texture's texels then fall in
three kinds: covered by region triangles only (writable), covered by triangles outside the region (kept bit for
bit, also where a region triangle shares them through overlapping UVs: those are *shared*, reported), and gutters
(no triangle): writable unless within :data:`GUARD` texels of an island outside the region, whose bilinear and
mipmapped lookups read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..format.viewset import MeshData
from .uv_raster import rasterise_uv

#: Gutter texels this close (texels, 8-connected) to an island outside the region are kept like the island.
GUARD = 2


@dataclass
class RegionTexels:
    """``writable`` bool (H, W): texels the edit may change; ``shared`` bool (H, W): texels covered both by the region
    and by surface outside it (overlapping UVs), which stay as they are."""

    writable: np.ndarray
    shared: np.ndarray


@dataclass
class RegionReport:
    """What a region's bake did to one texture: texels changed inside the region and outside it (0 unless something
    is wrong), and texels the region shares with the outside through overlapping UVs (kept)."""

    changed_inside: int
    changed_outside: int
    shared: int

    def message(self) -> str:
        text = (f"{self.changed_inside} texels changed inside the region, {self.changed_outside} outside")
        if self.shared:
            text += (f"; {self.shared} texels the region shares with the rest through overlapping UVs were kept "
                     "(bake into an auto-unwrapped UV map to edit them)")
        return text


def _covered(mesh: MeshData, size: tuple[int, int], triangles: np.ndarray) -> np.ndarray:
    image = np.zeros(size, bool)
    if len(triangles):
        surface = rasterise_uv(mesh, size, triangles)
        image[surface.rows, surface.cols] = True
    return image


def _grow(mask: np.ndarray, steps: int) -> np.ndarray:
    """``mask`` grown by ``steps`` texels (8-connected)."""
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        out = grown
    return out


def region_texels(mesh: MeshData, size: tuple[int, int], triangles: np.ndarray) -> RegionTexels:
    """The texels of a ``size`` (rows, cols) texture that ``triangles`` (one texture's) cover, split by
    ``mesh.region`` (which must be set)."""
    assert mesh.region is not None
    triangles = np.asarray(triangles)
    inside = _covered(mesh, size, triangles[mesh.region[triangles]])
    outside = _covered(mesh, size, triangles[~mesh.region[triangles]])
    gutter = ~inside & ~outside & ~_grow(outside, GUARD)
    return RegionTexels((inside & ~outside) | gutter, inside & outside)


def region_report(texels: RegionTexels, before: np.ndarray, after: np.ndarray) -> RegionReport:
    """Count the texels that differ between ``before`` and ``after`` (float (H, W, 3)) inside and outside the
    writable texels."""
    differs = (before[..., :3] != after[..., :3]).any(axis=2)
    return RegionReport(int((differs & texels.writable).sum()), int((differs & ~texels.writable).sum()),
                        int(texels.shared.sum()))
