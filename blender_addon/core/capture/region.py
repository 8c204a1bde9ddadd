"""The edit region: which part of an object an edit may change (bpy-free).

Written on the command line as ``--region faces | material:NAME[,NAME] | vgroup:NAME[:THRESH]`` and stored with
the capture's settings; the capture turns it into the per-view ``region`` pass (docs/viewset.md). A face belongs to
a vertex-group region when every one of its vertices has at least ``THRESH`` weight (Blender's own rule: a face is
selected when all its vertices are).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidInputError

#: What a region can be made of: the whole object (no region pass), the faces selected in Edit Mode, material slots
#: (by their materials' names) or a vertex group.
REGION_KINDS = ("object", "faces", "material", "vgroup")
REGION_SYNTAX = "faces | material:NAME[,NAME] | vgroup:NAME[:THRESH]"
DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class RegionSpec:
    """An edit region: ``kind`` (one of :data:`REGION_KINDS`), the material or vertex-group ``names`` it names, and
    the vertex-group weight ``threshold`` (0..1)."""

    kind: str = "object"
    names: tuple[str, ...] = ()
    threshold: float = DEFAULT_THRESHOLD

    @property
    def whole_object(self) -> bool:
        return self.kind == "object"

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming what to fix: an unknown kind, no names, a threshold outside 0..1."""
        if self.kind not in REGION_KINDS:
            raise InvalidInputError(f"unknown region kind {self.kind!r}; choose one of: {', '.join(REGION_KINDS)}")
        if self.kind == "material" and not (self.names and all(n.strip() for n in self.names)):
            raise InvalidInputError("a material region needs the names of its materials (material:NAME[,NAME])")
        if self.kind == "vgroup" and not (len(self.names) == 1 and self.names[0].strip()):
            raise InvalidInputError("a vertex-group region needs the group's name (vgroup:NAME[:THRESH])")
        if not 0.0 <= self.threshold <= 1.0:
            raise InvalidInputError(f"region {self}: the weight threshold must be between 0 and 1")

    @classmethod
    def parse(cls, text: str | None) -> "RegionSpec":
        """The region written as ``text`` (None or empty: the whole object); :class:`InvalidInputError` names what
        to fix."""
        text = (text or "").strip()
        if text in ("", "object"):
            return cls()
        if text == "faces":
            return cls("faces")
        kind, _, rest = text.partition(":")
        if kind == "material" and rest:
            names = tuple(n.strip() for n in rest.split(","))
            if all(names):
                return cls("material", names)
        if kind == "vgroup" and rest:
            name, threshold = rest, DEFAULT_THRESHOLD
            head, _, tail = rest.rpartition(":")
            if head:
                try:
                    name, threshold = head, float(tail)
                except ValueError:
                    pass
            spec = cls("vgroup", (name,), threshold)
            spec.validate()
            return spec
        raise InvalidInputError(f"region {text!r} is not one of: {REGION_SYNTAX} (or leave it out for the whole "
                                "object)")

    def __str__(self) -> str:
        if self.kind == "material":
            return "material:" + ",".join(self.names)
        if self.kind == "vgroup":
            return f"vgroup:{self.names[0]}:{self.threshold:g}"
        return self.kind
