"""Paired multi-view training data: what an edit of a group is, its text, and the dataset's manifest (bpy-free).

A *group* is one asset seen from one rig before and after one edit applied to the asset itself (so the after-views are
consistent by construction), with the edited region's masks, exact cameras and position passes (two ViewSets, see
docs/training.md). Everything about a group follows from the dataset's seed and the group's index
(:func:`plan_edit`), so a dataset can be made again, or resumed, exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidInputError

#: The kinds of edit a dataset can make (``--edits``).
EDIT_KINDS = ("recolour", "finish", "pattern", "material")
FORMAT = "groupedit.dataset"
VERSION = 1

#: Named colours the recolours pick from: (name, sRGB 0-1).
PALETTE: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.80, 0.10, 0.10)), ("dark green", (0.10, 0.40, 0.15)), ("navy blue", (0.08, 0.12, 0.45)),
    ("yellow", (0.95, 0.85, 0.15)), ("orange", (0.95, 0.50, 0.10)), ("purple", (0.45, 0.15, 0.55)),
    ("teal", (0.10, 0.50, 0.50)), ("pink", (0.95, 0.55, 0.70)), ("brown", (0.40, 0.25, 0.12)),
    ("white", (0.92, 0.92, 0.90)), ("black", (0.05, 0.05, 0.05)), ("light blue", (0.55, 0.75, 0.95)),
)
#: Finishes: (name, metallic, roughness).
FINISHES: tuple[tuple[str, float, float], ...] = (
    ("glossy", 0.0, 0.1), ("matte", 0.0, 0.9), ("brushed metal", 1.0, 0.35), ("polished metal", 1.0, 0.08),
)
#: Patterns: (name, Blender texture node).
PATTERNS: tuple[tuple[str, str], ...] = (("checkered", "ShaderNodeTexChecker"), ("striped", "ShaderNodeTexWave"),
                                         ("brick", "ShaderNodeTexBrick"))
#: Procedural materials that replace a part's surface: (name, Blender texture node, roughness).
MATERIALS: tuple[tuple[str, str, float], ...] = (("marble", "ShaderNodeTexNoise", 0.15),
                                                 ("granite", "ShaderNodeTexVoronoi", 0.6),
                                                 ("wood", "ShaderNodeTexWave", 0.45))


@dataclass
class EditPlan:
    """One group's edit: its ``kind``, the material slots it applies to (``slots``: indices; all when the asset has
    one), their names (``part``), and its parameters: ``colour`` (name, sRGB) for recolours and patterns (the
    pattern's second colour is the original; a material's two colours are it and a darker shade), ``finish`` (name,
    metallic, roughness), ``pattern`` (name, node), ``material`` (name, node, roughness): a procedural material that
    replaces the part's surface."""

    kind: str
    slots: list[int]
    part: str
    colour: tuple[str, tuple[float, float, float]] | None = None
    finish: tuple[str, float, float] | None = None
    pattern: tuple[str, str] | None = None
    material: tuple[str, str, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def text(self) -> tuple[str, str]:
        """(instruction, description) of the edit, from templates filled with its parameters."""
        where = "it" if self.part == "" else f"the {self.part}"
        subject = "the object" if self.part == "" else f"the {self.part}"
        if self.kind == "recolour":
            name = self.colour[0]
            return f"make {where} {name}", f"{subject}, now {name}"
        if self.kind == "finish":
            name = self.finish[0]
            return f"give {where} a {name} finish", f"{subject} with a {name} finish"
        if self.kind == "material":
            name, colour = self.material[0], self.colour[0]
            return f"turn {where} into {colour} {name}", f"{subject} made of {colour} {name}"
        name, colour = self.pattern[0], self.colour[0]
        return f"paint a {colour} {name} pattern on {where}", f"{subject} with a {colour} {name} pattern"

    def to_dict(self) -> dict[str, Any]:
        instruction, description = self.text()
        return {**asdict(self), "instruction": instruction, "description": description}


def parse_kinds(text: str) -> list[str]:
    """``"recolour,finish"`` -> the kinds, checked against :data:`EDIT_KINDS`."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in EDIT_KINDS]
    if not kinds or unknown:
        raise InvalidInputError(f"unknown edit kind(s) {', '.join(unknown) or '(none)'}; choose from: "
                                f"{', '.join(EDIT_KINDS)}")
    return kinds


def plan_edit(seed: int, index: int, kinds: list[str], materials: list[str]) -> EditPlan:
    """The edit of group ``index`` of a dataset made with ``seed``: a kind from ``kinds``, a part (one material slot of
    ``materials``, or the whole object when it has at most one) and its parameters, all drawn from a generator
    seeded by (seed, index)."""
    rng = np.random.default_rng([seed, index])
    kind = kinds[int(rng.integers(len(kinds)))]
    named = [i for i, m in enumerate(materials) if m]
    if len(named) > 1:
        slot = named[int(rng.integers(len(named)))]
        slots, part = [slot], _part_name(materials[slot])
    else:
        slots, part = list(range(max(len(materials), 1))), ""
    plan = EditPlan(kind, slots, part)
    plan.colour = PALETTE[int(rng.integers(len(PALETTE)))]
    if kind == "finish":
        plan.finish = FINISHES[int(rng.integers(len(FINISHES)))]
        plan.colour = None
    elif kind == "pattern":
        plan.pattern = PATTERNS[int(rng.integers(len(PATTERNS)))]
        plan.extra["scale"] = float(rng.uniform(4.0, 12.0))
    elif kind == "material":
        plan.material = MATERIALS[int(rng.integers(len(MATERIALS)))]
        plan.extra["scale"] = float(rng.uniform(3.0, 8.0))
    return plan


def _part_name(material: str) -> str:
    """A material's name as a part of the object in words: ``"Jacket_Leather.001"`` -> ``"jacket leather"``."""
    words = "".join(ch if ch.isalpha() else " " for ch in material.split(".")[0]).lower().split()
    return " ".join(words) or "part"


#: Share of the edited region's pixels (all views) that must change for a group to be kept.
MIN_VISIBLE_SHARE = 0.05


def visible_share(before: list[np.ndarray], after: list[np.ndarray], masks: list[np.ndarray], tolerance: int = 2) -> float:
    """Share of the ``masks``' pixels (N bool (H, W)) where the ``after`` view differs from the ``before`` view
    (N uint8 (H, W, 3)) by more than ``tolerance`` levels in some channel; 0 when the masks are empty."""
    changed = sum(int(((np.abs(a[..., :3].astype(np.int16) - b[..., :3]).max(axis=2) > tolerance) & m).sum())
                  for b, a, m in zip(before, after, masks))
    total = sum(int(m.sum()) for m in masks)
    return changed / total if total else 0.0
