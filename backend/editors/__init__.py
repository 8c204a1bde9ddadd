"""Editors behind one interface, loaded by name (see :func:`get_editor`)."""

from __future__ import annotations

from .base import CancelCheck, EditInput, Editor, Preview, Progress
from .classical import ClassicalEditor
from .groupediting_editor import GroupEditingEditor
from .identity import IdentityEditor

#: Editors the server can load by name.
#: (``groupediting`` needs its model settings, see :class:`GroupEditingEditor`; its module imports torch lazily.)
EDITORS: dict[str, type[Editor]] = {
    "classical": ClassicalEditor, "groupediting": GroupEditingEditor, "identity": IdentityEditor,
}


def get_editor(name: str, **config: object) -> Editor:
    """An editor instance by name; raises ``InvalidInput`` listing the known names."""
    from ..errors import InvalidInput

    if name not in EDITORS:
        raise InvalidInput(f"unknown editor {name!r}; available: {', '.join(sorted(EDITORS))}")
    return EDITORS[name](**config)


__all__ = ["EDITORS", "CancelCheck", "EditInput", "Editor", "Preview", "Progress", "get_editor"]
