"""Give a baked edit back the detail the bake cannot see, as a local colour mapping of the original texture.

A bake is as sharp as its views: the views have fewer pixels across the object than the texture has
texels, and the colour render's pixel filter blurs them further. The original texture ``T`` is known
exactly, though, and so is how the same bake blurs it: the *guide* ``I``, the bake of the original
capture's albedo (through the colour render's pixel filter) from the same samples. Where the edit is
locally a colour mapping of the original (``T' = A T + b`` in a window, ``A`` a 3 x 3 matrix), and since a
bake is a weighted mean (linear), the bake of the edited views is ``p = A I + b``, so

    T' = p + A (T - I):

the edit's bake plus the detail the bake lost from the original, mapped the way the edit maps colours.
What no such mapping explains (detail the edit adds where the original is plain) stays as baked. ``A``
comes from a ridge regression of ``p`` on ``I`` over windows of texels, pulled towards the identity: where
the guide is flat (``T - I`` small anyway), the result is the original texture plus the baked change.

All values are linear light, per covered texel (the order of a :class:`~.uv_raster.TexelSurface`).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .uv_raster import TexelSurface

#: Windows are 3 x 3 tiles of this share of the texture's side (8 texels at 1024, 32 at 4096).
TILE_SHARE = 1.0 / 128.0
#: Ridge weight (linear albedo squared) pulling the mapping towards the identity: guides whose local
#: spread is below about its square root (0.003) tell little about the mapping.
RIDGE = 1e-5


#: Texels processed at once (bounds the working memory at 4096² textures).
CHUNK = 1 << 20


def _tile_sums(tile: np.ndarray, tiles: int, guide: np.ndarray, value: np.ndarray) -> np.ndarray:
    """(tiles, 25) float64 per-tile sums of 1, guide (3), value (3), guide guide^T (9) and guide value^T (9)
    for texels in tiles ``tile`` (M,) with ``guide``, ``value`` (M, 3) float64."""
    sums = np.zeros((tiles, 25))
    for lo in range(0, len(tile), CHUNK):
        t, g, v = tile[lo:lo + CHUNK], guide[lo:lo + CHUNK], value[lo:lo + CHUNK]
        products = np.concatenate([np.ones((len(t), 1)), g, v, (g[:, :, None] * g[:, None, :]).reshape(-1, 9),
                                   (g[:, :, None] * v[:, None, :]).reshape(-1, 9)], axis=1)
        for c in range(25):
            sums[:, c] += np.bincount(t, weights=products[:, c], minlength=tiles)
    return sums


def _window_sums(grid: np.ndarray) -> np.ndarray:
    """Sums over each tile's 3 x 3 neighbourhood of tiles, for a (Gy, Gx, C) grid."""
    padded = np.pad(grid, ((1, 1), (1, 1), (0, 0)))
    gy, gx = grid.shape[:2]
    return sum(padded[dy:dy + gy, dx:dx + gx] for dy in range(3) for dx in range(3))


def _interpolate(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray, tile: int) -> np.ndarray:
    """Bilinear interpolation of a per-tile (Gy, Gx, C) grid at texels (rows, cols), tile centres as nodes."""
    gy, gx = grid.shape[:2]
    fy = np.clip((rows + 0.5) / tile - 0.5, 0.0, gy - 1.0)
    fx = np.clip((cols + 0.5) / tile - 0.5, 0.0, gx - 1.0)
    y0 = np.minimum(fy.astype(np.int64), max(gy - 2, 0))
    x0 = np.minimum(fx.astype(np.int64), max(gx - 2, 0))
    y1, x1 = np.minimum(y0 + 1, gy - 1), np.minimum(x0 + 1, gx - 1)
    wy, wx = (fy - y0)[:, None], (fx - x0)[:, None]
    return ((grid[y0, x0] * (1 - wx) + grid[y0, x1] * wx) * (1 - wy)
            + (grid[y1, x0] * (1 - wx) + grid[y1, x1] * wx) * wy)


