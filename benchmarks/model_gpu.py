"""GroupEditing transformer on a GPU: seconds per step, seconds per edit and peak VRAM, 1.3B vs 14B, 4 vs 8 views.

Full-size Wan2.1-VACE transformer configurations (1.3B: 30 layers, width 1536, 12 heads, ffn 8960, VACE layers
0, 2, …, 28; 14B: 40 layers, width 5120, 40 heads, ffn 13824, VACE layers 0, 5, …, 35) with random bf16 weights
built directly on the GPU (on the meta device first, so 14B never passes through CPU RAM; norms, modulation tables
and the time embedder stay float32 as diffusers' ``from_pretrained(torch_dtype=bfloat16)`` keeps them). Speed and
memory do not depend on the weight values.

One step = one transformer call on a CFG batch of 2 (conditional + unconditional) for N views at 528² (latent 66×66,
33×33 tokens per view), 512 text tokens, 96-channel VACE context. Seconds per edit = ``--steps`` (50) × the mean of
``--timed`` steps after one warm-up step: an extrapolation, excluding the text encoder, the VAE and the scheduler.
Peak VRAM is ``torch.cuda.max_memory_allocated`` over the warm-up and timed steps.

Modes: ``resident`` (all weights on the GPU); ``model_offload`` (the transformer is kept on the CPU and moved in and
out once per edit, as diffusers' model CPU offload does: same peak as resident for the transformer, the saving is
in the other components; the transfers are timed and added per edit); ``group_offload`` (diffusers group
offloading, one block per group, prefetched on a CUDA stream); ``leaf_offload`` (leaf-level group offloading with
a stream). ``--geometry`` adds runs with N × 1369 geometry tokens of 2048 channels (one VGGT frame per view) as extra
keys/values when the transformer class supports them (``backend.groupediting.transformer.GroupEditingTransformer``;
the stock diffusers class is the fallback and has no geometry input): the longer key sequence of every main block.

Per edit, besides the transformer: ``--vggt`` times the VGGT-1B aggregator (random float32 weights under bfloat16
autocast, as the release runs it) on N views at 518² (once per edit), with its peak VRAM; and the release's Ge-RoPE
coordinates (contour thin-plate splines and the smoothing, on the CPU) for N views at the benchmark's side.

Ratios are against the resident 1.3B, 4-view run measured first in the same process.

``python benchmarks/model_gpu.py [--sizes 1.3B 14B] [--views 4 8] [--modes resident group_offload] [--geometry]
[--vggt]``
``python benchmarks/model_gpu.py --tiny`` runs a tiny configuration on the CPU (a smoke test of this script only).
Exits with status 2 and a message when no CUDA device is present (except with ``--tiny``).
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

logger = logging.getLogger("model_gpu")

#: Full-size transformer configs (the shape-defining fields of the diffusers repos' transformer/config.json).
CONFIGS: dict[str, dict[str, Any]] = {
    "1.3B": dict(num_attention_heads=12, attention_head_dim=128, ffn_dim=8960, num_layers=30,
                 vace_layers=list(range(0, 30, 2))),
    "14B": dict(num_attention_heads=40, attention_head_dim=128, ffn_dim=13824, num_layers=40,
                vace_layers=list(range(0, 40, 5))),
    "tiny": dict(num_attention_heads=2, attention_head_dim=12, ffn_dim=32, num_layers=3, vace_layers=[0, 2],
                 text_dim=32, rope_max_seq_len=32),
}
COMMON: dict[str, Any] = dict(patch_size=(1, 2, 2), in_channels=16, out_channels=16, text_dim=4096, freq_dim=256,
                              cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, vace_in_channels=96)
MODES = ("resident", "model_offload", "group_offload", "leaf_offload")
GEOMETRY_SIDE, GEOMETRY_CHANNELS = 37, 2048  # VGGT: 37² = 1369 tokens of 2048 channels per view


@dataclass
class Result:
    """One measured configuration; ``s_step`` etc. are None when it ran out of memory."""

    size: str
    views: int
    mode: str
    geometry: bool
    tokens: int
    s_step: float | None
    s_edit: float | None
    peak_gib: float | None
    transfer_s: float = 0.0
    note: str = ""


def transformer_class() -> tuple[type, bool]:
    """``(class, supports geometry tokens)``: the project's GroupEditingTransformer if importable, else diffusers'."""
    try:
        from backend.groupediting.transformer import GroupEditingTransformer as cls
    except ImportError as exc:
        logger.info("GroupEditingTransformer not importable (%s): using diffusers' WanVACETransformer3DModel", exc)
        from diffusers import WanVACETransformer3DModel as cls
    return cls, "geometry_tokens" in inspect.signature(cls.forward).parameters


def build_model(cls: type, size: str, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A random-weight transformer of ``size`` built on ``device`` without materialising it on the CPU first."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    config = {**COMMON, **CONFIGS[size]}
    with torch.device("meta"):
        model = cls(**config)
    keep = set(getattr(cls, "_keep_in_fp32_modules", None) or [])
    for name, param in model.named_parameters():  # per parameter: model.to(dtype) would also cast the fp32 ones
        param.data = param.data.to(torch.float32 if keep.intersection(name.split(".")) else dtype)
    model.to_empty(device=device)
    g = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("scale_shift_table"):
                param.normal_(0, param.shape[-1] ** -0.5, generator=g)
            elif param.ndim >= 2:
                param.normal_(0, 0.02, generator=g)
            elif name.endswith("bias"):
                param.zero_()
            else:
                param.fill_(1.0)
    # the rotary tables are non-persistent buffers computed at construction: rebuild them for real
    model.rope = WanRotaryPosEmbed(config["attention_head_dim"], config["patch_size"],
                                   config.get("rope_max_seq_len", 1024)).to(device)
    model.requires_grad_(False)
    return model.eval()


def make_inputs(size: str, views: int, side: int, device: torch.device, dtype: torch.dtype,
                geometry: bool) -> dict[str, torch.Tensor]:
    """Random inputs for one CFG step (batch 2): latents (2, 16, N, side/8, side/8), text (2, 512, text_dim), VACE
    context (2, 96, N, …); with ``geometry``, N × 37² geometry tokens of 2048 channels (tiny: N × 4² of 64) and
    their (t, h, w) token coordinates: t = 0 … N − 1, h, w = round(linspace(0, side/16 − 1, 37))."""
    config = {**COMMON, **CONFIGS[size]}
    lat = side // 8
    g = torch.Generator(device=device).manual_seed(1)
    text_len = 512 if size != "tiny" else 8
    inputs = dict(
        hidden_states=torch.randn(2, 16, views, lat, lat, generator=g, device=device, dtype=dtype),
        timestep=torch.tensor([500, 500], device=device),
        encoder_hidden_states=torch.randn(2, text_len, config["text_dim"], generator=g, device=device, dtype=dtype),
        control_hidden_states=torch.randn(2, 96, views, lat, lat, generator=g, device=device, dtype=dtype),
    )
    if geometry:
        grid = lat // 2
        t = torch.arange(views, dtype=torch.float32)
        geo_side, geo_channels = (4, 64) if size == "tiny" else (GEOMETRY_SIDE, GEOMETRY_CHANNELS)
        hw = torch.linspace(0, grid - 1, geo_side).round()
        tt, hh, ww = torch.meshgrid(t, hw, hw, indexing="ij")
        coords = torch.stack([tt, hh, ww], -1).reshape(1, -1, 3).expand(2, -1, -1)
        inputs["geometry_coords"] = coords.to(device)
        inputs["geometry_tokens"] = torch.randn(2, coords.shape[1], geo_channels, generator=g, device=device,
                                                dtype=dtype)
    return inputs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(model: torch.nn.Module, inputs: dict[str, torch.Tensor], device: torch.device, timed: int) -> float:
    """Mean seconds of ``timed`` transformer calls after one warm-up call."""
    with torch.inference_mode():
        model(**inputs, return_dict=False)
        _sync(device)
        start = time.perf_counter()
        for _ in range(timed):
            model(**inputs, return_dict=False)
        _sync(device)
    return (time.perf_counter() - start) / timed


@contextmanager
def peak_memory(device: torch.device) -> Iterator[list[float]]:
    """Yields a list that receives the peak allocated GiB of the block (NaN off CUDA)."""
    out: list[float] = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    yield out
    out.append(torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else math.nan)


def _free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(model: torch.nn.Module, size: str, views: int, mode: str, geometry: bool, args: argparse.Namespace,
            device: torch.device, dtype: torch.dtype) -> Result:
    """One configuration; out-of-memory is recorded, not raised."""
    tokens = views * (args.side // 16) ** 2
    label = dict(size=size, views=views, mode=mode, geometry=geometry, tokens=tokens)
    try:
        inputs = make_inputs(size, views, args.side, device, dtype, geometry)
        transfer = 0.0
        with peak_memory(device) as peak:
            if mode == "model_offload":  # the whole transformer comes in for the edit and leaves after it
                _sync(device)
                start = time.perf_counter()
                model.to(device)
                _sync(device)
                transfer = time.perf_counter() - start
            s_step = time_steps(model, inputs, device, args.timed)
            if mode == "model_offload":
                start = time.perf_counter()
                model.to("cpu")
                _sync(device)
                transfer += time.perf_counter() - start
        del inputs
        return Result(**label, s_step=s_step, s_edit=args.steps * s_step + transfer, peak_gib=peak[0],
                      transfer_s=transfer)
    except torch.cuda.OutOfMemoryError:
        logger.warning("%s %d views %s: out of memory", size, views, mode)
        return Result(**label, s_step=None, s_edit=None, peak_gib=None, note="out of memory")
    finally:
        _free(device)


def run_size(cls: type, geometry_ok: bool, size: str, views: Sequence[int], modes: Sequence[str],
             args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> list[Result]:
    """All (views, mode, geometry) runs of one model size, modes in the order resident → offload ones."""
    results: list[Result] = []
    geometries = [False, True] if args.geometry and geometry_ok else [False]
    logger.info("building %s on %s", size, device)
    model = build_model(cls, size, device, dtype)
    ordered = [m for m in MODES if m in modes]
    try:
        for k, mode in enumerate(ordered):
            if mode == "model_offload":
                model.to("cpu")
                _free(device)
            elif mode in ("group_offload", "leaf_offload"):
                model.to("cpu")
                _free(device)
                model.enable_group_offload(
                    onload_device=device, offload_device=torch.device("cpu"),
                    offload_type="block_level" if mode == "group_offload" else "leaf_level",
                    num_blocks_per_group=1 if mode == "group_offload" else None,
                    use_stream=device.type == "cuda",
                )
            for n in views:
                for geometry in geometries:
                    r = measure(model, size, n, mode, geometry, args, device, dtype)
                    logger.info("%s", r)
                    results.append(r)
            if mode in ("group_offload", "leaf_offload") and k + 1 < len(ordered):
                del model  # offloading hooks cannot be removed in place: rebuild for the next mode
                _free(device)
                model = build_model(cls, size, device, dtype)
    finally:
        del model
        _free(device)
    return results


@dataclass
class Extra:
    """A per-edit cost outside the transformer: ``what``, seconds, peak GiB (NaN off CUDA)."""

    what: str
    views: int
    seconds: float
    peak_gib: float


def measure_vggt(views: Sequence[int], args: argparse.Namespace, device: torch.device) -> list[Extra]:
    """The VGGT aggregator once per edit: full VGGT-1B (tiny with ``--tiny``), random weights, 518² views."""
    from backend.groupediting.vggt import AggregatorConfig, VGGTAggregator

    config = AggregatorConfig(embed_dim=32, depth=2, trunk_depth=1, head_dim=16, mlp_hidden=64) if args.tiny \
        else AggregatorConfig()
    with torch.device(device):
        model = VGGTAggregator(config).eval()
    out = []
    for n in views:
        images = torch.rand(1, n, 3, config.img_size, config.img_size, device=device)
        with peak_memory(device) as peak, torch.inference_mode(), \
                torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            model(images)  # warm-up
            _sync(device)
            start = time.perf_counter()
            for _ in range(args.timed):
                model(images)
            _sync(device)
        out.append(Extra(f"VGGT aggregator ({'tiny' if args.tiny else '1B'})", n,
                         (time.perf_counter() - start) / args.timed, peak[0]))
    del model
    _free(device)
    return out


def measure_ge_rope(views: Sequence[int], side: int) -> list[Extra]:
    """The release recipe's Ge-RoPE coordinates on the CPU: contour splines between N masks and the smoothing."""
    import numpy as np

    from backend.groupediting.coordinates import GroupLayout, rope_coordinates
    from backend.groupediting.recipe import RECIPES

    out = []
    yy, xx = np.mgrid[0:side, 0:side]
    for n in views:
        masks = [((xx - side * (0.4 + 0.04 * i)) ** 2 / (0.3 * side) ** 2 + (yy - side / 2) ** 2 / (0.2 * side) ** 2
                  <= 1) for i in range(n)]
        start = time.perf_counter()
        rope_coordinates(RECIPES["release"], GroupLayout(((side, side),) * n, (side, side)), masks)
        out.append(Extra("Ge-RoPE contour flow (CPU)", n, time.perf_counter() - start, math.nan))
    return out


