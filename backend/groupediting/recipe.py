"""Edit recipes: what a GroupEditing edit feeds the model, as one named, documented object per preset.

A :class:`Recipe` fixes everything about an edit that is not data: where the Ge-RoPE displacement comes from and how
it is smoothed, which branch gets which coordinates, the prompt template and negative prompt, and the sampler.
The released weights were trained and are run with one such set of inputs; :data:`RECIPES` ``["release"]`` is that
set, checked line by line against the release's inference code (``infer-test.py``, ``wan_video_new.py``,
``2delta-batch-gpu-multi-frame.py``, ``infer-out-from-video-4frame.py``):

======================  ==========================================================================================
Ge-RoPE flow            thin-plate spline between the largest external contours of the dilated masks of
                        **consecutive** views (i -> i+1); the **last** view is the anchor (no displacement)
smoothing / indexing    bilinear to the token grid, /16, Gaussian kernel 21 / sigma 11 with zero padding over the
                        whole grid, grid + flow clamped to the grid, **floor** into the integer frequency bank
branches                warped coordinates only for the VACE blocks; the main blocks keep the grid
geometry tokens         VGGT-1B aggregator, last layer, appended as keys/values in every main block
prompt                  ``same {description} in four scenes.`` (the description says what the result shows)
negative prompt         Wan's standard negative prompt (:data:`WAN_NEGATIVE_PROMPT`)
sampler                 Euler flow matching, sigmas ``shift*s/(1+(shift-1)*s)`` for s in linspace(1, 0, steps+1)
                        without the last, shift 5, 50 steps, CFG 5, the timestep rounded to bfloat16
======================  ==========================================================================================

The other presets change only the Ge-RoPE rows and keep the release's text and sampler, so that comparing them
measures Ge-RoPE alone:

* ``exact``: the displacement computed exactly from the ViewSet's position passes and cameras (visibility-tested,
  :mod:`.correspondence`), pooled per token and smoothed by a masked normalised blur of ``flow_sigma`` tokens;
  the same chain, clamp and floor. Jobs without position passes fall back to the release's contour flow.
* ``paper``: as ``exact`` plus Identity-RoPE (coordinates relative to each view's subject box) on both branches,
  as the paper describes; **the released weights never saw Identity-RoPE** (the release does not implement it).
* ``grid``: no Ge-RoPE at all (the stock grid everywhere): a baseline to measure what Ge-RoPE adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

#: Wan2.1's standard negative prompt, as the release passes it (``infer-test.py``).
WAN_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，JPEG压缩残留，"
    "丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，形态畸形的肢体，手指融合，静止不动的画面，"
    "杂乱的背景，三条腿，背景人很多，倒着走"
)

#: The release's prompt template; ``{count}`` is the number of views in words (the release always has four).
RELEASE_PROMPT = "same {description} in {count} scenes."

FlowSource = Literal["contours", "positions", "none"]
#: Coordinates of one branch: the grid, grid + Ge-RoPE displacement, or box-relative grid + displacement.
BranchCoordinates = Literal["grid", "ge", "ge_identity"]


@dataclass(frozen=True)
class Sampler:
    """Euler flow-matching sampling (DiffSynth's ``FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True)``).

    ``steps``: denoising steps. ``guidance``: classifier-free guidance scale (off at <= 1). ``shift``: sigma shift.
    ``timestep_bf16``: round each timestep to bfloat16 before the time embedding, as the release does (it runs the
    whole model in bfloat16, timestep included); the sigmas of the update itself stay float32.
    """

    steps: int = 50
    guidance: float = 5.0
    shift: float = 5.0
    timestep_bf16: bool = True

    def sigmas(self, steps: int | None = None, shift: float | None = None) -> np.ndarray:
        """The ``steps`` float32 sigmas from 1 down (the final 0 is implied): ``shift*s/(1+(shift-1)*s)``."""
        n = self.steps if steps is None else int(steps)
        k = self.shift if shift is None else float(shift)
        s = np.linspace(1.0, 0.0, n + 1, dtype=np.float32)[:-1]
        return (k * s / (1.0 + (k - 1.0) * s)).astype(np.float32)


@dataclass(frozen=True)
class Recipe:
    """One preset: the inputs an edit gives the model (see the module docstring for the presets).

    ``flow``: where the Ge-RoPE displacement comes from: ``contours`` (thin-plate spline between mask contours,
    smoothed as the release does: bilinear to the grid, zero-padded Gaussian ``blur_kernel`` / ``blur_sigma`` over
    the whole grid), ``positions`` (exact, from position passes and cameras: mean per token over matched pixels,
    masked normalised Gaussian of ``flow_sigma`` tokens, zero where the token shows no subject; jobs without
    position passes get the contour flow) or ``none``.
    ``main`` / ``vace``: the coordinates each branch gets (every preset clamps warped coordinates to the view's grid
    and floors them, as the release indexes its integer frequency bank). ``prompt_template``: with ``{description}``
    and ``{count}``. ``negative_prompt``. ``sampler``. ``about``: one line for help texts and health.
    """

    name: str
    about: str
    flow: FlowSource
    main: BranchCoordinates
    vace: BranchCoordinates
    flow_sigma: float = 1.0
    blur_kernel: int = 21
    blur_sigma: float = 11.0
    prompt_template: str = RELEASE_PROMPT
    negative_prompt: str = WAN_NEGATIVE_PROMPT
    sampler: Sampler = Sampler()

    @property
    def identity(self) -> bool:
        """Whether a branch uses Identity-RoPE (box-relative coordinates)."""
        return "ge_identity" in (self.main, self.vace)


RECIPES: dict[str, Recipe] = {
    "release": Recipe(
        "release", "the public release's inference recipe (the default: what the released weights were run with)",
        flow="contours", main="grid", vace="ge"),
    "exact": Recipe(
        "exact", "Ge-RoPE from the exact position-pass correspondences; otherwise the release recipe",
        flow="positions", main="grid", vace="ge"),
    "paper": Recipe(
        "paper", "exact Ge-RoPE plus Identity-RoPE on both branches, as the paper describes (the released weights "
        "never saw Identity-RoPE)", flow="positions", main="ge_identity", vace="ge_identity"),
    "grid": Recipe(
        "grid", "no Ge-RoPE (the stock grid on both branches); otherwise the release recipe",
        flow="none", main="grid", vace="grid"),
}
DEFAULT_RECIPE = "release"


def get_recipe(name: str) -> Recipe:
    """The preset called ``name``; a ``ValueError`` lists the known ones."""
    if name not in RECIPES:
        raise ValueError(f"unknown preset {name!r}; use one of {', '.join(RECIPES)}")
    return RECIPES[name]
