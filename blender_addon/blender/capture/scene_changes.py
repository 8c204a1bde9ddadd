"""Change a scene temporarily and put every change back, also when the work in between fails.

Every property the capture touches goes through :meth:`SceneChanges.set`, which remembers the first
value it saw; every datablock it creates goes through :meth:`SceneChanges.new_*`. :meth:`restore`
undoes both in reverse order. Used as a context manager, restoring happens on any exit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import bpy

log = logging.getLogger(__name__)


class SceneChanges:
    """A record of temporary changes to Blender data, undone by :meth:`restore`."""

    def __init__(self) -> None:
        self._props: list[tuple[Any, str, Any]] = []
        self._seen: set[tuple[int, str]] = set()
        self._undo: list[Callable[[], None]] = []

    def set(self, owner: Any, attr: str, value: Any) -> None:
        """Set ``owner.attr = value``, remembering the original value the first time."""
        key = (owner.as_pointer() if hasattr(owner, "as_pointer") else id(owner), attr)
        if key not in self._seen:
            self._seen.add(key)
            old = getattr(owner, attr)
            if hasattr(old, "copy") and not isinstance(old, bpy.types.ID):
                old = old.copy()  # mathutils values and arrays: keep a value, not a live view
            elif hasattr(old, "__len__") and not isinstance(old, (str, bpy.types.ID)):
                old = tuple(old)
            self._props.append((owner, attr, old))
        setattr(owner, attr, value)

    def on_restore(self, undo: Callable[[], None]) -> None:
        """Run ``undo`` when restoring (after later changes are undone: last in, first out)."""
        self._undo.append(undo)

    def new_object(self, name: str, data: Any, collection: Any) -> Any:
        """A temporary object linked into ``collection``, removed on restore (its data is not touched)."""
        obj = bpy.data.objects.new(name, data)
        collection.objects.link(obj)
        self.on_restore(lambda: _remove_object(obj))
        return obj

    def new_id(self, collection: Any, *args: Any) -> Any:
        """A temporary datablock ``collection.new(*args)`` (materials, worlds, ...), removed on restore."""
        block = collection.new(*args)
        self.adopt(collection, block)
        return block

    def adopt(self, collection: Any, block: Any) -> None:
        """Remove ``block`` from ``collection`` (e.g. ``bpy.data.materials``) on restore."""
        self.on_restore(lambda: collection.remove(block))

    def restore(self) -> None:
        """Undo everything, newest first. Errors are logged and the rest is still undone."""
        for undo in reversed(self._undo):
            try:
                undo()
            except (ReferenceError, RuntimeError, KeyError) as exc:
                log.warning("could not undo a temporary change: %s", exc)
        for owner, attr, old in reversed(self._props):
            try:
                setattr(owner, attr, old)
            except (ReferenceError, AttributeError, TypeError, ValueError) as exc:
                log.warning("could not restore %s: %s", attr, exc)
        self._props.clear()
        self._seen.clear()
        self._undo.clear()

    def __enter__(self) -> "SceneChanges":
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def _remove_object(obj: Any) -> None:
    bpy.data.objects.remove(obj, do_unlink=True)
