"""Blender UI: properties, operators, the GroupEdit N-panel tab and preferences."""

from __future__ import annotations

from . import edit_operators, operators, panels, preferences, properties, region_overlay, texture_operators

_MODULES = (preferences, properties, operators, region_overlay, edit_operators, texture_operators, panels)


def register() -> None:
    for m in _MODULES:
        m.register()


def unregister() -> None:
    for m in reversed(_MODULES):
        m.unregister()
