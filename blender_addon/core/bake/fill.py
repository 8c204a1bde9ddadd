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


def _spread_bits(x: np.ndarray) -> np.ndarray:
    """Each of the low 21 bits of ``x`` (int64) moved to every third bit position."""
    x = x & 0x1FFFFF
    x = (x | (x << 32)) & 0x1F00000000FFFF
    x = (x | (x << 16)) & 0x1F0000FF0000FF
    x = (x | (x << 8)) & 0x100F00F00F00F00F
    x = (x | (x << 4)) & 0x10C30C30C30C30C3
    return (x | (x << 2)) & 0x1249249249249249


def _morton(position: np.ndarray, origin: np.ndarray, cell: float) -> np.ndarray:
    """Morton (Z-order) code of the voxels (side ``cell``, from ``origin``) holding ``position`` (N, 3),
    coordinates clipped to 0 .. 2**21 - 1: the code of a voxel's parent (side doubled) is the code shifted
    right by 3, so sorted codes stay sorted and grouped at every coarser level. One axis at a time, so
    that no (N, 3) temporaries are made."""
    code = np.zeros(len(position), np.int64)
    for d in range(3):
        index = np.clip(np.floor((position[:, d] - origin[d]) / cell), 0, 2**21 - 1).astype(np.int64)
        code |= _spread_bits(index) << d
    return code


def _merge_runs(codes: np.ndarray, sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge runs of equal values in sorted ``codes``: (unique codes, summed ``sums`` rows, summed ``counts``)."""
    starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    return codes[starts], np.add.reduceat(sums, starts, axis=0), np.add.reduceat(counts, starts)


def fill_along_surface(position: np.ndarray, values: np.ndarray, known: np.ndarray, cell: float) -> np.ndarray:
    """``values`` (N, C) with every unknown row replaced by the mean of known rows in the smallest voxel around it.

    ``position`` (N, 3) world positions of the texels; ``known`` (N,) bool; ``cell`` the finest voxel
    side in world units (about one texel's world size). Levels double the side until every unknown
    row is filled. With no known row, ``values`` is returned unchanged. The known rows are sorted once
    by Morton code; each coarser level merges the previous level's voxels.
    """
    out = np.array(values, np.float64, copy=True)
    todo = np.flatnonzero(~known)
    if not len(todo) or not known.any():
        return out
    origin = np.array([position[:, d].min() for d in range(3)])  # (per column: far faster than axis=0)
    extent = max(float(position[:, d].max() - origin[d]) for d in range(3))
    cell = max(cell, extent / (2.0**21 - 2), 1e-12)
    code = _morton(position, origin, cell)
    known_rows = np.flatnonzero(known)
    order = known_rows[np.argsort(code[known_rows])]
    keys, sums, counts = _merge_runs(code[order], np.take(out, order, axis=0), np.ones(len(order)))
    todo_code = code[todo]
    level = 0
    while len(todo):
        query = todo_code >> (3 * level)
        at = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
        hit = keys[at] == query
        out[todo[hit]] = sums[at[hit]] / counts[at[hit], None]
        todo, todo_code = todo[~hit], todo_code[~hit]
        level += 1
        keys, sums, counts = _merge_runs(keys >> 3, sums, counts)
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
    np.multiply(colour, known[..., None], out=c[:h, :w])
    wt[:h, :w] = known
    cs = c[0::2, 0::2] + c[1::2, 0::2]
    cs += c[0::2, 1::2]
    cs += c[1::2, 1::2]
    ws = wt[0::2, 0::2] + wt[1::2, 0::2]
    ws += wt[0::2, 1::2]
    ws += wt[1::2, 1::2]
    cs *= (1.0 / np.maximum(ws, 1e-12))[..., None]  # texels with no weight sum to 0 and stay 0
    coarse = push_pull(cs, ws)
    up = np.empty((ph, pw, colour.shape[2]), colour.dtype)
    up.reshape(ph // 2, 2, pw // 2, 2, -1)[...] = coarse[:, None, :, None]
    up = up[:h, :w]
    np.copyto(up, colour, where=known[..., None])
    return up
