"""Capture benchmark: cost of each stage of a capture, per view, on a ~10k-triangle asset.

Captures the Suzanne sample with one subdivision level (about 24k triangles) from a 12-view rig at
512 px (override with --views/--view-size/--samples) and prints, per stage, seconds per view and
the share of the whole capture. Run with ``make bench`` or ``python benchmarks/capture.py``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402

from blender_addon.blender.capture.render import capture_steps  # noqa: E402
from blender_addon.core.capture.settings import CaptureSettings  # noqa: E402
from blender_addon.core.capture.rigs import RigSpec  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", type=int, default=12)
    p.add_argument("--view-size", type=int, default=512)
    p.add_argument("--samples", type=int, default=16)
    p.add_argument("--asset", type=Path, default=ROOT / "assets" / "Suzanne.glb")
    args = p.parse_args()

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(args.asset))
    obj = next(o for o in bpy.context.scene.objects if o.type == "MESH")
    obj.modifiers.new("Subdivision", "SUBSURF").levels = 1
    depsgraph = bpy.context.evaluated_depsgraph_get()
    tris = len(obj.evaluated_get(depsgraph).data.loop_triangles)

    stages: dict[str, float] = defaultdict(float)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        steps = capture_steps(
            obj, RigSpec(kind="orbit-poles", count=args.views),
            CaptureSettings(view_size=args.view_size, samples=args.samples), Path(tmp) / "vs",
        )
        n = 0
        try:
            while True:
                step = next(steps)
                n += 1
                for k, v in step.stages.items():
                    stages[k] += v
        except StopIteration as stop:
            vs = stop.value
        total = time.perf_counter() - t0
    stages["setup, mesh, coverage, manifest"] = total - sum(stages.values())

    print(f"\ncapture benchmark: {tris} triangles, {n} views at {args.view_size} px, {args.samples} colour samples")
    print(f"{'stage':<34}{'s per view':>12}{'share':>9}")
    for k, v in stages.items():
        print(f"{k:<34}{v / n:>12.3f}{v / total:>9.1%}")
    print(f"{'total':<34}{total / n:>12.3f}{1:>9.0%}")
    print(f"coverage {vs.coverage:.3f}; whole capture {total:.1f} s")


if __name__ == "__main__":
    main()
