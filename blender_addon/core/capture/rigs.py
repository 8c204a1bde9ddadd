"""Camera rigs: where the views of a capture look from.

A :class:`RigSpec` is what the user chooses (a preset and its numbers); :func:`build_rig` turns it, plus
the object's world-space points, into framed :class:`~.cameras.Camera` objects. Angles are in degrees:
azimuth counter-clockwise around world +Z starting at -Y (Blender's front view), elevation above
the horizontal plane through the object's centre.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..format.cameras import Camera, Intrinsics, framing_distance, look_at
from ..errors import InvalidInputError
from ..options import check_options, option

#: Rig presets a user can name (``--rig``) and what they mean.
PRESETS: dict[str, str] = {
    "orbit": "one ring around the object at the given elevation(s); with --views N: N views",
    "orbit-poles": "a ring of N-2 views plus one straight from the top and one from the bottom",
    "two-rings": "N views split over two rings, above (30 deg) and below (-20 deg) the object",
    "sphere": "N views spread evenly over a sphere (Fibonacci lattice)",
    "scene": "the scene's own cameras (all of them, or those named)",
}

MAX_VIEWS = 64


@dataclass
class RigSpec:
    """A camera rig as a user describes it.

    ``kind`` is one of :data:`PRESETS`. For rings, ``count`` views per rig are spread over ``elevations``
    (views distributed over the rings as evenly as possible). ``top``/``bottom`` add polar views.
    ``fov_deg`` is the field of view of the larger image side; ``margin`` the share of the frame kept
    free around the object on each side. ``disabled`` lists view indices to skip.
    """

    kind: str = option("orbit-poles", "camera rig preset", choices=tuple(PRESETS), flag="rig", label="rig")
    count: int = option(10, "number of views of a generated rig", low=1, high=MAX_VIEWS, flag="views",
                        label="view count")
    elevations: list[float] = field(default_factory=lambda: [20.0])
    start_azimuth: float = option(0.0, "azimuth of the first view (degrees)", low=-360.0, high=360.0)
    top: bool = option(False, "add a view from straight above")
    bottom: bool = option(False, "add a view from straight below")
    fov_deg: float = option(40.0, "field of view of the larger image side (degrees)", low=5.0, high=120.0,
                            flag="fov", label="field of view")
    margin: float = option(0.05, "share of the frame kept free around the object on each side", low=0.0,
                           high=0.4)
    scene_cameras: list[str] = field(default_factory=list)
    disabled: list[int] = field(default_factory=list)

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` with a fix-it message when the spec cannot make a rig."""
        if self.kind not in PRESETS:
            raise InvalidInputError(f"unknown rig {self.kind!r}; choose one of: {', '.join(PRESETS)}")
        check_options(self)
        if self.kind != "scene":
            if self.kind == "orbit-poles" and self.count < 3:
                raise InvalidInputError("the orbit-poles rig needs at least 3 views (a ring plus top and bottom)")
            if self.kind == "two-rings" and self.count < 2:
                raise InvalidInputError("the two-rings rig needs at least 2 views")
            if not self.elevations or any(not -90.0 <= e <= 90.0 for e in self.elevations):
                raise InvalidInputError(f"elevations must be between -90 and 90 degrees, got {self.elevations}")

    def directions(self) -> list[tuple[str, float, float]]:
        """(label, azimuth, elevation) of every view of a generated rig, before ``disabled`` is applied."""
        self.validate()
        if self.kind == "scene":
            raise InvalidInputError("a 'scene' rig takes its views from the scene's cameras, not from directions")
        out: list[tuple[str, float, float]] = []
        if self.kind == "sphere":
            golden = math.pi * (3.0 - math.sqrt(5.0))
            for i in range(self.count):
                z = 1.0 - 2.0 * (i + 0.5) / self.count
                out.append(("sphere", math.degrees(golden * i) + self.start_azimuth, math.degrees(math.asin(z))))
        else:
            if self.kind == "orbit-poles":
                rings, n_ring = list(self.elevations), self.count - 2
            elif self.kind == "two-rings":
                rings, n_ring = [30.0, -20.0], self.count
            else:
                rings, n_ring = list(self.elevations), self.count
            per_ring = [n_ring // len(rings) + (1 if r < n_ring % len(rings) else 0) for r in range(len(rings))]
            for r, (elev, n) in enumerate(zip(rings, per_ring)):
                offset = 180.0 / n * (r % 2) if n else 0.0  # stagger alternate rings
                for i in range(n):
                    out.append((f"ring{r}", self.start_azimuth + offset + 360.0 * i / n, elev))
            if self.kind == "orbit-poles":
                out += [("top", self.start_azimuth, 90.0), ("bottom", self.start_azimuth, -90.0)]
        if self.kind != "orbit-poles":
            if self.top:
                out.append(("top", self.start_azimuth, 90.0))
            if self.bottom:
                out.append(("bottom", self.start_azimuth, -90.0))
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RigSpec":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class RigView:
    """One view of a built rig: a name, the framed camera, and where it looks from (degrees)."""

    name: str
    camera: Camera
    azimuth_deg: float | None
    elevation_deg: float | None
    label: str


def direction_vector(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    """Unit vector from the object's centre towards the camera (world frame, see module docstring)."""
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    return np.array([math.sin(az) * math.cos(el), -math.cos(az) * math.cos(el), math.sin(el)])


def object_centre(points: np.ndarray) -> np.ndarray:
    """Centre of the axis-aligned bounds of world points (N, 3)."""
    points = np.asarray(points, dtype=np.float64)
    return 0.5 * (points.min(axis=0) + points.max(axis=0))


def build_rig(spec: RigSpec, points: np.ndarray, width: int, height: int) -> list[RigView]:
    """Framed cameras for a generated rig (every kind but 'scene').

    ``points`` (N, 3) are the object's world-space vertices (a subsample is fine). Each camera looks
    at the centre of their bounds and is backed off just far enough that every point lies inside the
    frame with ``spec.margin`` to spare. Disabled views are left out; names keep the full-rig index
    (``view_003``) so that a view keeps its name when others are disabled.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise InvalidInputError("the object has no vertices to frame")
    intr = Intrinsics.from_fov(spec.fov_deg, width, height)
    centre = object_centre(points)
    views = []
    for index, (label, az, el) in enumerate(spec.directions()):
        if index in spec.disabled:
            continue
        pose = look_at(centre + direction_vector(az, el), centre)
        pose[:3, 3] = centre
        d = framing_distance(points, pose, intr, spec.margin)
        pose[:3, 3] = centre - pose[:3, 2] * d
        views.append(RigView(f"view_{index:03d}", Camera(intr, pose), az, el, label))
    if not views:
        raise InvalidInputError("every view of the rig is disabled: enable at least one")
    return views
