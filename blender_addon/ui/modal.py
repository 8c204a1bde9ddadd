"""Helpers for modal operators: a timer drives a poller object one step per tick."""

from __future__ import annotations

from typing import Any

import bpy


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
