"""Settings written once: a dataclass field carries its default, range, choices and help; the command line and the
Blender properties are made from it, and one check enforces it.

A settings dataclass declares its user-facing fields with :func:`option`::

    view_size: int = option(512, "image size in pixels (larger side)", low=64, high=4096)

and then :func:`check_options` validates an instance (a clear :class:`~.errors.InvalidInputError` naming the
setting), :func:`add_arguments` makes its ``--flags`` (``--view-size``; a bool defaulting to False becomes a
switch, one defaulting to True a ``--no-…`` switch), :func:`from_arguments` builds an instance from parsed flags,
and :func:`property_kwargs` gives the keyword arguments of its Blender property (``default``, ``min``, ``max``,
``description``); :func:`with_values` applies values from JSON (a job's options) with the same checks. bpy-free;
the edit server's settings use it too.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, dataclass, field, fields, replace
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
    """``bool``, ``int``, ``float`` or ``str`` from a field's annotation (a type, or its text under postponed
    evaluation, e.g. ``"int | None"``)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
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


def _check_value(s: OptionSpec, value: Any) -> None:
    if value is None and s.default is None:
        return
    if s.choices is not None and value not in s.choices:
        raise InvalidInputError(f"{s.label} must be one of {', '.join(s.choices)}, got {value!r}")
    if (s.low is not None and value < s.low) or (s.high is not None and value > s.high):
        raise InvalidInputError(f"{s.label} must be between {s.low:g} and {s.high:g}, got {value}")


def check_options(obj: Any) -> None:
    """Raise :class:`InvalidInputError` for the first option of ``obj`` outside its range or choices."""
    for s in options_of(type(obj)):
        _check_value(s, getattr(obj, s.name))


def coerce(s: OptionSpec, value: Any) -> Any:
    """A value from JSON for option ``s``, typed and checked, never converted from another JSON type: numbers as
    JSON numbers (not text, not true/false), whole where the option is an integer, finite; text as text; true/false
    as booleans; ``None`` only where the default is None."""
    if value is None and s.default is None:
        return None
    if s.kind is str:
        if not isinstance(value, str):
            raise InvalidInputError(f"{s.label} must be text, got {value!r}")
    elif s.kind is bool:
        if not isinstance(value, bool):
            raise InvalidInputError(f"{s.label} must be true or false, got {value!r}")
    else:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidInputError(f"{s.label} must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise InvalidInputError(f"{s.label} must be finite, got {value!r}")
        if s.kind is int:
            if number != int(number):
                raise InvalidInputError(f"{s.label} must be a whole number, got {value!r}")
            number = int(number)
        value = number
    _check_value(s, value)
    return value


def with_values(obj: Any, values: dict[str, Any]) -> Any:
    """A copy of ``obj`` with ``values`` (option name -> JSON value) applied through :func:`coerce`; unknown names
    are refused with the list of known ones."""
    known = {s.name: s for s in options_of(type(obj))}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InvalidInputError(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(known)}")
    changes = {}
    for name, value in values.items():
        try:
            changes[name] = coerce(known[name], value)
        except InvalidInputError as exc:
            raise InvalidInputError(f"option {name}={value!r}: {exc}") from exc
    return replace(obj, **changes)


def add_arguments(parser: Any, cls: type, only: tuple[str, ...] | None = None, unset: bool = False) -> None:
    """``--flags`` for the options of ``cls`` (all, or those named in ``only``), their help from the field.

    ``unset``: every flag defaults to None (not given), so that the caller's own defaults apply (the server passes
    only the flags given to its editor)."""
    for s in options_of(cls):
        if only is not None and s.name not in only:
            continue
        text = s.help + (f" ({range_text(s)})" if range_text(s) else "")
        if s.kind is bool:
            if s.default:
                parser.add_argument(f"--no-{s.flag}", dest=s.name, action="store_false", help=text,
                                    default=None if unset else True)
            else:
                parser.add_argument(f"--{s.flag}", dest=s.name, action="store_true", help=text,
                                    default=None if unset else False)
            continue
        default_text = "" if s.default is None else f" (default {s.default})"
        parser.add_argument(f"--{s.flag}", dest=s.name, type=s.kind, default=None if unset else s.default,
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
