"""The GroupEditing weights file, from local files only (never a hub id; see docs/models.md).

GroupEditing fine-tune weights from one safetensors file, applied in place to a transformer loaded from the base
directory (:mod:`.base_model`) by :func:`load_groupediting_weights`. Two layouts, detected from the key names (or
named explicitly):

   * ``"release"``: the public release's ``epoch-9.safetensors`` (Wan / DiffSynth-Studio names: fully fine-tuned
     ``vace.*`` weights and a LoRA on the main DiT; the mapping is in :mod:`.keymap`);
   * ``"groupedit"``: our own format, diffusers parameter names as they are, with ``__metadata__``
     ``{"format": "groupedit", "version": "1", "covers": "<prefix>,…", "base_config": "<json>"}``
     (see :func:`save_groupedit_weights`).

   Both may hold full tensors (they replace the base's) and LoRA pairs (merged into the base's Linear weights).

LoRA merge convention: for a Linear weight W of shape (out, in), down matrix A of shape (r, in) and up matrix B of
shape (out, r), ``W ← W + s · (B @ A)`` with ``s = lora_scale · alpha / r`` when the file stores ``<module>.alpha``
and ``s = lora_scale`` otherwise. The release stores no alpha: it was trained with peft's default
``lora_alpha = r`` (scale 1) and its own loader merges with ``alpha=1.0``, so ``lora_scale = 1`` reproduces it.
The product is computed in float32 and cast back to W's dtype.

Nothing is changed unless the file fits. Our own format is strict: a missing, unexpected or shape-mismatched key
raises :class:`IncompatibleWeights` listing the first names and the counts. The release layout is read as the
release's own loaders read it: keys they would ignore (no counterpart in the model, unpaired LoRA halves) are
skipped, and VACE parameters the file lacks keep the base model's values; both are listed as warnings (the log,
:attr:`WeightsReport.skipped`, health). A shape mismatch or duplicate is refused in both layouts, and so is a
file of which nothing applies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..errors import ModelNotReady
from . import keymap
from .base_model import as_load_error, check_model_dir, load_transformer, transformer_class
from .sources import DOCS, LIST_FIRST, download_hint, first_names

if TYPE_CHECKING:
    from diffusers import ModelMixin

logger = logging.getLogger(__name__)

FORMAT_NAME, FORMAT_VERSION = "groupedit", "1"

#: Parameter-name prefixes of the VACE branch: the release fine-tunes all of them, so all must be in its file.
VACE_PREFIXES: tuple[str, ...] = ("vace_blocks.", "vace_patch_embedding.")
#: Config fields that fix every parameter shape of a ``WanVACETransformer3DModel``.
SHAPE_CONFIG_KEYS: tuple[str, ...] = (
    "num_layers", "num_attention_heads", "attention_head_dim", "ffn_dim", "in_channels", "out_channels", "text_dim",
    "vace_layers", "vace_in_channels", "patch_size",
)

Layout = Literal["release", "groupedit"]


class IncompatibleWeights(ModelNotReady):
    """The weights on disk do not fit the model (missing, unexpected or mis-shaped keys, unknown layout).

    Same code as :class:`ModelNotReady` for clients, but retrying will not help until the files are fixed.
    """

    retryable = False




@dataclass(frozen=True)
class LoraTarget:
    """A LoRA on the Linear ``module`` (diffusers name): checkpoint keys of A (r, in), B (out, r), optional alpha."""

    module: str
    key_a: str
    key_b: str
    key_alpha: str | None
    rank: int


@dataclass
class WeightsReport:
    """What :func:`load_groupediting_weights` did.

    ``replaced``: parameters overwritten with the file's tensors; ``merged``: Linear modules a LoRA was merged into;
    ``ranks``: the LoRA ranks seen; ``changed``: every parameter name that now differs from the base (pass it to
    :func:`save_groupedit_weights` to convert a release file to our format). Release layout only: ``skipped``,
    keys ignored as the release ignores them; ``kept_from_base``, VACE parameters the file lacks.
    """

    path: Path
    layout: Layout
    replaced: list[str] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    kept_from_base: list[str] = field(default_factory=list)

    def warnings(self) -> list[str]:
        """What was not loaded as the file says (release layout only; empty for a complete file)."""
        out = []
        if self.skipped:
            n = len(self.skipped)
            out.append(f"{n} {'key' if n == 1 else 'keys'} skipped, as the release's own loaders skip them (first: "
                       f"{first_names(self.skipped)})")
        if self.kept_from_base:
            out.append(f"{len(self.kept_from_base)} VACE parameters not in the file kept the base model's values "
                       f"(first: {first_names(self.kept_from_base)})")
        return out

    @property
    def changed(self) -> list[str]:
        return sorted(set(self.replaced) | {m + ".weight" for m in self.merged})


def _open_header(path: Path) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """``({key: shape}, metadata)`` of a safetensors file, without reading its tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
            metadata = dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for a bad header
        raise IncompatibleWeights(
            f"{path} is not a readable safetensors file: {exc}. {download_hint('weights')}") from exc
    if not shapes:
        raise IncompatibleWeights(f"{path} holds no tensors. {download_hint('weights')}")
    return shapes, metadata


