"""Settings written once: a dataclass field carries its default, range, choices and help; the command line and the
Blender properties are made from it, and one check enforces it.

A settings dataclass declares its user-facing fields with :func:`option`::

    view_size: int = option(512, "image size in pixels (larger side)", low=64, high=4096)

and then :func:`check_options` validates an instance (a clear :class:`~.errors.InvalidInputError` naming the
setting), :func:`add_arguments` makes its ``--flags`` (``--view-size``; a bool defaulting to False becomes a
switch, one defaulting to True a ``--no-…`` switch), :func:`from_arguments` builds an instance from parsed flags,
and :func:`property_kwargs` gives the keyword arguments of its Blender property (``default``, ``min``, ``max``,
``description``). bpy-free.
"""

from __future__ import annotations

import argparse
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from .errors import InvalidInputError


@dataclass(frozen=True)
class OptionSpec:
    """One setting: its field ``name``, ``default``, ``help``, inclusive range ``low`` / ``high`` (None: open),
    ``choices`` (None: any), the command-line ``flag`` (without dashes), the value ``kind`` and the ``label``
    error messages use."""

    name: str
    default: Any
    help: str
    low: float | None
    high: float | None
    choices: tuple[str, ...] | None
    flag: str
    kind: type
    label: str


def option(default: Any, help: str, *, low: float | None = None, high: float | None = None,
           choices: tuple[str, ...] | None = None, flag: str | None = None, label: str | None = None) -> Any:
    """A dataclass field with a user-facing default, range, choices and help (see the module doc); ``flag``
    and ``label`` default to the field name with dashes / spaces."""
    return field(default=default, metadata={"help": help, "low": low, "high": high, "choices": choices,
                                            "flag": flag, "label": label})


def _kind(annotation: Any) -> type:
    text = str(annotation)
    for kind in (bool, int, float, str):
        if text.startswith(kind.__name__):
            return kind
    return str


def options_of(cls: type) -> list[OptionSpec]:
    """The :func:`option` fields of a settings dataclass, in declaration order."""
    out = []
    for f in fields(cls):
        if "help" not in f.metadata:
            continue
        m = f.metadata
        default = f.default if f.default is not MISSING else None
        out.append(OptionSpec(f.name, default, m["help"], m["low"], m["high"], m["choices"],
                              m["flag"] or f.name.replace("_", "-"), _kind(f.type),
                              m["label"] or f.name.replace("_", " ")))
    return out


def spec(cls: type, name: str) -> OptionSpec:
    """The :class:`OptionSpec` of field ``name`` of ``cls``."""
    found = {s.name: s for s in options_of(cls)}
    if name not in found:
        raise KeyError(f"{cls.__name__} has no option {name!r}")
    return found[name]


def range_text(s: OptionSpec) -> str:
    return f"{s.low:g} to {s.high:g}" if s.low is not None and s.high is not None else ""


def check_options(obj: Any) -> None:
    """Raise :class:`InvalidInputError` for the first option of ``obj`` outside its range or choices."""
    for s in options_of(type(obj)):
        value = getattr(obj, s.name)
        if value is None and s.default is None:
            continue
        label = s.label
        if s.choices is not None and value not in s.choices:
            raise InvalidInputError(f"{label} must be one of {', '.join(s.choices)}, got {value!r}")
        if (s.low is not None and value < s.low) or (s.high is not None and value > s.high):
            raise InvalidInputError(f"{label} must be between {s.low:g} and {s.high:g}, got {value}")


def add_arguments(parser: argparse.ArgumentParser, cls: type, only: tuple[str, ...] | None = None) -> None:
    """``--flags`` for the options of ``cls`` (all, or those named in ``only``), their help from the field."""
    for s in options_of(cls):
        if only is not None and s.name not in only:
            continue
        text = s.help + (f" ({range_text(s)})" if range_text(s) else "")
        if s.kind is bool:
            if s.default:
                parser.add_argument(f"--no-{s.flag}", dest=s.name, action="store_false", help=text)
            else:
                parser.add_argument(f"--{s.flag}", dest=s.name, action="store_true", help=text)
            continue
        default_text = "" if s.default is None else f" (default {s.default})"
        parser.add_argument(f"--{s.flag}", dest=s.name, type=s.kind, default=s.default,
                            choices=list(s.choices) if s.choices else None, help=text + default_text)


def from_arguments(cls: type, args: argparse.Namespace, **extra: Any) -> Any:
    """An instance of ``cls`` from the parsed flags of :func:`add_arguments` (flags not given keep their
    defaults) and ``extra`` values."""
    values = {s.name: getattr(args, s.name) for s in options_of(cls) if hasattr(args, s.name)}
    return cls(**{**values, **extra})


def property_kwargs(cls: type, name: str, label: str) -> dict[str, Any]:
    """Keyword arguments of the Blender property of option ``name``: ``name`` (the panel label),
    ``description``, ``default`` and, for numbers, ``min`` / ``max``."""
    s = spec(cls, name)
    out: dict[str, Any] = {"name": label, "description": s.help}
    if s.default is not None:
        out["default"] = s.default
    if s.kind in (int, float):
        if s.low is not None:
            out["min"] = s.kind(s.low)
        if s.high is not None:
            out["max"] = s.kind(s.high)
    return out
