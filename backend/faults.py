"""Fault points: places where a test can make the server fail on purpose, as a full disk or a broken database would.

``GROUPEDIT_FAULTS="store.finish:1"`` (read once per process) makes the first call of :func:`check` at the point
``store.finish`` raise ``sqlite3.OperationalError("database or disk is full")``; ``:N`` the first N calls, ``:*``
every call. Without the variable every check is a no-op. The points are named where they are checked.
"""

from __future__ import annotations

import os
import sqlite3
import threading

_lock = threading.Lock()
_left: dict[str, float] | None = None


def _parse(spec: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, count = item.partition(":")
        out[name] = float("inf") if count in ("", "*") else float(int(count))
    return out


def check(point: str) -> None:
    """Raise the fault injected at ``point``, if any is left (see the module's docstring)."""
    global _left
    with _lock:
        if _left is None:
            _left = _parse(os.environ.get("GROUPEDIT_FAULTS", ""))
        if _left.get(point, 0) <= 0:
            return
        _left[point] -= 1
    raise sqlite3.OperationalError(f"database or disk is full (fault injected at {point})")