def detect_layout(keys: Iterable[str], metadata: Mapping[str, str] | None = None) -> Layout:
    """``"groupedit"`` if the metadata says so or the names are diffusers'; ``"release"`` for Wan / DiffSynth names.

    Raises :class:`IncompatibleWeights` if the names are of both kinds or of neither.
    """
    keys = list(keys)
    if (metadata or {}).get("format") == FORMAT_NAME:
        return "groupedit"
    release, diffusers = keymap.count_markers(keys)
    if release and not diffusers:
        return "release"
    if diffusers and not release:
        return "groupedit"
    kind = "both Wan/DiffSynth and diffusers names" if release else "neither Wan/DiffSynth nor diffusers names"
    raise IncompatibleWeights(
        f"unknown weights layout: the keys have {kind} (first keys: {first_names(sorted(keys), 5)}). Expected the "
        f"GroupEditing release checkpoint or a '{FORMAT_NAME}' file; name the layout explicitly if you know it. "
        + download_hint("weights"),
        {"keys": sorted(keys)[:LIST_FIRST]},
    )


@dataclass
class _Plan:
    """A checked mapping of checkpoint keys onto model parameters (nothing loaded yet)."""

    params: dict[str, str] = field(default_factory=dict)  # model parameter name → checkpoint key
    loras: list[LoraTarget] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # keys the release's own loaders would ignore
    kept_from_base: list[str] = field(default_factory=list)  # VACE parameters the file lacks (release layout)


