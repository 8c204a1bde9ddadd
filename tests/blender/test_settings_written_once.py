"""Defaults, ranges and help are written once (the settings dataclasses); the panel and the CLI agree with them."""

import bpy  # noqa: F401  (the panel's property module needs it)

from blender_addon.cli import build_parser
from blender_addon.core.capture.settings import LIGHTING_MODES, CaptureSettings
from blender_addon.core.options import options_of, spec
from blender_addon.core.capture.rigs import PRESETS, RigSpec
from blender_addon.ui import properties
from blender_addon.ui.properties import GroupEditSettings

PANEL = {"view_size": "View size", "samples": "Samples", "lighting": "Lighting",
         "add_uv": None, "uv_map": None}


def _keywords(name: str) -> dict:
    """The keywords a panel property is declared with (annotations are strings under postponed evaluation)."""
    annotation = GroupEditSettings.__annotations__[name]
    return (eval(annotation, vars(properties)) if isinstance(annotation, str) else annotation).keywords


def test_panel_properties_take_their_defaults_ranges_and_help_from_capture_settings():
    for name in PANEL:
        s = spec(CaptureSettings, name)
        keywords = _keywords(name)
        assert keywords["description"] == s.help, name
        if s.default is not None:
            assert keywords["default"] == s.default, name
        if s.low is not None:
            assert (keywords["min"], keywords["max"]) == (s.low, s.high), name
    items = _keywords("lighting")["items"]
    assert tuple(i[0] for i in items) == LIGHTING_MODES


RIG_PANEL = {"kind": "rig", "count": "views", "start_azimuth": "start_azimuth", "top": "top", "bottom": "bottom",
             "fov_deg": "fov", "margin": "margin"}


def test_panel_rig_properties_take_theirs_from_rigspec():
    for name, prop in RIG_PANEL.items():
        s = spec(RigSpec, name)
        keywords = _keywords(prop)
        assert keywords["description"] == s.help and keywords["default"] == s.default, name
        if s.low is not None:
            assert (keywords["min"], keywords["max"]) == (s.low, s.high), name
    assert tuple(i[0] for i in _keywords("rig")["items"]) == tuple(PRESETS) == spec(RigSpec, "kind").choices


def test_capture_flags_are_made_from_the_settings():
    parser = build_parser(False)
    args = parser.parse_args(["capture", "x.glb", "--out", "o"])
    for s in options_of(CaptureSettings) + options_of(RigSpec):
        assert getattr(args, s.name) == s.default, s.name
    args = parser.parse_args(["capture", "x.glb", "--out", "o", "--view-size", "64", "--add-uv",
                              "--colour-filter", "0.01", "--lighting", "STUDIO"])
    assert (args.view_size, args.add_uv, args.colour_filter_px, args.lighting) == (64, True, 0.01, "STUDIO")
