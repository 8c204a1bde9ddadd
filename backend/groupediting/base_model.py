"""The diffusers-format Wan2.1-VACE base directory, from local files only (never a hub id; see docs/models.md).

Layout (``Wan-AI/Wan2.1-VACE-14B-diffusers`` or ``-1.3B-diffusers``)::

    model_index.json
    transformer/  config.json + diffusion_pytorch_model[-0000i-of-0000n].safetensors [+ .index.json]
    vae/          config.json + diffusion_pytorch_model.safetensors
    text_encoder/ config.json + model[-0000i-of-0000n].safetensors [+ .index.json]
    tokenizer/    tokenizer_config.json + tokenizer.json (or spiece.model)

(a ``scheduler/`` folder may be there too; it is not read: the sampler is the recipe's, :mod:`.recipe`).

:func:`check_model_dir` checks this layout first and lists everything missing; the ``load_*`` functions load one
component each with ``local_files_only=True`` (only safetensors weights are read, never pickles).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ModelNotReady, OutOfMemory
from .sources import DOCS, download_hint, first_names

if TYPE_CHECKING:
    from diffusers import AutoencoderKLWan, ModelMixin
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

COMPONENTS: tuple[str, ...] = ("transformer", "vae", "text_encoder", "tokenizer")




@dataclass(frozen=True)
class BaseModelDir:
    """A checked diffusers Wan2.1-VACE directory: ``root`` and the transformer's ``config.json`` as a dict."""

    root: Path
    transformer_config: dict[str, Any]

    @property
    def size(self) -> str:
        """``"14B"``, ``"1.3B"`` or ``"custom"``, from the transformer's width (5120 / 1536)."""
        cfg = self.transformer_config
        width = int(cfg.get("num_attention_heads", 0)) * int(cfg.get("attention_head_dim", 0))
        return {5120: "14B", 1536: "1.3B"}.get(width, "custom")


def _read_json(root: Path, relative: str, problems: list[str]) -> dict[str, Any] | None:
    """``root / relative`` parsed as a JSON object, or None with a line added to ``problems``."""
    path = root / relative
    if not path.is_file():
        problems.append(relative)
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{relative} (unreadable: {exc})")
        return None
    if not isinstance(data, dict):
        problems.append(f"{relative} (not a JSON object)")
        return None
    return data


def _check_weights(root: Path, component: str, stem: str, problems: list[str]) -> None:
    """Checks ``root/component`` has ``stem.safetensors``, or ``stem.safetensors.index.json`` and every shard it
    lists."""
    folder = root / component
    single, index = folder / f"{stem}.safetensors", folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return
    if not index.is_file():
        problems.append(f"{component}/{stem}.safetensors (or {stem}.safetensors.index.json and its shards)")
        return
    data = _read_json(root, f"{component}/{index.name}", problems)
    if data is None:
        return
    shards = sorted(set(data.get("weight_map", {}).values()))
    if not shards:
        problems.append(f"{component}/{index.name} (lists no shards)")
    problems.extend(f"{component}/{s} (listed in {index.name})" for s in shards if not (folder / s).is_file())