def _base_config(model: torch.nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", {}) or {}
    return {k: (list(config[k]) if isinstance(config[k], (list, tuple)) else config[k])
            for k in SHAPE_CONFIG_KEYS if k in config}


def _plan(
    model: torch.nn.Module,
    path: Path,
    shapes: Mapping[str, tuple[int, ...]],
    metadata: Mapping[str, str],
    layout: Layout,
) -> _Plan:
    """Maps every key onto the model and checks names, shapes and coverage; raises with everything wrong at once."""
    model_params = dict(model.named_parameters())
    unexpected: list[str] = []
    mismatched: list[str] = []
    duplicates: list[str] = []
    plan = _Plan()
    lora_parts: dict[str, dict[str, str]] = {}
    for key in sorted(shapes):
        parsed = keymap.parse_release_key(key) if layout == "release" else keymap.parse_diffusers_key(key)
        if parsed is None:
            unexpected.append(key)
        elif parsed.kind == "param":
            if parsed.name not in model_params:
                unexpected.append(key if parsed.name == key else f"{key} (→ {parsed.name})")
            elif parsed.name in plan.params:
                duplicates.append(f"{key} and {plan.params[parsed.name]} (→ {parsed.name})")
            else:
                plan.params[parsed.name] = key
                want = tuple(model_params[parsed.name].shape)
                if tuple(shapes[key]) != want:
                    mismatched.append(f"{key}: file {tuple(shapes[key])} vs model {want}")
        else:
            parts = lora_parts.setdefault(parsed.name, {})
            if parsed.part in parts:
                duplicates.append(f"{key} and {parts[parsed.part]} (LoRA {parsed.part} of {parsed.name})")
            parts[str(parsed.part)] = key
    for module, parts in sorted(lora_parts.items()):
        weight = model_params.get(module + ".weight")
        if weight is None or weight.ndim != 2:
            unexpected.extend(f"{k} (no Linear {module} in the model)" for k in parts.values())
            continue
        if "A" not in parts or "B" not in parts:
            lacking = "lora_A (down)" if "A" not in parts else "lora_B (up)"
            unexpected.append(f"{first_names(sorted(parts.values()), 3)} ({lacking} missing for {module})")
            continue
        a, b = shapes[parts["A"]], shapes[parts["B"]]
        out_f, in_f = weight.shape
        if len(a) != 2 or len(b) != 2 or a[1] != in_f or b[0] != out_f or a[0] != b[1]:
            mismatched.append(f"LoRA {module}: A {tuple(a)}, B {tuple(b)} vs weight {(out_f, in_f)}")
            continue
        alpha = parts.get("alpha")
        if alpha is not None and int(torch.Size(shapes[alpha]).numel()) != 1:
            mismatched.append(f"{alpha}: alpha must be a scalar, got shape {tuple(shapes[alpha])}")
            continue
        plan.loras.append(LoraTarget(module, parts["A"], parts["B"], alpha, int(a[0])))
    covers = VACE_PREFIXES if layout == "release" else tuple(p for p in metadata.get("covers", "").split(",") if p)
    missing = [n for n in model_params if n.startswith(covers) and n not in plan.params] if covers else []
    if layout == "release":
        # The release loads its VACE weights with strict=False and reads only LoRA pairs that fit: whatever else
        # the file holds is ignored there, and the base keeps what the file lacks. Shapes must still fit.
        plan.skipped, unexpected = unexpected, []
        plan.kept_from_base, missing = missing, []
    if unexpected or mismatched or duplicates or missing:
        raise IncompatibleWeights(_mismatch_message(model, path, layout, shapes, missing, unexpected, mismatched,
                                                    duplicates),
                                  {"missing": missing[:LIST_FIRST], "n_missing": len(missing),
                                   "unexpected": unexpected[:LIST_FIRST], "n_unexpected": len(unexpected),
                                   "mismatched": mismatched[:LIST_FIRST], "n_mismatched": len(mismatched),
                                   "duplicates": duplicates[:LIST_FIRST]})
    if not plan.params and not plan.loras:
        raise IncompatibleWeights(f"{path} holds nothing this model can use ({len(plan.skipped)} keys skipped, "
                                  f"first: {first_names(plan.skipped, 5)}). {download_hint('weights')}")
    return plan


def _mismatch_message(
    model: torch.nn.Module,
    path: Path,
    layout: Layout,
    shapes: Mapping[str, tuple[int, ...]],
    missing: list[str],
    unexpected: list[str],
    mismatched: list[str],
    duplicates: list[str],
) -> str:
    parts = [f"{path} ({layout} layout) does not fit the loaded {type(model).__name__}:"]
    if missing:
        parts.append(f"{len(missing)} missing (first: {first_names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (first: {first_names(unexpected)})")
    if mismatched:
        parts.append(f"{len(mismatched)} shape mismatches (first: {first_names(mismatched)})")
    if duplicates:
        parts.append(f"{len(duplicates)} duplicates (first: {first_names(duplicates)})")
    embed = next((s for k, s in shapes.items() if k.endswith("vace_patch_embedding.weight")), None)
    width = getattr(getattr(model, "config", None), "num_attention_heads", 0) * getattr(
        getattr(model, "config", None), "attention_head_dim", 0)
    if embed and width and embed[0] != width:
        sizes = {5120: "Wan2.1-VACE-14B", 1536: "Wan2.1-VACE-1.3B"}
        parts.append(f"the file is for a model of width {embed[0]} ({sizes.get(embed[0], 'unknown size')}), the base "
                     f"has width {width} ({sizes.get(width, 'unknown size')}): use the matching --model-dir")
    return "; ".join(parts) + f". See {DOCS}."


def _check_metadata(model: torch.nn.Module, path: Path, metadata: Mapping[str, str]) -> None:
    version = metadata.get("version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise IncompatibleWeights(f"{path}: '{FORMAT_NAME}' format version {version} is not supported (this build "
                                  f"reads version {FORMAT_VERSION}); update GroupEdit or re-export the weights")
    if "base_config" in metadata:
        try:
            made_for = json.loads(metadata["base_config"])
        except ValueError as exc:
            raise IncompatibleWeights(f"{path}: unreadable base_config metadata: {exc}") from exc
        have = _base_config(model)
        diff = {k: (made_for[k], have[k]) for k in made_for if k in have and made_for[k] != have[k]}
        if diff:
            listed = ", ".join(f"{k} {a} (file) vs {b} (model)" for k, (a, b) in diff.items())
            raise IncompatibleWeights(f"{path} was made for another base model: {listed}. Use the matching "
                                      f"--model-dir; see {DOCS}")


def load_groupediting_weights(
    model: torch.nn.Module,
    path: str | Path,
    *,
    layout: Layout | Literal["auto"] = "auto",
    lora_scale: float = 1.0,
) -> WeightsReport:
    """Applies a GroupEditing weights file to ``model`` (a loaded ``WanVACETransformer3DModel`` or subclass) in place.

    Full tensors replace parameters (cast to each parameter's dtype, on its device); LoRA pairs are merged as
    ``W += lora_scale · (alpha / r if stored else 1) · B @ A`` (float32 product). Everything is checked before any
    parameter changes; on any problem :class:`IncompatibleWeights` lists it and ``model`` is left as it was.
    A path that does not exist or is not a file raises ``ModelNotReady`` saying what to download.
    """
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        state = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ModelNotReady(f"GroupEditing weights {path} {state}. {download_hint('weights')}", {"weights": str(path)})
    shapes, metadata = _open_header(path)
    chosen: Layout = detect_layout(shapes, metadata) if layout == "auto" else layout
    if chosen not in ("release", "groupedit"):
        raise ValueError(f"layout must be 'auto', 'release' or 'groupedit', not {layout!r}")
    if chosen == "groupedit":
        _check_metadata(model, path, metadata)
    plan = _plan(model, path, shapes, metadata, chosen)
    params = dict(model.named_parameters())
    meta = [n for n in list(plan.params) + [t.module + ".weight" for t in plan.loras] if params[n].is_meta]
    if meta:
        raise ModelNotReady(f"cannot load {path} into a model whose parameters are not materialised "
                            f"(meta: {first_names(meta)}); load the weights before enabling offloading hooks")
    report = WeightsReport(path=path, layout=chosen, metadata=dict(metadata), skipped=plan.skipped,
                           kept_from_base=plan.kept_from_base)
    with safe_open(str(path), framework="pt", device="cpu") as f, torch.no_grad():
        for name, key in plan.params.items():
            target = params[name]
            target.copy_(f.get_tensor(key).to(device=target.device, dtype=target.dtype))
            report.replaced.append(name)
        for lora in plan.loras:
            target = params[lora.module + ".weight"]
            scale = float(lora_scale)
            if lora.key_alpha is not None:
                scale *= float(f.get_tensor(lora.key_alpha).float().item()) / lora.rank
            down = f.get_tensor(lora.key_a).to(device=target.device, dtype=torch.float32)
            up = f.get_tensor(lora.key_b).to(device=target.device, dtype=torch.float32)
            target.copy_((target.float() + scale * (up @ down)).to(target.dtype))
            report.merged.append(lora.module)
    report.ranks = sorted({t.rank for t in plan.loras})
    for warning in report.warnings():
        logger.warning("%s: %s", path, warning)
    logger.info("loaded %s (%s layout): %d tensors replaced, LoRA merged into %d Linear layers (ranks %s, scale %s)",
                path, chosen, len(report.replaced), len(report.merged), report.ranks or "-", lora_scale)
    return report


def inspect_weights(path: str | Path, model_dir: str | Path | None = None) -> dict[str, Any]:
    """What a weights file holds, from its header alone (no tensor is read): a 6 GB download checks in a second.

    Returns ``{"path", "layout", "tensors", "parameters", "bytes", "dtypes": {dtype: count}, "vace_tensors",
    "lora_pairs", "lora_ranks", "other_tensors", "metadata", "skipped", "kept_from_base", "problem"}``. Without
    ``model_dir``, ``skipped`` lists the keys no model could use (no diffusers counterpart); with the base model's
    directory, the file is planned against that model's parameter shapes (built without memory, on the meta
    device) exactly as loading would, so ``skipped``, ``kept_from_base`` and ``problem`` (why loading would refuse,
    or None) are what loading would report.
    """
    from safetensors import safe_open

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelNotReady(f"{path} is not a file. {download_hint('weights')}")
    shapes, metadata = _open_header(path)
    with safe_open(str(path), framework="pt", device="cpu") as f:
        dtypes = [str(f.get_slice(k).get_dtype()) for k in shapes]
    layout = detect_layout(shapes, metadata)
    parse = keymap.parse_release_key if layout == "release" else keymap.parse_diffusers_key
    parsed = {k: parse(k) for k in shapes}
    lora = [(k, p) for k, p in parsed.items() if p is not None and p.kind == "lora"]
    sizes = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}
    count = {k: int(torch.Size(s).numel()) for k, s in shapes.items()}
    info: dict[str, Any] = {
        "path": str(path), "layout": layout, "tensors": len(shapes), "parameters": sum(count.values()),
        "bytes": sum(count[k] * sizes.get(d, 4) for k, d in zip(shapes, dtypes)),
        "dtypes": {d: dtypes.count(d) for d in sorted(set(dtypes))},
        "vace_tensors": sum(1 for p in parsed.values() if p is not None and p.kind == "param"
                            and p.name.startswith(VACE_PREFIXES)),
        "lora_pairs": sum(1 for _, p in lora if p.part == "A"),
        "lora_ranks": sorted({shapes[k][0] for k, p in lora if p.part == "A" and len(shapes[k]) == 2}),
        "metadata": dict(metadata), "skipped": sorted(k for k, p in parsed.items() if p is None),
        "kept_from_base": [], "problem": None,
    }
    info["other_tensors"] = info["tensors"] - info["vace_tensors"] - len(lora)
    if model_dir is not None:
        base = check_model_dir(model_dir, ("transformer",))
        cls = transformer_class()
        with torch.device("meta"):
            model = cls.from_config(base.transformer_config)
        try:
            if layout == "groupedit":
                _check_metadata(model, path, metadata)
            plan = _plan(model, path, shapes, metadata, layout)
            info["skipped"], info["kept_from_base"] = plan.skipped, plan.kept_from_base
        except IncompatibleWeights as exc:
            info["problem"] = exc.message
    return info


def save_groupedit_weights(
    model: torch.nn.Module,
    path: str | Path,
    *,
    names: Iterable[str] = (),
    covers: Sequence[str] = VACE_PREFIXES,
    dtype: torch.dtype | None = None,
    extra_metadata: Mapping[str, str] | None = None,
    loras: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Writes our own format: the parameters under the ``covers`` prefixes (all of them; loading checks none is
    missing) plus ``names``, with their diffusers names, in ``dtype`` (default: as they are), LoRA tensors
    ``loras`` as they are named (``<module>.lora_A.weight``, ``<module>.lora_B.weight``, ``<module>.alpha``), and the
    metadata ``format``, ``version``, ``covers`` and ``base_config`` (the shape-defining config, checked at load).

    To convert the release file: ``report = load_groupediting_weights(model, release)`` then
    ``save_groupedit_weights(model, out, names=report.changed)``.
    """
    from safetensors.torch import save_file

    params = dict(model.named_parameters())
    wanted = set(names)
    unknown = sorted(wanted - set(params))
    if unknown:
        raise ValueError(f"not parameters of the model: {first_names(unknown)}")
    wanted |= {n for n in params if n.startswith(tuple(covers))}
    if not wanted:
        raise ValueError("nothing to save: no parameter matches names or covers")
    tensors = {n: params[n].detach().to("cpu", dtype or params[n].dtype).contiguous() for n in sorted(wanted)}
    tensors.update({n: t.detach().to("cpu", torch.float32).contiguous() for n, t in (loras or {}).items()})
    metadata = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "covers": ",".join(covers),
                "base_config": json.dumps(_base_config(model), sort_keys=True)}
    metadata.update(extra_metadata or {})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def load_groupediting_transformer(
    model_dir: str | Path,
    weights: str | Path | None,
    *,
    dtype: torch.dtype = torch.bfloat16,
    device: str | torch.device | None = None,
    layout: Layout | Literal["auto"] = "auto",
    lora_scale: float = 1.0,
    transformer_cls: type[ModelMixin] | None = None,
) -> tuple[ModelMixin, WeightsReport | None]:
    """The base transformer with the GroupEditing weights applied (``weights=None``: the base alone), then moved to
    ``device``. Checks the weights file exists before the (slow) base load."""
    if weights is not None and not Path(weights).expanduser().is_file():
        raise ModelNotReady(f"GroupEditing weights {weights} do not exist. {download_hint('weights')}")
    model = load_transformer(model_dir, dtype=dtype, transformer_cls=transformer_cls)
    report = None if weights is None else load_groupediting_weights(model, weights, layout=layout,
                                                                     lora_scale=lora_scale)
    if device is not None:
        model = as_load_error("transformer", Path(model_dir), lambda: model.to(device))
    return model, report
