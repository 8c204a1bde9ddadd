"""How a capture renders: the settings a user chooses, with their defaults, ranges and help written once.

The command line (``groupedit capture/run/check``) makes its flags from these fields and the panel its properties
(:mod:`.options`); :meth:`CaptureSettings.validate` is the one check. bpy-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..options import check_options, option
from .region import RegionSpec

LIGHTING_MODES = ("AUTO", "SCENE", "STUDIO")
DEVICES = ("AUTO", "CPU", "GPU")


@dataclass
class CaptureSettings:
    """How to render: view size in pixels (larger side), colour samples, lighting and device.

    ``lighting``: 'SCENE' uses the scene's lights and world; 'STUDIO' adds a neutral light rig for the
    capture only; 'AUTO' chooses STUDIO when the scene has neither lights nor a world.
    ``background`` is the linear RGB the colour render is composited over outside the object.
    ``uv_map``: the UV map to capture (and so to bake into); None: the one the base colour reads, or with
    ``add_uv`` a new unwrapped one when the mesh has none.
    ``colour_filter_px``: pixel filter width of the colour render; None keeps the scene's
    (Cycles' default 1.5 px: anti-aliased views to edit). A tiny width such as 0.01 samples every pixel at
    its centre like the data passes: aliased edges, but bakes of lit edits keep finer texture detail.
    ``inter_reflections``: light bouncing off the object onto itself (diffuse and glossy bounces) in the
    colour render. Off by default: then the colour is the albedo times direct light (plus highlights),
    so the bake can remove the lighting from edited views without the bounce light of the *old* colours
    staying in the texture.
    """

    view_size: int = option(512, "image size in pixels (larger side)", low=64, high=4096)
    samples: int = option(32, "Cycles samples of the colour render", low=1, high=4096)
    lighting: str = option("AUTO", "AUTO: a studio light when the scene has no lights and no world; SCENE: the "
                           "scene's own; STUDIO: a neutral light rig for the capture only", choices=LIGHTING_MODES)
    denoise: bool = False
    device: str = option("AUTO", "Cycles device", choices=DEVICES)
    background: tuple[float, float, float] = (0.5, 0.5, 0.5)
    add_uv: bool = option(False, "add a Smart UV Project map if the mesh has none")
    uv_map: str | None = option(None, "UV map to capture and bake into (default: the one the base colour reads)")
    overwrite: bool = option(False, "replace an earlier capture in the output folder")
    inter_reflections: bool = False
    colour_filter_px: float | None = option(
        None, "pixel filter width of the colour render in pixels (default: the scene's; 0.01 samples pixel "
        "centres: aliased, sharper bakes of lit edits)", low=0.01, high=10.0, flag="colour-filter",
        label="the colour pixel filter")
    region: str | None = option(None, "the part of the object the edit may change: faces (selected in Edit Mode), "
                                "material:NAME[,NAME] or vgroup:NAME[:THRESH] (default: the whole object)")

    def validate(self) -> None:
        """Raise :class:`~.errors.InvalidInputError` naming the first setting out of range."""
        check_options(self)
        RegionSpec.parse(self.region)
