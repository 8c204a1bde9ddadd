"""Per-edit settings of the GroupEditing editor: the one place their defaults, ranges and help texts are written.

:class:`EditSettings` is what an edit needs besides its data. The server's flags (``--preset``, ``--steps``, ...)
are generated from its fields (:func:`add_setting_flags`) and set the server's defaults; a job's ``options`` override
them by field name (:meth:`EditSettings.with_options`). Fields left ``None`` take the preset's value
(:mod:`.recipe`); :meth:`EditSettings.resolved` fills them in, and the resolved values are reported with every
result.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any

from ..errors import InvalidInput
from .recipe import DEFAULT_RECIPE, RECIPES, Recipe

#: The release's group: four 528 x 528 views.
DEFAULT_PIXEL_BUDGET = 4 * 528 * 528


def _setting(default: Any, help: str, low: float | None = None, high: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "min": low, "max": high})


@dataclass(frozen=True)
class EditSettings:
    """How to edit (``None``: the preset's value). See each field's help; units are stated there."""

    preset: str = _setting(DEFAULT_RECIPE, "edit recipe: " + ", ".join(RECIPES) + " (docs/models.md)")
    steps: int | None = _setting(None, "denoising steps (default: the preset's, 50)", 1, 1000)
    guidance: float | None = _setting(None, "classifier-free guidance scale, off at 1 or less (default: the "
                                            "preset's, 5)", 0.0, 100.0)
    shift: float | None = _setting(None, "sigma shift of the flow-matching sampler (default: the preset's, 5)",
                                   0.01, 100.0)
    seed: int = _setting(0, "noise seed: the same seed gives the same edit", 0, 2**63 - 1)
    pixel_budget: int = _setting(DEFAULT_PIXEL_BUDGET, "total pixels of the group at model resolution "
                                                       "(4 x 528 x 528)", 16 * 16, 1 << 26)
    mask_dilation: int = _setting(5, "pixels (at model resolution) the edit region grows by", 0, 64)
    feather: int = _setting(4, "pixels (at input resolution) over which the edit blends into the original just "
                               "outside the dilated mask; 0: a hard edge", 0, 64)
    flow_sigma: float | None = _setting(None, "blur of exact Ge-RoPE flow in tokens (exact and paper presets; "
                                              "default 1)", 0.0, 16.0)
    conditioning_scale: float = _setting(1.0, "scale of the VACE hints", 0.0, 10.0)
    negative_prompt: str | None = _setting(None, "negative prompt (default: the preset's, Wan's standard one)")

    @property
    def recipe(self) -> Recipe:
        return RECIPES[self.preset]

    def resolved(self) -> EditSettings:
        """These settings with every ``None`` replaced by the preset's value."""
        r, s = self.recipe, self.recipe.sampler
        return replace(
            self, steps=s.steps if self.steps is None else self.steps,
            guidance=s.guidance if self.guidance is None else self.guidance,
            shift=s.shift if self.shift is None else self.shift,
            flow_sigma=r.flow_sigma if self.flow_sigma is None else self.flow_sigma,
            negative_prompt=r.negative_prompt if self.negative_prompt is None else self.negative_prompt)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_options(self, options: dict[str, Any]) -> EditSettings:
        """These settings with ``options`` (name -> value, e.g. a job's) applied and checked.

        Raises :class:`InvalidInput` naming the option for unknown names, wrong types and values out of range.
        """
        known = {f.name: f for f in fields(self)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise InvalidInput(f"unknown option(s) {', '.join(unknown)} for the groupediting editor; known: "
                               f"{', '.join(known)}")
        changes = {name: _parse(known[name], value) for name, value in options.items()}
        return replace(self, **changes)


def _kind(f: Any) -> type:
    """The value type of a setting (``int``, ``float`` or ``str``) from its annotation."""
    text = str(f.type)
    return int if text.startswith("int") else float if text.startswith("float") else str


def _parse(f: Any, value: Any) -> Any:
    """One option's value, checked against its field's type and range."""
    if value is None and f.default is None:
        return None
    kind, lo, hi = _kind(f), f.metadata["min"], f.metadata["max"]
    try:
        if kind is str:
            if not isinstance(value, str):
                raise ValueError("not text")
            if f.name == "preset" and value not in RECIPES:
                raise ValueError(f"use one of {', '.join(RECIPES)}")
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError("not a number")
        number = float(value)
        if not math.isfinite(number):
            raise ValueError("not finite")
        if kind is int:
            if number != int(number):
                raise ValueError("not a whole number")
            number = int(number)
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise ValueError(f"use {lo} to {hi}")
        return number
    except (TypeError, ValueError) as exc:
        default = f.default if f.default is not MISSING else None
        raise InvalidInput(f"option {f.name}={value!r} is not valid ({exc}); default {default!r}") from exc


def add_setting_flags(parser: argparse.ArgumentParser | Any) -> None:
    """``--<name>`` for every :class:`EditSettings` field (default unset: the editor's own default applies)."""
    for f in fields(EditSettings):
        kind = _kind(f)
        extra: dict[str, Any] = {"choices": list(RECIPES)} if f.name == "preset" else {}
        parser.add_argument("--" + f.name.replace("_", "-"), dest=f.name, type=kind, default=None,
                            help=f.metadata["help"], **extra)


SETTING_NAMES: tuple[str, ...] = tuple(f.name for f in fields(EditSettings))
