"""Fill texels no view saw: along the surface in 3D first (across UV seams), then the gutters in UV space.

Two fills, both vectorised and multi-scale:

* :func:`fill_along_surface` works on the covered texels' *world positions*: it averages the known
  values in ever larger voxels (cell side doubling each level) and gives each unknown texel the
  average of the finest voxel around it that holds a known texel. Neighbours are 3D neighbours, so a
  hidden texel next to a UV seam takes its colour from the surface it touches, not from whatever
  island happens to lie next to it in the texture.
* :func:`dilate` grows the islands into the gutters ring by ring (each new texel the mean of its filled
  8-neighbours), so that texture filtering at an island's border reads the border's own colours;
* :func:`push_pull` fills what is left of the gutters from their UV neighbours at ever coarser scales,
  so that mip-mapping shows no seams.
"""

from __future__ import annotations

import numpy as np


def _voxel_keys(cells: np.ndarray) -> np.ndarray:
    """One int64 key per non-negative integer 3D cell (N, 3), 21 bits per coordinate; keys sort like the cells."""
    return (cells[:, 0] << 42) | (cells[:, 1] << 21) | cells[:, 2]


def _group(keys: np.ndarray, cells: np.ndarray, values: np.ndarray, counts: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Merge rows with equal ``keys``: (sorted unique keys, their cells, summed values, summed counts)."""
    uniq, first, inv = np.unique(keys, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    sums = np.stack([np.bincount(inv, weights=values[:, c], minlength=len(uniq)) for c in range(values.shape[1])], axis=1)
    return uniq, cells[first], sums, np.bincount(inv, weights=counts, minlength=len(uniq))


def fill_along_surface(position: np.ndarray, values: np.ndarray, known: np.ndarray, cell: float) -> np.ndarray:
    """``values`` (N, C) with every unknown row replaced by the mean of known rows in the smallest voxel around it.

    ``position`` (N, 3) world positions of the texels; ``known`` (N,) bool; ``cell`` the finest voxel
    side in world units (about one texel's world size). Levels double the side until every unknown
    row is filled. With no known row, ``values`` is returned unchanged.
    """
    out = np.array(values, np.float64, copy=True)
    todo = np.flatnonzero(~known)
    if not len(todo) or not known.any():
        return out
    origin = position.min(axis=0)
    extent = float((position.max(axis=0) - origin).max())
    cell = max(cell, extent / (2.0**21 - 2), 1e-12)
    base = np.clip(np.floor((position - origin) / cell), 0, 2**21 - 1).astype(np.int64)
    cells = base[known]
    keys, cells, sums, counts = _group(_voxel_keys(cells), cells, out[known], np.ones(len(cells)))
    level = 0
    while len(todo):
        query = _voxel_keys(base[todo] >> level)
        at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        hit = keys[at] == query
        out[todo[hit]] = sums[at[hit]] / counts[at[hit], None]
        todo = todo[~hit]
        level += 1
        cells = cells >> 1
        keys, cells, sums, counts = _group(_voxel_keys(cells), cells, sums, counts)
    return out


def dilate(colour: np.ndarray, known: np.ndarray, rings: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow ``known`` texels of ``colour`` (H, W, C) outwards by ``rings`` texels; returns (colour, known).

    Works on the frontier only (unknown texels next to known ones), so the cost follows the islands'
    perimeter, not the texture's area.
    """
    h, w = known.shape
    ww = w + 2  # one texel of padding all round: neighbours never leave the array
    col = np.zeros(((h + 2) * ww, colour.shape[2]), np.float32)
    kn = np.zeros((h + 2) * ww, bool)
    inside = np.zeros((h + 2, ww), bool)
    inside[1:-1, 1:-1] = True
    inside = inside.ravel()
    col.reshape(h + 2, ww, -1)[1:-1, 1:-1] = colour
    kn.reshape(h + 2, ww)[1:-1, 1:-1] = known
    offsets = np.array([-ww - 1, -ww, -ww + 1, -1, 1, ww - 1, ww, ww + 1])
    near = np.zeros_like(kn)
    for off in offsets:  # unknown texels with a known neighbour
        if off > 0:
            near[:-off] |= kn[off:]
        else:
            near[-off:] |= kn[:off]
    frontier = np.flatnonzero(near & ~kn & inside)
    for _ in range(rings):
        if not len(frontier):
            break
        nb = frontier[:, None] + offsets[None, :]
        k = kn[nb]
        cnt = k.sum(axis=1)
        acc = np.einsum("fn,fnc->fc", k.astype(np.float32), col[nb])
        col[frontier] = acc / np.maximum(cnt, 1)[:, None]
        kn[frontier] = True
        nxt = np.unique(nb.ravel())
        frontier = nxt[~kn[nxt] & inside[nxt]]
    out = col.reshape(h + 2, ww, -1)[1:-1, 1:-1]
    return out.astype(colour.dtype, copy=False), kn.reshape(h + 2, ww)[1:-1, 1:-1].copy()


def push_pull(colour: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Fill texels of zero weight from their neighbours at ever coarser scales (colour (H, W, C), weight (H, W));
    computes in ``colour``'s float type."""
    h, w = weight.shape
    if weight.max() <= 0:
        return colour
    known = weight > 0
    if known.all():
        return colour
    ph, pw = h + h % 2, w + w % 2
    c = np.zeros((ph, pw, colour.shape[2]), colour.dtype)
    wt = np.zeros((ph, pw), colour.dtype)
    c[:h, :w] = colour * known[..., None]
    wt[:h, :w] = known
    cs = c.reshape(ph // 2, 2, pw // 2, 2, -1).sum(axis=(1, 3))
    ws = wt.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
    coarse_mean = np.where(ws[..., None] > 0, cs / np.maximum(ws, 1e-12)[..., None], 0.0).astype(colour.dtype)
    coarse = push_pull(coarse_mean, ws)
    up = np.repeat(np.repeat(coarse, 2, axis=0), 2, axis=1)[:h, :w]
    return np.where(known[..., None], colour, up)
