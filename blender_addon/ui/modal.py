"""Helpers for operators: a timer drives a poller object one step per tick (modal operators), and errors become
reports."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import bpy

from ..core.errors import GroupEditError


def start_modal(op: bpy.types.Operator, context: bpy.types.Context, interval: float) -> Any:
    """Add a window timer and make ``op`` modal; returns the timer (remove it with :func:`stop_modal`)."""
    wm = context.window_manager
    timer = wm.event_timer_add(interval, window=context.window)
    wm.modal_handler_add(op)
    return timer


def stop_modal(context: bpy.types.Context, timer: Any) -> None:
    context.window_manager.event_timer_remove(timer)


def redraw(context: bpy.types.Context) -> None:
    """Redraw every area so that progress shows while a modal operator runs."""
    for area in context.screen.areas if context.screen else ():
        area.tag_redraw()


def reports_errors(method: Callable[..., set[str]]) -> Callable[..., set[str]]:
    """Decorate an operator's ``execute(self, context)`` or ``invoke(self, context, event)``: a
    :class:`~..core.errors.GroupEditError` becomes an ERROR report (its message says what to do) and
    ``{"CANCELLED"}``. The wrapper keeps the method's argument count, which Blender checks when registering."""

    def guard(op: bpy.types.Operator, call: Callable[[], set[str]]) -> set[str]:
        try:
            return call()
        except GroupEditError as exc:
            op.report({"ERROR"}, str(exc))
            return {"CANCELLED"}

    if method.__code__.co_argcount == 3:
        def wrapper(self: Any, context: Any, event: Any) -> set[str]:
            return guard(self, lambda: method(self, context, event))
    else:
        def wrapper(self: Any, context: Any) -> set[str]:  # type: ignore[misc]
            return guard(self, lambda: method(self, context))
    return functools.update_wrapper(wrapper, method)
