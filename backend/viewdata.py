"""Per-view cameras and geometry passes of a job: checking what a client sends (see docs/protocol.md).

Conventions (those of the ViewSet, docs/viewset.md):

* ``K``: (3, 3) pinhole intrinsics in pixels of the *uploaded* image, ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]``,
  pixel frame origin at the image's top-left corner, ``u`` right, ``v`` down (pixel centres at ``j + 0.5``).
* ``camera_to_world``: (4, 4) rigid OpenCV pose (camera +X right, +Y down, +Z forward) in world units.
* geometry passes: float32 arrays (H, W, C) at the image's size, stored as ``.npy`` (never pickles).
  ``position`` (C = 3): the world point at each pixel centre, 0 outside the object.

Every check raises :class:`~backend.errors.InvalidInput` (HTTP 400) with a message naming the view and the field.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from blender_addon.core.format.cameras import is_rigid
from blender_addon.core.format.protocol import GEOMETRY_PASSES

from .errors import InvalidInput


Camera = tuple[np.ndarray, np.ndarray]


def _matrix(value: Any, shape: tuple[int, int], what: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be a {shape[0]}x{shape[1]} list of numbers ({exc})") from exc
    if m.shape != shape:
        raise InvalidInput(f"{what} must be {shape[0]}x{shape[1]}, got shape {m.shape}")
    if not np.isfinite(m).all():
        raise InvalidInput(f"{what} has non-finite values (NaN or infinity)")
    return m


def parse_camera(value: Any, what: str) -> Camera:
    """``(K (3, 3), camera_to_world (4, 4))`` float64 from a manifest's ``{"K": ..., "camera_to_world": ...}``."""
    if not isinstance(value, dict) or "K" not in value or "camera_to_world" not in value:
        raise InvalidInput(f"{what} must be an object with 'K' (3x3) and 'camera_to_world' (4x4, OpenCV axes)")
    k = _matrix(value["K"], (3, 3), f"{what}.K")
    if k[0, 0] <= 0 or k[1, 1] <= 0 or k[1, 0] != 0 or not np.array_equal(k[2], [0.0, 0.0, 1.0]):
        raise InvalidInput(f"{what}.K must be [[fx, s, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0, got {k.tolist()}")
    c2w = _matrix(value["camera_to_world"], (4, 4), f"{what}.camera_to_world")
    if not is_rigid(c2w):
        raise InvalidInput(f"{what}.camera_to_world must be a rigid transform (orthonormal rotation, no scale, "
                           "last row 0 0 0 1)")
    return k, c2w


def decode_pass(data: bytes, name: str, what: str, size: tuple[int, int]) -> np.ndarray:
    """A geometry pass uploaded as ``.npy`` bytes -> float32 (H, W, C) for an image of ``size`` = (H, W)."""
    if name not in GEOMETRY_PASSES:
        raise InvalidInput(f"{what}: unknown geometry pass {name!r}; known: {', '.join(sorted(GEOMETRY_PASSES))}")
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises several kinds for bad data
        raise InvalidInput(f"{what} is not a readable .npy array ({type(exc).__name__}: {exc})") from exc
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise InvalidInput(f"{what} must be a float array, got {getattr(array, 'dtype', type(array))}")
    expected = (*size, GEOMETRY_PASSES[name])
    if array.shape != expected:
        raise InvalidInput(f"{what} must have shape (H, W, C) = {expected} to match its image, got {array.shape}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InvalidInput(f"{what} has non-finite values: write 0 outside the object, as the ViewSet does")
    return array


def all_or_none(present: list[bool], what: str) -> bool:
    """True when every view has ``what``, False when none has; a mix is refused."""
    if any(present) and not all(present):
        missing = [i for i, p in enumerate(present) if not p]
        raise InvalidInput(f"{what} is given for some views but not for views {missing}: send it for every view "
                           "or for none")
    return bool(present) and all(present)


#: Patch tokens per view side of the geometry tokens (VGGT: 518 / 14).
TOKEN_SIDE = 37
#: Special tokens (camera + 4 registers) VGGT-1B puts before each view's patch tokens.
TOKEN_SPECIAL = 5


def token_array(array: Any, num_views: int, side: int = TOKEN_SIDE) -> np.ndarray:
    """Geometry tokens as the transformer takes them, (N*side², C) float32, from an array such as the release's
    ``*_aggregated_tokens.npy`` (VGGT's last aggregator layer, (1, 4, 1374, 2048)).

    Accepted: (1, N, P, C), (N, P, C), (1, G, C) or (G, C) with ``P`` = side² or side² + 5 per view and ``G = N P``;
    each view's 5 special tokens are dropped when present. Anything else raises :class:`InvalidInput`.
    """
    a = np.asarray(array)
    if a.dtype.kind != "f" or a.size == 0 or not np.isfinite(a).all():
        raise InvalidInput(f"geometry tokens must be finite floats, got {a.dtype} {a.shape}")
    per_view, full = side * side, side * side + TOKEN_SPECIAL
    shape = a.shape
    if a.ndim == 4 and shape[0] == 1:
        a = a[0]
    elif a.ndim == 2:
        a = a[None]
    if a.ndim == 3 and a.shape[0] == 1 and a.shape[1] in (num_views * per_view, num_views * full):
        a = a.reshape(num_views, -1, a.shape[-1])
    if a.ndim != 3 or a.shape[0] != num_views or a.shape[1] not in (per_view, full):
        raise InvalidInput(
            f"geometry tokens of shape {shape} do not fit {num_views} views: expected (1, {num_views}, {full} or "
            f"{per_view}, C), as the release's *_aggregated_tokens.npy, or ({num_views * per_view}, C)")
    return np.ascontiguousarray(a[:, -per_view:], np.float32).reshape(num_views * per_view, -1)


def decode_token_file(data: bytes, num_views: int) -> np.ndarray:
    """An uploaded ``.npy`` of geometry tokens -> (N*side², C) float32 (see :func:`token_array`)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - numpy raises several kinds for bad data
        raise InvalidInput(f"geometry tokens are not a readable .npy array ({type(exc).__name__}: {exc})") from exc
    return token_array(array, num_views)
