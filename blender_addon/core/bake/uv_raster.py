"""Rasterise a mesh's UV layout: which triangle covers each texel, and where on it.

Texture convention: an (S_v, S_u) array, top row first; texel (row ``i``, column ``j``) has its centre
at UV ``((j + 0.5) / S_u, 1 - (i + 0.5) / S_v)`` (Blender's UV origin is the bottom-left corner).
Fully vectorised scanline rasterisation: every (triangle, texel row) pair gets the span of columns
inside the triangle, and the texels of all spans are enumerated in one array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from ..format.viewset import MeshData


@dataclass
class TexelSurface:
    """The surface behind every covered texel of a texture of ``size`` (rows, cols).

    ``rows``, ``cols`` (N,) index covered texels (row-major order); ``triangle`` (N,) the covering
    triangle; ``position`` (N, 3) world position; ``normal`` (N, 3)
    unit geometric normal; ``uv`` (N, 2) the texel centre's UV; ``uv_per_length`` (N,) how many UV
    units one world unit spans on its triangle; ``shared`` (N,) the texel's centre lies inside more
    than one triangle (overlapping or mirrored UVs: two surface places share it). ``corner_uvs`` (T, 3, 2)
    and ``corner_normals`` (T, 3, 3): the rasterised mesh's UVs and unit shading normals per triangle
    corner (references, not copies), for values interpolated at texels (:meth:`corner_values`).
    """

    size: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    triangle: np.ndarray
    position: np.ndarray
    normal: np.ndarray
    uv: np.ndarray
    uv_per_length: np.ndarray
    shared: np.ndarray
    corner_uvs: np.ndarray
    corner_normals: np.ndarray

    def corner_values(self, corners: np.ndarray, texels: np.ndarray | None = None) -> np.ndarray:
        """``corners`` (T, 3, C), values per triangle corner (another UV map's coordinates, shading
        normals...), interpolated at the centres of the covered ``texels`` (indices; default all): (K, C)."""
        corners = np.asarray(corners)
        if corners.shape[:2] != self.corner_uvs.shape[:2]:
            raise InvalidInputError(f"corner values for {corners.shape[0]} triangles, but the mesh has "
                                    f"{self.corner_uvs.shape[0]}: the mesh changed since the capture; capture again")
        which = slice(None) if texels is None else texels
        tri = self.triangle[which]
        sv, su = self.size
        uv = self.corner_uvs[tri].astype(np.float64)  # (K, 3, 2) the corners in the rasterised layout
        px = np.stack([uv[..., 0] * su - 0.5, (1.0 - uv[..., 1]) * sv - 0.5], axis=-1)
        a, e1, e2 = px[:, 0], px[:, 1] - px[:, 0], px[:, 2] - px[:, 0]
        d = np.stack([self.cols[which], self.rows[which]], axis=1) - a
        det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
        det = np.where(np.abs(det) > 1e-12, det, 1e-12)
        l1 = (d[:, 0] * e2[:, 1] - e2[:, 0] * d[:, 1]) / det
        l2 = (e1[:, 0] * d[:, 1] - d[:, 0] * e1[:, 1]) / det
        c = np.take(corners, tri, axis=0).astype(np.float64)
        return c[:, 0] * (1.0 - l1 - l2)[:, None] + c[:, 1] * l1[:, None] + c[:, 2] * l2[:, None]

    def shading_normal(self, texels: np.ndarray | None = None) -> np.ndarray:
        """Unit shading normals (K, 3) at the centres of the covered ``texels`` (default all)."""
        n = self.corner_values(self.corner_normals, texels)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    @property
    def covered(self) -> np.ndarray:
        """Boolean (rows, cols) image of covered texels."""
        m = np.zeros(self.size, bool)
        m[self.rows, self.cols] = True
        return m


def rasterise_uv(mesh: MeshData, size: int | tuple[int, int], triangles: np.ndarray | None = None,
                 chunk: int = 4_000_000) -> TexelSurface:
    """Find the covering triangle of every texel centre and the surface point there (last triangle wins on overlaps).

    ``triangles``: indices of the triangles to rasterise (e.g. one material's); default all. Texels
    whose centre lies outside every triangle are not covered. ``chunk`` bounds the number of candidate
    texels processed at once (memory).
    """
    if mesh.uvs.shape[1] != 3:
        raise InvalidInputError("the mesh has no UV map to bake into")
    sv, su = (size, size) if isinstance(size, int) else size
    uv = mesh.uvs.astype(np.float64)
    px = np.stack([uv[..., 0] * su - 0.5, (1.0 - uv[..., 1]) * sv - 0.5], axis=-1)  # texel-index space (col, row)
    lo = np.clip(np.floor(px.min(axis=1)).astype(np.int64), 0, [su - 1, sv - 1])
    hi = np.clip(np.ceil(px.max(axis=1)).astype(np.int64), 0, [su - 1, sv - 1])
    a, b, c = px[:, 0], px[:, 1], px[:, 2]
    det = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (c[:, 0] - a[:, 0]) * (b[:, 1] - a[:, 1])
    valid = np.abs(det) > 1e-12
    if triangles is not None:
        only = np.zeros(len(valid), bool)
        only[triangles] = True
        valid &= only
    tri_all = np.flatnonzero(valid)
    # barycentrics as affine functions of the texel centre: l_k = A_k x + B_k y + C_k (k = 1, 2; l_0 = 1 - l_1 - l_2)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = det[tri_all]
        ax, ay = a[tri_all, 0], a[tri_all, 1]
        e1x, e1y = b[tri_all, 0] - ax, b[tri_all, 1] - ay
        e2x, e2y = c[tri_all, 0] - ax, c[tri_all, 1] - ay
        coef = np.stack([
            np.stack([e2y / d, -e2x / d, (e2x * ay - e2y * ax) / d], axis=1),
            np.stack([-e1y / d, e1x / d, (e1y * ax - e1x * ay) / d], axis=1),
        ], axis=1)  # (T', 2, 3): (A, B, C) of l_1 and l_2
    coef = np.concatenate([(np.array([0.0, 0.0, 1.0]) - coef.sum(axis=1))[:, None], coef], axis=1)  # l_0, l_1, l_2
    # scanlines: every (triangle, row) pair, and the span of columns inside the triangle on that row
    nrows = hi[tri_all, 1] - lo[tri_all, 1] + 1
    pair_tri = np.repeat(np.arange(len(tri_all)), nrows)
    y = lo[tri_all, 1][pair_tri] + np.arange(int(nrows.sum())) - np.repeat(np.cumsum(nrows) - nrows, nrows)
    k = coef[pair_tri]  # (R, 3, 3)
    slope = k[:, :, 0]
    rest = k[:, :, 1] * y[:, None] + k[:, :, 2]  # l_k(x) = slope x + rest >= -eps
    eps = 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = (-eps - rest) / slope
    low = np.where(slope > 0, bound, -np.inf).max(axis=1)
    high = np.where(slope < 0, bound, np.inf).min(axis=1)
    empty = ((slope == 0) & (rest < -eps)).any(axis=1)
    x0 = np.maximum(np.ceil(low - 1e-7), lo[tri_all, 0][pair_tri])
    x1 = np.minimum(np.floor(high + 1e-7), hi[tri_all, 0][pair_tri])
    span = np.where(empty, 0, np.maximum(x1 - x0 + 1, 0)).astype(np.int64)
    x0 = np.where(span > 0, x0, 0).astype(np.int64)
    owner = -np.ones((sv, su), np.int64)
    claims = np.zeros(sv * su, np.int64)  # triangles whose interior (not just an edge) holds the centre
    csum = np.cumsum(span)
    start = 0
    while start < len(span):  # scanline pairs in groups whose texels fit in ``chunk``
        base = csum[start - 1] if start else 0
        stop = max(int(np.searchsorted(csum, base + chunk, side="right")), start + 1)
        n = span[start:stop]
        p = np.repeat(np.arange(start, stop), n)
        x = x0[p] + np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        yy = y[p]
        l1 = slope[p, 1] * x + rest[p, 1]
        l2 = slope[p, 2] * x + rest[p, 2]
        inside = (l1 >= -eps) & (l2 >= -eps) & (l1 + l2 <= 1 + eps)
        t = tri_all[pair_tri[p]]
        owner[yy[inside], x[inside]] = t[inside]
        strict = (l1 > 1e-6) & (l2 > 1e-6) & (l1 + l2 < 1 - 1e-6)
        claims += np.bincount(yy[strict] * su + x[strict], minlength=sv * su)
        start = stop
    flat = np.flatnonzero(owner.reshape(-1) >= 0)
    tri = owner.reshape(-1)[flat]
    rows, cols = np.divmod(flat, su)
    # per triangle: position and normal as affine functions of the texel centre (x = col, y = row),
    # p = A x + B y + C, one (T, 3) table per term, so that each texel gathers contiguous rows
    normals, areas = mesh.face_normals_and_areas()
    terms = np.zeros((3, len(mesh.triangles), 3))
    terms[:, tri_all] = np.einsum("tkc,tkd->ctd", coef, mesh.positions[mesh.triangles[tri_all]].astype(np.float64))
    position = np.take(terms[0], tri, axis=0)
    position *= cols[:, None]
    position += np.take(terms[1], tri, axis=0) * rows[:, None]
    position += np.take(terms[2], tri, axis=0)
    uv_area = 0.5 * np.abs(
        (uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1]) - (uv[:, 2, 0] - uv[:, 0, 0]) * (uv[:, 1, 1] - uv[:, 0, 1]))
    scale = np.sqrt(uv_area / np.maximum(areas, 1e-30))
    texel_uv = np.empty((len(flat), 2))
    texel_uv[:, 0] = (cols + 0.5) / su
    texel_uv[:, 1] = 1.0 - (rows + 0.5) / sv
    shared = claims[flat] > 1
    return TexelSurface((sv, su), rows, cols, tri, position, np.take(normals, tri, axis=0), texel_uv, scale[tri], shared,
                        mesh.uvs, mesh.corner_normals)


@dataclass
class UVLayoutReport:
    """How usable a UV layout is for baking: ``shared_share`` of covered texels that two surface places
    share (overlapping or mirrored islands), ``flipped_share`` of the UV area whose winding is reversed
    against the majority (mirrored islands), ``covered_share`` of the texture inside the layout."""

    shared_share: float
    flipped_share: float
    covered_share: float

    @property
    def overlapping(self) -> bool:
        """More than 0.5 % of the texels are shared: a bake would paint two places with one colour."""
        return self.shared_share > 0.005

    def message(self) -> str:
        if not self.overlapping:
            return "the UV layout has no overlapping islands"
        kind = "mirrored" if self.flipped_share > 0.05 else "overlapping"
        return (f"{self.shared_share:.1%} of the texels are shared by two surface places ({kind} UV islands): "
                "those places will get one colour; bake into a new auto-unwrapped UV map to keep them apart "
                "(Capture panel: Add unwrapped UV map; command line: capture --unwrap)")


def uv_layout_report(mesh: MeshData, surface: TexelSurface, triangles: np.ndarray | None = None) -> UVLayoutReport:
    """Check ``surface`` (rasterised from ``mesh``'s ``triangles``) for overlapping and mirrored UV islands."""
    tris = np.arange(len(mesh.triangles)) if triangles is None else np.asarray(triangles)
    uv = mesh.uvs[tris].astype(np.float64)
    signed = 0.5 * ((uv[:, 1, 0] - uv[:, 0, 0]) * (uv[:, 2, 1] - uv[:, 0, 1])
                    - (uv[:, 2, 0] - uv[:, 0, 0]) * (uv[:, 1, 1] - uv[:, 0, 1]))
    pos, neg = signed[signed > 0].sum(), -signed[signed < 0].sum()
    total = pos + neg
    n = max(len(surface.rows), 1)
    return UVLayoutReport(float(surface.shared.sum() / n), float(min(pos, neg) / total) if total > 0 else 0.0,
                          float(len(surface.rows) / (surface.size[0] * surface.size[1])))
