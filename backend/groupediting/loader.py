"""A ready GroupEditingPipeline from local files: settings, a GPU memory check before loading, and a cache.

Order of work in :func:`load_pipeline` (every failure is a :class:`~backend.errors.BackendError` that says what to
change): settings checked → model directory layout checked (:func:`.base_model.check_model_dir`) → weights file
checked → on CUDA, the free GPU memory compared with :func:`estimate_vram` → transformer (+ GroupEditing weights),
VAE, text encoder, tokenizer and, with ``vggt``, the VGGT aggregator loaded → placed on the device or offloaded
(:meth:`.configure`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from blender_addon.core.errors import InvalidInputError
from blender_addon.core.options import check_options

from ..errors import InvalidInput, OutOfMemory
from .pipeline import GroupEditingPipeline
from .settings import OFFLOAD_MODES, LoadSettings
from .vggt import find_vggt_file, load_vggt_aggregator
from .base_model import check_model_dir, load_base_components
from .sources import DOCS
from .weights import WeightsReport, load_groupediting_transformer

logger = logging.getLogger(__name__)

#: ``--dtype`` names (:data:`~.settings.DTYPE_NAMES`) -> torch dtype of the transformer and text encoder.
DTYPES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
    "fp32": torch.float32, "float32": torch.float32,
}
#: Offload modes from the fastest to the one that needs the least GPU memory.
FASTEST_FIRST: tuple[str, ...] = ("none", "model", "group", "sequential")
#: Working memory on top of the resident weights (activations of a 4-view group, CUDA context, allocator slack).
ACTIVATION_MARGIN = 3 << 30
GIB = float(1 << 30)


def resolved_device(settings: LoadSettings) -> str:
    """``"cuda"`` or ``"cpu"`` (``"auto"``: CUDA when torch sees a GPU)."""
    if settings.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return settings.device


def resolved_dtype(settings: LoadSettings) -> torch.dtype:
    """The torch type of the transformer and text encoder (default: bf16 on CUDA, fp32 on the CPU)."""
    if settings.dtype is None:
        return torch.bfloat16 if resolved_device(settings) == "cuda" else torch.float32
    return DTYPES[settings.dtype]


def check_load_settings(settings: LoadSettings) -> None:
    """Raise :class:`InvalidInput` for settings that cannot work here, saying which flag to change (ranges and
    choices are :class:`LoadSettings`'s own)."""
    try:
        check_options(settings)
    except InvalidInputError as exc:
        raise InvalidInput(f"{exc}: change that flag (groupedit-server --help)") from exc
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise InvalidInput("--device cuda was asked for but torch sees no CUDA GPU: check the driver and the "
                           "torch build (torch.cuda.is_available()), or use --device cpu")
    if settings.offload != "none" and resolved_device(settings) != "cuda":
        raise InvalidInput(f"--offload {settings.offload} moves weights between CPU and GPU and needs a CUDA GPU; "
                           "on the CPU use --offload none")


# ------------------------------------------------------------------------------------------------- GPU memory
def _parameter_count(folder: Path) -> int:
    """Parameters in the safetensors files of ``folder``, from their headers (no tensor is read)."""
    from safetensors import safe_open

    total = 0
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                n = 1
                for side in f.get_slice(key).get_shape():
                    n *= int(side)
                total += n
    return total


def _aggregator_count(vggt: Path | None) -> int:
    """Parameters of the VGGT aggregator in ``vggt`` (0 without one), from the header."""
    if vggt is None:
        return 0
    from safetensors import safe_open

    total = 0
    with safe_open(str(find_vggt_file(vggt)), framework="pt", device="cpu") as f:
        for key in f.keys():
            if key.startswith("aggregator."):
                n = 1
                for side in f.get_slice(key).get_shape():
                    n *= int(side)
                total += n
    return total


def estimate_vram(model_dir: str | Path, dtype: torch.dtype, offload: str, vggt: Path | None = None
                  ) -> dict[str, int]:
    """Bytes of GPU memory an edit needs, per offload mode, from the parameter counts of ``model_dir``.

    Returns ``{"none": …, "model": …, "group": …, "sequential": …}``: ``none`` holds transformer + text encoder
    (``dtype``) + VAE (float32); ``model`` the largest of them plus the VAE; ``group`` / ``sequential`` the VAE and
    a share of one block. Every mode adds the VGGT aggregator when ``vggt`` is given (float32, resident, as the
    release runs it under bfloat16 autocast) and :data:`ACTIVATION_MARGIN`. ``offload`` is only checked for validity.
    """
    if offload not in OFFLOAD_MODES:
        raise InvalidInput(f"unknown offload mode {offload!r}")
    root = Path(model_dir).expanduser()
    size = torch.finfo(dtype).bits // 8
    transformer = _parameter_count(root / "transformer") * size
    encoder = _parameter_count(root / "text_encoder") * size
    vae = _parameter_count(root / "vae") * 4
    fixed = vae + _aggregator_count(vggt) * 4 + ACTIVATION_MARGIN
    return {
        "none": transformer + encoder + fixed,
        "model": max(transformer, encoder) + fixed,
        "group": transformer // 20 + fixed,
        "sequential": fixed,
    }


def check_vram(needed: dict[str, int], offload: str, free: int, device_name: str) -> None:
    """Raise :class:`OutOfMemory` when ``free`` bytes are fewer than ``needed[offload]``, naming what fits."""
    if free >= needed[offload]:
        return
    fits = [m for m in FASTEST_FIRST if needed[m] <= free]
    advice = (f"Start the server with --offload {fits[0]} (needs about {needed[fits[0]] / GIB:.0f} GiB)" if fits
              else "Use the 1.3B base model (--model-dir of Wan2.1-VACE-1.3B-diffusers)")
    raise OutOfMemory(
        f"not enough GPU memory on {device_name}: the model needs about {needed[offload] / GIB:.0f} GiB with "
        f"--offload {offload} but {free / GIB:.1f} GiB are free. {advice}, close other programs that "
        f"use the GPU, or pass --no-vram-check to try anyway (see {DOCS})",
        {"needed": needed[offload], "free": free, "offload": offload},
    )


# ---------------------------------------------------------------------------------------------------- loading
def load_pipeline(settings: LoadSettings) -> tuple[GroupEditingPipeline, WeightsReport | None]:
    """Load and place a GroupEditingPipeline as ``settings`` say (see the module docstring for the order); also
    returns what loading the GroupEditing weights reported (None without weights)."""
    check_load_settings(settings)
    if settings.model_dir is None:
        raise InvalidInput("the groupediting editor needs --model-dir DIR (the diffusers Wan2.1-VACE directory)")
    device, dtype = resolved_device(settings), resolved_dtype(settings)
    base = check_model_dir(Path(settings.model_dir).expanduser())
    weights = Path(settings.weights).expanduser() if settings.weights else None
    vggt = Path(settings.vggt).expanduser() if settings.vggt else None
    if vggt is not None:
        find_vggt_file(vggt)  # a wrong path fails before the slow loads
    if settings.vram_check and device == "cuda":
        free, _total = torch.cuda.mem_get_info()
        check_vram(estimate_vram(base.root, dtype, settings.offload, vggt), settings.offload, free,
                   torch.cuda.get_device_name(0))
    resident = device if settings.offload == "none" else None
    logger.info("loading GroupEditing (%s base) from %s, weights %s, %s on %s, offload %s", base.size, base.root,
                weights or "none (base only)", dtype, device, settings.offload)
    try:
        transformer, report = load_groupediting_transformer(
            base.root, weights, dtype=dtype, device=resident,
            layout=settings.weights_layout, lora_scale=settings.lora_scale)  # type: ignore[arg-type]
        parts = load_base_components(base.root, components=("vae", "text_encoder", "tokenizer"), dtype=dtype,
                                     device=resident)
        aggregator = None if vggt is None else load_vggt_aggregator(vggt, device)
    except torch.OutOfMemoryError as exc:
        raise OutOfMemory(f"out of GPU memory while loading the model: use --offload model or group (see {DOCS})") \
            from exc
    if report is not None:
        logger.info("GroupEditing weights: %d tensors replaced, LoRA merged into %d layers",
                    len(report.replaced), len(report.merged))
    pipe = GroupEditingPipeline(tokenizer=parts.tokenizer, text_encoder=parts.text_encoder, vae=parts.vae,
                                transformer=transformer, geometry_encoder=aggregator)
    pipe.configure(attention_backend=settings.attention_backend, vae_tiling=settings.vae_tiling,
                   vae_slicing=settings.vae_slicing, offload=None if settings.offload == "none" else settings.offload,
                   device=device)
    return pipe, report


_CACHE: dict[LoadSettings, tuple[GroupEditingPipeline, WeightsReport | None]] = {}


def cached_pipeline(settings: LoadSettings) -> tuple[GroupEditingPipeline, WeightsReport | None]:
    """:func:`load_pipeline`, once per process for the same settings (a different setting frees the old one)."""
    if settings not in _CACHE:
        _CACHE.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        _CACHE[settings] = load_pipeline(settings)
    return _CACHE[settings]