def _gib(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def print_table(results: Sequence[Result], baseline: Result, steps: int, timed: int, device_name: str,
                dtype: torch.dtype, extras: Sequence[Extra] = ()) -> None:
    print(f"\nGroupEditing transformer on {device_name}: CFG batch 2, {steps} steps per edit "
          f"(extrapolated from {timed} timed steps after 1 warm-up), random {str(dtype).removeprefix('torch.')} "
          "weights; transformer only (no text encoder, VAE or scheduler)")
    print(f"ratios against the resident {baseline.size} {baseline.views}-view run: {baseline.s_step:.3f} s/step, "
          f"{_gib(baseline.peak_gib)} GiB peak\n")
    head = (f"{'model':<6}{'views':>6}{'tokens':>8}{'geometry':>10}  {'mode':<15}{'s/step':>9}{'s/edit':>9}"
            f"{'peak GiB':>10}{'× time':>9}{'× VRAM':>9}  note")
    print(head)
    print("-" * len(head))
    for r in results:
        if r.s_step is None:
            print(f"{r.size:<6}{r.views:>6}{r.tokens:>8}{str(r.geometry):>10}  {r.mode:<15}{'-':>9}{'-':>9}{'-':>10}"
                  f"{'-':>9}{'-':>9}  {r.note}")
            continue
        note = r.note or (f"+{r.transfer_s:.1f} s transfers per edit" if r.transfer_s else "")
        vram = r.peak_gib / baseline.peak_gib if baseline.peak_gib and not math.isnan(baseline.peak_gib) else math.nan
        print(f"{r.size:<6}{r.views:>6}{r.tokens:>8}{str(r.geometry):>10}  {r.mode:<15}{r.s_step:>9.3f}"
              f"{r.s_edit:>9.1f}{_gib(r.peak_gib):>10}{r.s_step / baseline.s_step:>9.2f}{_gib(vram):>9}  {note}")
    if extras:
        print("\nonce per edit, besides the transformer (× time: against one step of the baseline)\n")
        head = f"{'what':<32}{'views':>6}{'seconds':>10}{'peak GiB':>10}{'× time':>9}"
        print(head)
        print("-" * len(head))
        for e in extras:
            print(f"{e.what:<32}{e.views:>6}{e.seconds:>10.3f}{_gib(e.peak_gib):>10}{e.seconds / baseline.s_step:>9.2f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sizes", nargs="+", choices=["1.3B", "14B"], default=["1.3B", "14B"])
    p.add_argument("--views", nargs="+", type=int, default=[4, 8])
    p.add_argument("--modes", nargs="+", choices=MODES,
                   help="default: resident model_offload group_offload (with --tiny: all of them)")
    p.add_argument("--side", type=int, default=528, help="image side in pixels (multiple of 16)")
    p.add_argument("--steps", type=int, default=50, help="denoising steps per edit (for the extrapolation)")
    p.add_argument("--timed", type=int, default=3, help="timed steps per configuration (after 1 warm-up)")
    p.add_argument("--geometry", action="store_true", help="also run with N×1369 geometry tokens, if supported")
    p.add_argument("--vggt", action="store_true", help="also time the VGGT aggregator and the Ge-RoPE coordinates")
    p.add_argument("--json", type=Path, help="also write the results here")
    p.add_argument("--tiny", action="store_true", help="tiny config on the CPU: a smoke test of this script")
    args = p.parse_args(argv)
    if args.side % 16:
        p.error("--side must be a multiple of 16")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.tiny:
        device, dtype, device_name = torch.device("cpu"), torch.float32, "CPU (tiny smoke configuration)"
        args.sizes, args.side, args.views, args.timed = ["tiny"], 64, [2], 1
        args.modes = args.modes or list(MODES)  # every code path by default; the CPU numbers mean nothing
    elif not torch.cuda.is_available():
        print("model_gpu.py: error: no CUDA device: this benchmark measures GPU time and memory "
              "(use --tiny for a CPU smoke run)", file=sys.stderr)
        return 2
    else:
        device, dtype = torch.device("cuda"), torch.bfloat16
        device_name = torch.cuda.get_device_name(device)
        args.modes = args.modes or ["resident", "model_offload", "group_offload"]
    threads = torch.get_num_threads()
    if args.tiny:
        torch.set_num_threads(1)  # tiny matrices: more threads only contend on a shared CPU
    try:
        return _run(args, device, dtype, device_name)
    finally:
        torch.set_num_threads(threads)


def _run(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, device_name: str) -> int:
    cls, geometry_ok = transformer_class()
    if args.geometry and not geometry_ok:
        logger.warning("%s takes no geometry tokens: --geometry ignored", cls.__name__)
    logger.info("transformer class %s (geometry tokens: %s), torch %s", cls.__name__, geometry_ok,
                torch.__version__)

    base_size = "tiny" if args.tiny else "1.3B"
    base_views = args.views[0] if args.tiny else 4
    baseline_args = argparse.Namespace(**{**vars(args), "geometry": False})
    baseline = run_size(cls, geometry_ok, base_size, [base_views], ["resident"], baseline_args, device, dtype)[0]
    if baseline.s_step is None:
        print("model_gpu.py: error: the baseline (resident 1.3B, 4 views) ran out of memory", file=sys.stderr)
        return 1
    results: list[Result] = []
    for size in args.sizes:
        results += run_size(cls, geometry_ok, size, args.views, args.modes, args, device, dtype)
    extras = measure_vggt(args.views, args, device) + measure_ge_rope(args.views, args.side) if args.vggt else []
    print_table(results, baseline, args.steps, args.timed, device_name, dtype, extras)
    if args.json:
        args.json.write_text(json.dumps({"device": device_name, "class": cls.__name__, "baseline": asdict(baseline),
                                         "results": [asdict(r) for r in results],
                                         "extras": [asdict(e) for e in extras]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
