"""Settings written once: one dataclass field gives the flag, the panel's property keywords and the checks."""

import argparse
from dataclasses import dataclass

import pytest

from blender_addon.core.errors import InvalidInputError
from blender_addon.core.options import (
    add_arguments,
    check_options,
    from_arguments,
    option,
    property_kwargs,
    with_values,
)


@dataclass
class Demo:
    size: int = option(512, "side in pixels", low=64, high=4096)
    mode: str = option("A", "the mode", choices=("A", "B"))
    scale: float | None = option(None, "a scale", low=0.5, high=2.0, flag="zoom", label="the zoom")
    fast: bool = option(False, "go fast")
    careful: bool = option(True, "be careful")
    untouched: int = 3  # not an option: no flag, no check


def test_flags_defaults_and_parsing():
    p = argparse.ArgumentParser()
    add_arguments(p, Demo)
    args = p.parse_args([])
    assert from_arguments(Demo, args) == Demo()
    args = p.parse_args(["--size", "64", "--mode", "B", "--zoom", "1.5", "--fast", "--no-careful"])
    assert from_arguments(Demo, args) == Demo(64, "B", 1.5, True, False)
    assert "(64 to 4096)" in p.format_help() and "side in pixels" in p.format_help()
    unset = argparse.ArgumentParser()
    add_arguments(unset, Demo, unset=True)
    assert all(v is None for v in vars(unset.parse_args([])).values())


def test_checks_and_json_values():
    check_options(Demo())
    for bad, message in ((Demo(size=32), "size must be between 64 and 4096, got 32"),
                         (Demo(mode="C"), "mode must be one of A, B"), (Demo(scale=3.0), "the zoom must be")):
        with pytest.raises(InvalidInputError, match=message):
            check_options(bad)
    assert with_values(Demo(), {"size": 128.0, "scale": None, "fast": True}) == Demo(128, "A", None, True)
    for values, message in (({"size": 1.5}, "whole number"), ({"size": True}, "a number"), ({"mode": 1}, "text"),
                            ({"size": "128"}, "a number"),  # JSON types are not converted into one another
                            ({"size": float("inf")}, "finite"), ({"fast": "yes"}, "true or false"),
                            ({"untouched": 1}, "unknown option"), ({"size": 10}, "option size=10")):
        with pytest.raises(InvalidInputError, match=message):
            with_values(Demo(), values)


def test_blender_property_keywords():
    assert property_kwargs(Demo, "size", "Size") == {"name": "Size", "description": "side in pixels",
                                                      "default": 512, "min": 64, "max": 4096}
    assert property_kwargs(Demo, "scale", "Zoom") == {"name": "Zoom", "description": "a scale", "min": 0.5,
                                                       "max": 2.0}
