"""Settings of the GroupEditing editor, their defaults, ranges and help written once, here: how to load the model
(:class:`LoadSettings`) and how to edit (:class:`EditSettings`). torch-free, so the server's command line can make its
flags from them without loading anything.

:class:`LoadSettings` is fixed for a server's life (its ``--model-dir``, ``--dtype``, ... flags).
:class:`EditSettings` is what an edit needs besides its data. Its fields are options
(:mod:`blender_addon.core.options`, the same mechanism as the add-on's settings): the server's flags
(``--preset``, ``--steps``, ...) are made from them and set the server's defaults, and a job's ``options`` override
them by field name (:meth:`EditSettings.with_options`). Fields left ``None`` take the preset's value
(:mod:`.recipe`); :meth:`EditSettings.resolved` fills them in, and the resolved values are reported with every
result.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from blender_addon.core.errors import InvalidInputError
from blender_addon.core.options import add_arguments, option, options_of, with_values

from ..errors import InvalidInput
from .recipe import DEFAULT_RECIPE, RECIPES, Recipe

#: The release's group: four 528 x 528 views.
DEFAULT_PIXEL_BUDGET = 4 * 528 * 528
#: Accepted ``--dtype`` names (short and long; the loader maps them to torch types).
DTYPE_NAMES: tuple[str, ...] = ("bf16", "fp16", "fp32", "bfloat16", "float16", "float32")
OFFLOAD_MODES: tuple[str, ...] = ("none", "model", "sequential", "group")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
WEIGHTS_LAYOUTS: tuple[str, ...] = ("auto", "release", "groupedit")


@dataclass(frozen=True)
class LoadSettings:
    """How the server loads and runs the model (paths as given; ``~`` is expanded where they are used)."""

    model_dir: str | None = option(None, "the diffusers Wan2.1-VACE directory (required for groupediting)")
    weights: str | None = option(None, "GroupEditing weights (.safetensors: the release file or our format); "
                                       "without it the base model runs alone")
    vggt: str | None = option(None, "VGGT-1B's model.safetensors (or its folder): geometry tokens; without it, "
                                    "geometry tokens are off unless a job brings them")
    dtype: str | None = option(None, "transformer and text encoder type (default: bf16 on CUDA, fp32 on the CPU)",
                               choices=DTYPE_NAMES)
    offload: str = option("none", "keep everything on the GPU (none) or move parts in turn to save GPU memory",
                          choices=OFFLOAD_MODES)
    device: str = option("auto", "auto: CUDA when torch sees a GPU", choices=DEVICES)
    attention_backend: str | None = option(None, "a diffusers attention backend (e.g. native, flash, sage)")
    weights_layout: str = option("auto", "layout of the weights file (auto: from its keys)", choices=WEIGHTS_LAYOUTS)
    lora_scale: float = option(1.0, "scale of the weights' LoRA", low=0.0, high=10.0)
    vae_tiling: bool = option(False, "decode in tiles (less GPU memory)")
    vae_slicing: bool = option(False, "decode one view at a time")
    vram_check: bool = option(True, "compare the free GPU memory with the model's needs before loading "
                                    "(--no-vram-check: load even when it looks too small)")
    threads: int | None = option(None, "torch CPU threads of the worker (default: torch's)", low=1, high=1024)


@dataclass(frozen=True)
class EditSettings:
    """How to edit (``None``: the preset's value). See each field's help; units are stated there."""

    preset: str = option(DEFAULT_RECIPE, "edit recipe (docs/models.md)", choices=tuple(RECIPES))
    steps: int | None = option(None, "denoising steps (default: the preset's, 50)", low=1, high=1000)
    guidance: float | None = option(None, "classifier-free guidance scale, off at 1 or less (default: the "
                                          "preset's, 5)", low=0.0, high=100.0)
    shift: float | None = option(None, "sigma shift of the flow-matching sampler (default: the preset's, 5)",
                                 low=0.01, high=100.0)
    seed: int = option(0, "noise seed: the same seed gives the same edit", low=0, high=2**63 - 1)
    pixel_budget: int = option(DEFAULT_PIXEL_BUDGET, "total pixels of the group at model resolution "
                                                     "(4 x 528 x 528)", low=16 * 16, high=1 << 26)
    mask_dilation: int = option(5, "pixels (at model resolution) the edit region grows by", low=0, high=64)
    feather: int = option(4, "pixels (at input resolution) over which the edit blends into the original just "
                             "outside the dilated mask; 0: a hard edge", low=0, high=64)
    flow_sigma: float | None = option(None, "blur of exact Ge-RoPE flow in tokens (exact and paper presets; "
                                            "default 1)", low=0.0, high=16.0)
    conditioning_scale: float = option(1.0, "scale of the VACE hints", low=0.0, high=10.0)
    negative_prompt: str | None = option(None, "negative prompt (default: the preset's, Wan's standard one)")

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
        try:
            return with_values(self, options)
        except InvalidInputError as exc:
            raise InvalidInput(f"{exc} (the groupediting editor's options)") from exc


def settings_from(config: dict[str, Any]) -> tuple[LoadSettings, EditSettings]:
    """Split an editor's keyword arguments (the server's flags) into its load settings and its edit defaults,
    each checked; unknown names and bad values raise :class:`InvalidInput` naming them."""
    loads = {k: (str(v) if hasattr(v, "__fspath__") else v) for k, v in config.items() if k in LOAD_NAMES}
    edits = {k: v for k, v in config.items() if k not in LOAD_NAMES}
    try:
        load = with_values(LoadSettings(), loads)
    except InvalidInputError as exc:
        raise InvalidInput(f"{exc} (the groupediting editor's settings)") from exc
    return load, EditSettings().with_options(edits)


def add_setting_flags(parser: Any) -> None:
    """``--<name>`` for every :class:`LoadSettings` and :class:`EditSettings` field, unset by default (the
    editor's own defaults apply)."""
    add_arguments(parser, LoadSettings, unset=True)
    add_arguments(parser, EditSettings, unset=True)


LOAD_NAMES: tuple[str, ...] = tuple(s.name for s in options_of(LoadSettings))
SETTING_NAMES: tuple[str, ...] = tuple(s.name for s in options_of(EditSettings))
