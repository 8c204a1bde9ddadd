"""Parameter names: the GroupEditing release's (Wan / DiffSynth-Studio) → diffusers' ``WanVACETransformer3DModel``.

The public release (a DiffSynth-Studio fork) names parameters as the original Wan code does. Its checkpoint was
exported from the training pipeline with the ``pipe.`` prefix removed, so keys carry the name of the pipeline
attribute they belong to:

* ``vace.<name>``: the fully fine-tuned VACE branch (DiffSynth's ``VaceWanModel``: ``vace_blocks.N.…`` and
  ``vace_patch_embedding.…``);
* ``dit.<module>.lora_A.default.weight`` / ``….lora_B.default.weight``: a peft LoRA on the main DiT (targets
  ``q, k, v, o, ffn.0, ffn.2`` of the self- and cross-attention and feed-forward layers by default).

Other prefixes seen in Wan tooling are accepted too (``pipe.``, ``diffusion_model.``, ``model.diffusion_model.``,
none), as are DiffSynth's VRAM-management wrappers (a ``.module.`` path segment, dropped) and peft's wrapped
original weights (a ``.base_layer.`` segment, dropped).

Per block (``blocks.N.`` in the main DiT, ``vace_blocks.N.`` in the VACE branch; N is the list index in both):

=====================================  =====================================
release (Wan / DiffSynth)              diffusers
=====================================  =====================================
``self_attn.{q,k,v}.*``                ``attn1.to_{q,k,v}.*``
``self_attn.o.*``                      ``attn1.to_out.0.*``
``self_attn.norm_{q,k}.weight``        ``attn1.norm_{q,k}.weight``
``cross_attn.*`` (same pattern)        ``attn2.*``
``cross_attn.{k_img,v_img}.*``         ``attn2.{add_k_proj,add_v_proj}.*``
``cross_attn.norm_k_img.weight``       ``attn2.norm_added_k.weight``
``norm3.*`` (affine, before cross-attn) ``norm2.*``
``ffn.0.*`` / ``ffn.2.*``              ``ffn.net.0.proj.*`` / ``ffn.net.2.*``
``modulation`` (1, 6, D)               ``scale_shift_table`` (1, 6, D)
``before_proj.*`` (VACE block 0)       ``proj_in.*``
``after_proj.*`` (VACE)                ``proj_out.*``
=====================================  =====================================

Top level: ``patch_embedding`` and ``vace_patch_embedding`` keep their names; ``text_embedding.{0,2}`` →
``condition_embedder.text_embedder.linear_{1,2}``; ``time_embedding.{0,2}`` →
``condition_embedder.time_embedder.linear_{1,2}``; ``time_projection.1`` → ``condition_embedder.time_proj``;
``head.head`` → ``proj_out``; ``head.modulation`` → ``scale_shift_table``. This agrees with diffusers' own
``convert_wan_transformer_to_diffusers`` (a test checks it key by key). The modulation order (shift, scale, gate for
attention, then for the feed-forward) is the same on both sides, so no tensor is reshaped.

LoRA names: ``<module>.lora_A[.<adapter>].weight`` (down, shape (r, in)) and ``<module>.lora_B[.<adapter>].weight``
(up, shape (out, r)); kohya-style ``lora_down`` / ``lora_up`` are read as A / B; an optional ``<module>.alpha``
scalar sets the scale to alpha / r (see :mod:`.weights` for the merge convention).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

#: Top-level parameters: release module path → diffusers module path.
_TOP_LEVEL: dict[str, str] = {
    "patch_embedding": "patch_embedding",
    "vace_patch_embedding": "vace_patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
}

#: Top-level bare parameters (no ``.weight`` / ``.bias`` suffix).
_TOP_LEVEL_PARAMS: dict[str, str] = {"head.modulation": "scale_shift_table"}

#: Modules inside a block (main or VACE): release → diffusers.
_BLOCK_MODULES: dict[str, str] = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "norm3": "norm2",
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
}

#: Modules that only VACE blocks have.
_VACE_BLOCK_MODULES: dict[str, str] = {"before_proj": "proj_in", "after_proj": "proj_out"}

#: Bare parameters inside a block.
_BLOCK_PARAMS: dict[str, str] = {"modulation": "scale_shift_table"}

_BLOCK_RE = re.compile(r"^(blocks|vace_blocks)\.(\d+)\.(.+)$")
_LEAF_RE = re.compile(r"^(.+)\.(weight|bias)$")

#: Prefixes stripped from release keys, longest first. ``vace.`` is stripped as well: the VACE module's own names
#: (``vace_blocks``, ``vace_patch_embedding``) already say where they belong.
RELEASE_PREFIXES: tuple[str, ...] = (
    "model.diffusion_model.",
    "pipe.vace.",
    "pipe.dit.",
    "diffusion_model.",
    "pipe.",
    "vace.",
    "dit.",
)

#: Name fragments only the release (Wan / DiffSynth) naming has.
RELEASE_MARKERS: tuple[str, ...] = (
    ".self_attn.", ".cross_attn.", ".modulation", ".ffn.0.", ".ffn.2.", ".before_proj.", ".after_proj.", ".norm3.",
    "head.head.", "text_embedding.", "time_embedding.", "time_projection.",
)
#: Name fragments only the diffusers naming has.
DIFFUSERS_MARKERS: tuple[str, ...] = (
    ".attn1.", ".attn2.", ".to_q.", ".to_out.", "scale_shift_table", ".ffn.net.", ".proj_in.", "condition_embedder.",
)

LoraPart = Literal["A", "B", "alpha"]
_LORA_RE = re.compile(r"^(.+)\.(lora_A|lora_B|lora_down|lora_up)(?:\.([A-Za-z0-9_\-]+))?\.weight$")
_LORA_PART: dict[str, LoraPart] = {"lora_A": "A", "lora_down": "A", "lora_B": "B", "lora_up": "B"}


@dataclass(frozen=True)
class ParsedKey:
    """One checkpoint key, split into what it is.

    ``kind`` is ``"param"`` (a full tensor for parameter ``name``) or ``"lora"`` (part ``part`` of a LoRA on the
    module ``name``, a Linear whose parameter is ``name + ".weight"``).
    """

    kind: Literal["param", "lora"]
    name: str
    part: LoraPart | None = None


def strip_release_prefix(key: str) -> str:
    """``key`` without its pipeline prefix (``vace.``, ``dit.``, ``pipe.…``) and without ``.module.`` (DiffSynth)
    or ``.base_layer.`` (peft) wrapper segments."""
    for prefix in RELEASE_PREFIXES:
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.replace(".module.", ".").replace(".base_layer.", ".")


def _block_table(group: str) -> dict[str, str]:
    """Release -> diffusers names inside one block of ``group`` ("blocks" or "vace_blocks")."""
    table = {**_BLOCK_MODULES, **_BLOCK_PARAMS}
    if group == "vace_blocks":
        table.update(_VACE_BLOCK_MODULES)
    return table


def release_module_to_diffusers(path: str) -> str | None:
    """The diffusers name of a release module or bare-parameter path, or ``None`` if it has no counterpart.

    ``path`` has no prefix (see :func:`strip_release_prefix`), e.g.
    ``blocks.3.self_attn.o`` → ``blocks.3.attn1.to_out.0``,
    ``vace_blocks.0.before_proj`` → ``vace_blocks.0.proj_in``, ``head.modulation`` → ``scale_shift_table``.
    """
    if path in _TOP_LEVEL:
        return _TOP_LEVEL[path]
    if path in _TOP_LEVEL_PARAMS:
        return _TOP_LEVEL_PARAMS[path]
    match = _BLOCK_RE.match(path)
    if match is None:
        return None
    group, index, rest = match.groups()
    mapped = _block_table(group).get(rest)
    return None if mapped is None else f"{group}.{index}.{mapped}"


def release_param_to_diffusers(name: str) -> str | None:
    """The diffusers name of a release parameter (``….weight``, ``….bias`` or a bare one), or ``None``."""
    bare = release_module_to_diffusers(name)
    if bare is not None and (name in _TOP_LEVEL_PARAMS or name.rsplit(".", 1)[-1] in _BLOCK_PARAMS):
        return bare
    match = _LEAF_RE.match(name)
    if match is None:
        return None
    module = release_module_to_diffusers(match.group(1))
    return None if module is None else f"{module}.{match.group(2)}"


def parse_lora_key(key: str) -> tuple[str, LoraPart] | None:
    """``(module path, part)`` if ``key`` is a LoRA tensor (``….lora_A[.adapter].weight``, ``….alpha``), or None."""
    match = _LORA_RE.match(key)
    if match is not None:
        return match.group(1), _LORA_PART[match.group(2)]
    if key.endswith(".alpha"):
        return key[: -len(".alpha")], "alpha"
    return None


def parse_release_key(key: str) -> ParsedKey | None:
    """A release checkpoint key in diffusers terms, or ``None`` if the key has no diffusers counterpart."""
    stripped = strip_release_prefix(key)
    lora = parse_lora_key(stripped)
    if lora is not None:
        module = release_module_to_diffusers(lora[0])
        return None if module is None else ParsedKey("lora", module, lora[1])
    name = release_param_to_diffusers(stripped)
    return None if name is None else ParsedKey("param", name)


def parse_diffusers_key(key: str) -> ParsedKey:
    """A key of our own format (diffusers names; LoRA as ``<module>.lora_A.weight`` etc., a ``transformer.`` prefix
    allowed). Whether the name exists in the model is checked later, against the model."""
    if key.startswith("transformer."):
        key = key[len("transformer."):]
    lora = parse_lora_key(key)
    if lora is not None:
        return ParsedKey("lora", lora[0], lora[1])
    return ParsedKey("param", key)


def diffusers_param_to_release(name: str) -> str | None:
    """Inverse of :func:`release_param_to_diffusers` (no prefix added), or ``None``; writes release-style names."""
    inverse_top = {v: k for k, v in {**_TOP_LEVEL, **_TOP_LEVEL_PARAMS}.items()}
    leaf = _LEAF_RE.match(name)
    module, suffix = (leaf.group(1), "." + leaf.group(2)) if leaf else (name, "")
    if module in inverse_top:
        return inverse_top[module] + suffix
    match = _BLOCK_RE.match(module)
    if match is None:
        return None
    group, index, rest = match.groups()
    inverse = {v: k for k, v in _block_table(group).items()}
    return None if rest not in inverse else f"{group}.{index}.{inverse[rest]}{suffix}"


def count_markers(keys: list[str]) -> tuple[int, int]:
    """How many ``keys`` carry a release-only and a diffusers-only name fragment: ``(release, diffusers)``.

    Keys are checked with a leading ``.`` so that fragments anchored on a dot also match at the start.
    """
    release = sum(1 for k in keys
                  if k.startswith(("vace.", "dit.", "pipe.")) or any(m in "." + k for m in RELEASE_MARKERS))
    diffusers = sum(1 for k in keys if any(m in "." + k for m in DIFFUSERS_MARKERS))
    return release, diffusers