def _tiling(surface: TexelSurface, tile: int | None) -> tuple[int, int, int]:
    """The tile size (``tile``, default :data:`TILE_SHARE` of the texture's side) and the tiles down and across."""
    h, w = surface.size
    tile = tile or max(int(round(max(h, w) * TILE_SHARE)), 2)
    return tile, -(-h // tile), -(-w // tile)


def _window_grid(surface: TexelSurface, tile: int, texels: np.ndarray, quantities: list[np.ndarray]) -> np.ndarray:
    """(Gy, Gx, K): per tile, the sums of ``quantities`` (K arrays (M,), one value per texel of the bool mask
    ``texels`` (N,)) over the window of 3 x 3 tiles around it."""
    _, gy, gx = _tiling(surface, tile)
    which = (surface.rows[texels] // tile) * gx + surface.cols[texels] // tile
    sums = np.stack([np.bincount(which, weights=q, minlength=gy * gx) for q in quantities], axis=1)
    return _window_sums(sums.reshape(gy, gx, len(quantities)))


def local_mappings(surface: TexelSurface, guide: np.ndarray, value: np.ndarray, known: np.ndarray,
                   tile: int | None = None, ridge: float = RIDGE) -> tuple[np.ndarray, int]:
    """Per tile, the mapping ``value ~ A @ guide + b`` (``A`` 3 x 3) fitted on the ``known`` texels of the window of
    3 x 3 tiles of ``tile`` texels around it (default :data:`TILE_SHARE` of the texture's side), and the tile size.

    The grid (Gy, Gx, 13) holds row-major ``A`` (9) and ``b`` (3), each times the window's weight, and that weight
    (its known texels, capped at a full window): :func:`mappings_at` interpolates it. Windows without a known texel
    give the identity."""
    n = len(surface.rows)
    if guide.shape != (n, 3) or value.shape != (n, 3) or known.shape != (n,):
        raise InvalidInputError(f"detail transfer needs (N, 3) guide and value and (N,) known for N = {n} texels, "
                                f"got {guide.shape}, {value.shape}, {known.shape}")
    tile, gy, gx = _tiling(surface, tile)
    rows, cols = surface.rows[known], surface.cols[known]
    g = guide[known].astype(np.float64)
    v = value[known].astype(np.float64)
    # centred on the means, so that the covariances below do not lose their digits to cancellation
    g_mean = g.mean(axis=0) if len(g) else np.zeros(3)
    v_mean = v.mean(axis=0) if len(v) else np.zeros(3)
    sums = _window_sums(_tile_sums((rows // tile) * gx + cols // tile, gy * gx, g - g_mean, v - v_mean)
                        .reshape(gy, gx, -1))
    count = sums[..., 0]
    safe = np.maximum(count, 1.0)[..., None]
    mg, mv = sums[..., 1:4] / safe, sums[..., 4:7] / safe
    gg = sums[..., 7:16].reshape(gy, gx, 3, 3) / safe[..., None] - mg[..., :, None] * mg[..., None, :]
    gv = sums[..., 16:25].reshape(gy, gx, 3, 3) / safe[..., None] - mg[..., :, None] * mv[..., None, :]
    eye = np.eye(3) * ridge
    # ridge towards the identity: argmin |v - A g - b|^2 + ridge |A - 1|^2 per window, solved for A^T
    a_t = np.linalg.solve(gg + eye, gv + eye)
    a_t[count == 0] = np.eye(3)
    a = a_t.transpose(0, 1, 3, 2)
    b = (mv + v_mean) - np.einsum("yxij,yxj->yxi", a, mg + g_mean)
    b[count == 0] = 0.0
    weight = np.minimum(count, 9.0 * tile * tile)[..., None]
    return np.concatenate([a.reshape(gy, gx, 9) * weight, b * weight, weight], axis=2), tile


def mappings_at(grid: np.ndarray, tile: int, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``A`` (M, 3, 3) and ``b`` (M, 3) at texels (rows, cols; texel indices, fractional between centres),
    interpolated between tile centres from a :func:`local_mappings` grid (weighted by the windows' known texels, so
    that empty tiles do not pull towards the identity)."""
    at = _interpolate(grid, rows, cols, tile)
    den = at[:, 12:]
    fitted = den > 0
    safe = np.maximum(den, 1e-12)
    a = np.where(fitted, at[:, :9] / safe, np.eye(3).reshape(1, 9)).reshape(-1, 3, 3)
    return a, np.where(fitted, at[:, 9:12] / safe, 0.0)


def _signal_energy(surface: TexelSurface, residual: np.ndarray, noise: np.ndarray, known: np.ndarray,
                   tile: int) -> np.ndarray:
    """Per texel, the energy (mean square per channel) of what the mapping leaves over that is not noise, from the
    window of 3 x 3 tiles around it: the residuals' mean square less their noise variance (at least 0)."""
    window = _window_grid(surface, tile, known, [np.ones(int(known.sum())),
                                                 (residual[known].astype(np.float64) ** 2).mean(axis=1), noise[known]])
    energy = np.maximum(window[..., 1:2] - window[..., 2:3], 0.0)  # summed over the window's known texels
    at = _interpolate(np.concatenate([energy, window[..., :1]], axis=2), surface.rows, surface.cols, tile)
    return at[:, 0] / np.maximum(at[:, 1], 1e-12)


def noise_of_mean(surface: TexelSurface, spread: np.ndarray, views: np.ndarray, known: np.ndarray,
                  tile: int | None = None) -> np.ndarray:
    """Per texel (N,), the noise variance of a weighted mean of the views' samples.

    ``spread`` (N,): the samples' weighted spread about their mean; ``views`` (N,): the texel's effective number of
    views ``n`` (weight squared over summed squared weights, >= 1). For samples of variance ``s``, the spread is
    ``s (1 - 1/n)`` on average and the noise of the mean ``s / n``. One texel's few views tell ``s`` poorly, and the
    noise changes slowly over the surface, so ``s`` is pooled over the window of 3 x 3 tiles around the texel: its
    summed spread over its summed ``1 - 1/n`` (a texel seen by one view, or by one view much more than the others,
    tells little and counts little), drawn towards the whole texture's pooled ``s`` by the weight of one tile of
    texels: a window whose texels are all seen by one view (under a pole of the rig, in a deep recess) gets the
    texture's noise, not none. Only ``known`` texels count."""
    tile = _tiling(surface, tile)[0]
    tells = known & (views > 1.0)
    info = 1.0 - 1.0 / views[tells]
    told = spread[tells]
    prior_weight = float(tile * tile)
    prior = float(told.sum() / max(info.sum(), 1e-12))
    at = _interpolate(_window_grid(surface, tile, tells, [info, told]), surface.rows, surface.cols, tile)
    variance = (at[:, 1] + prior_weight * prior) / (at[:, 0] + prior_weight)
    return variance / np.maximum(views, 1.0)


def transfer_detail(surface: TexelSurface, guide: np.ndarray, value: np.ndarray, base: np.ndarray,
                    known: np.ndarray, noise: np.ndarray | None = None, tile: int | None = None,
                    ridge: float = RIDGE, mappings: tuple[np.ndarray, int] | None = None) -> np.ndarray:
    """``A base + b + k r`` per texel ((N, 3) float32): the local mapping (:func:`local_mappings`) applied to the
    original, plus what it does not explain of the edit, ``r = value - (A guide + b)``.

    ``guide`` (N, 3): the bake of the original capture; ``value`` (N, 3): the bake of the edited views from the same
    samples; ``base`` (N, 3): the original texture; ``known`` (N,): the texels where both bakes hold values (only
    those are fitted; the result elsewhere is meaningless). ``noise`` (N,): the variance (per channel, linear
    squared) of each texel's ``value`` that is noise (the views disagree); the residual is then kept in the share
    ``k = S / (S + noise)`` that its window's signal energy ``S`` (its mean square less the noise) explains: a
    Wiener filter, which leaves detail the edit adds and drops what the views do not agree on. None: ``k = 1``
    (``value + A (base - guide)``). ``mappings``: what :func:`local_mappings` gave for these arguments, if known.
    """
    grid, tile = mappings or local_mappings(surface, guide, value, known, tile, ridge)
    out = np.empty((len(surface.rows), 3), np.float32)
    residual = np.empty((len(surface.rows), 3), np.float32)
    for lo in range(0, len(out), CHUNK):
        part = slice(lo, lo + CHUNK)
        a, b = mappings_at(grid, tile, surface.rows[part], surface.cols[part])
        residual[part] = value[part] - np.einsum("nij,nj->ni", a, guide[part]) - b
        out[part] = np.einsum("nij,nj->ni", a, base[part]) + b
    if noise is None:
        return out + residual
    signal = _signal_energy(surface, residual, noise, known, tile)
    keep = signal / np.maximum(signal + noise, 1e-20)
    return (out + keep[:, None].astype(np.float32) * residual).astype(np.float32)