def check_model_dir(model_dir: str | Path, components: Sequence[str] = COMPONENTS) -> BaseModelDir:
    """Checks the diffusers Wan2.1-VACE layout of ``model_dir`` for ``components``; raises ``ModelNotReady``
    listing every missing file (an interrupted download shows up as missing shards)."""
    root = Path(model_dir).expanduser()
    if not root.is_dir():
        state = "is not a directory" if root.exists() else "does not exist"
        raise ModelNotReady(f"model directory {root} {state}. {download_hint('base')}", {"model_dir": str(root)})
    unknown = sorted(set(components) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown components {unknown}; known: {', '.join(COMPONENTS)}")
    problems: list[str] = []
    _read_json(root, "model_index.json", problems)
    transformer_config: dict[str, Any] = {}
    if "transformer" in components:
        transformer_config = _read_json(root, "transformer/config.json", problems) or {}
        if transformer_config and "vace_layers" not in transformer_config:
            problems.append(
                f"transformer/config.json describes {transformer_config.get('_class_name', 'a model')} without "
                "VACE layers: this is not a Wan2.1-VACE transformer"
            )
        _check_weights(root, "transformer", "diffusion_pytorch_model", problems)
    if "vae" in components:
        _read_json(root, "vae/config.json", problems)
        _check_weights(root, "vae", "diffusion_pytorch_model", problems)
    if "text_encoder" in components:
        _read_json(root, "text_encoder/config.json", problems)
        _check_weights(root, "text_encoder", "model", problems)
    if "tokenizer" in components:
        _read_json(root, "tokenizer/tokenizer_config.json", problems)
        if not ((root / "tokenizer" / "tokenizer.json").is_file() or (root / "tokenizer" / "spiece.model").is_file()):
            problems.append("tokenizer/tokenizer.json (or tokenizer/spiece.model)")
    if problems:
        raise ModelNotReady(
            f"model directory {root} is incomplete; missing or bad: {first_names(problems)}. {download_hint('base')}",
            {"model_dir": str(root), "problems": problems},
        )
    return BaseModelDir(root=root, transformer_config=transformer_config)


def transformer_class() -> type[ModelMixin]:
    """``GroupEditingTransformer`` when its module is in the package (an import error then propagates), else
    diffusers' ``WanVACETransformer3DModel``; both load the same files."""
    if importlib.util.find_spec(f"{__package__}.transformer") is not None:
        module = importlib.import_module(f"{__package__}.transformer")
        cls = getattr(module, "GroupEditingTransformer", None)
        if cls is not None:
            return cls
    from diffusers import WanVACETransformer3DModel

    return WanVACETransformer3DModel


def _load_module(component: str, root: Path, load: Any, device: str | torch.device | None) -> Any:
    """``load()`` a torch module through :func:`as_load_error`, move it to ``device`` (if given), in eval mode."""
    module = as_load_error(component, root, load)
    if device is not None:
        module = as_load_error(component, root, lambda: module.to(device))
    return module.eval()


def as_load_error(component: str, root: Path, fn: Any) -> Any:
    """Runs ``fn()``, turning load failures into ``ModelNotReady`` / ``OutOfMemory`` that name the component."""
    try:
        return fn()
    except torch.cuda.OutOfMemoryError as exc:
        raise OutOfMemory(f"out of GPU memory loading {component} from {root}: use offloading or a smaller model "
                          f"(see {DOCS})") from exc
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        text = str(exc)
        if "can't allocate memory" in text or "out of memory" in text.lower():
            raise OutOfMemory(f"out of memory loading {component} from {root}: {text}") from exc
        raise ModelNotReady(f"could not load {component} from {root}: {text}. {download_hint('base')}",
                            {"component": component}) from exc


def load_transformer(
    model_dir: str | Path,
    *,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device | None = None,
    transformer_cls: type[ModelMixin] | None = None,
) -> ModelMixin:
    """The VACE transformer of ``model_dir`` (``transformer_cls``, by default see :func:`transformer_class`),
    in ``dtype`` (diffusers keeps norms, RoPE and modulation tables in float32), in eval mode, on ``device``."""
    base = check_model_dir(model_dir, ("transformer",))
    cls = transformer_cls or transformer_class()
    if importlib.util.find_spec("accelerate") is None:
        logger.warning("accelerate is not installed: the transformer is built in RAM before its weights are read "
                       "(about twice the memory; `pip install accelerate` avoids it)")
    return _load_module("transformer", base.root, lambda: cls.from_pretrained(
        base.root, subfolder="transformer", torch_dtype=dtype, local_files_only=True), device)


def load_vae(
    model_dir: str | Path, *, dtype: torch.dtype = torch.float32, device: str | torch.device | None = None
) -> AutoencoderKLWan:
    """The Wan VAE of ``model_dir`` (float32 by default, as diffusers' Wan examples run it), in eval mode."""
    from diffusers import AutoencoderKLWan

    base = check_model_dir(model_dir, ("vae",))
    return _load_module("vae", base.root, lambda: AutoencoderKLWan.from_pretrained(
        base.root, subfolder="vae", torch_dtype=dtype, local_files_only=True), device)


def load_text_encoder(
    model_dir: str | Path, *, dtype: torch.dtype = torch.bfloat16, device: str | torch.device | None = None
) -> tuple[PreTrainedTokenizerBase, PreTrainedModel]:
    """``(tokenizer, UMT5 encoder)`` of ``model_dir``; the encoder in eval mode. UMT5-XXL is ~5.7 B parameters:
    encode the prompts once and free it (see docs/models.md)."""
    from transformers import AutoTokenizer, UMT5EncoderModel

    base = check_model_dir(model_dir, ("text_encoder", "tokenizer"))
    tokenizer = as_load_error("tokenizer", base.root, lambda: AutoTokenizer.from_pretrained(
        base.root / "tokenizer", local_files_only=True))
    encoder = _load_module("text_encoder", base.root, lambda: UMT5EncoderModel.from_pretrained(
        base.root / "text_encoder", dtype=dtype, local_files_only=True), device)
    return tokenizer, encoder


@dataclass
class BaseComponents:
    """The loaded parts of a Wan2.1-VACE directory (``None`` for those not asked for)."""

    root: Path
    transformer: ModelMixin | None = None
    vae: AutoencoderKLWan | None = None
    tokenizer: PreTrainedTokenizerBase | None = None
    text_encoder: PreTrainedModel | None = None


def load_base_components(
    model_dir: str | Path,
    *,
    components: Sequence[str] = COMPONENTS,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device | None = None,
    transformer_cls: type[ModelMixin] | None = None,
) -> BaseComponents:
    """Checks the whole layout for ``components`` first (one error listing everything missing), then loads them.

    ``dtype`` applies to the transformer and text encoder; the VAE stays float32. ``tokenizer`` and
    ``text_encoder`` come together.
    """
    wanted = set(components)
    if "tokenizer" in wanted or "text_encoder" in wanted:
        wanted |= {"tokenizer", "text_encoder"}
    base = check_model_dir(model_dir, [c for c in COMPONENTS if c in wanted])
    out = BaseComponents(root=base.root)
    if "transformer" in wanted:
        out.transformer = load_transformer(base.root, dtype=dtype, device=device, transformer_cls=transformer_cls)
    if "vae" in wanted:
        out.vae = load_vae(base.root, device=device)
    if "text_encoder" in wanted:
        out.tokenizer, out.text_encoder = load_text_encoder(base.root, dtype=dtype, device=device)
    return out
