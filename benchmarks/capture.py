"""Capture benchmark: cost of each stage of a capture, per view, against a bare colour render of the same views.

Captures the Suzanne sample with one subdivision level (about 24k triangles) from a 12-view rig at
512 px (override with --views/--view-size/--samples/--asset) and prints, per stage, seconds per view and
the share of the whole capture; then renders the same cameras bare (the object's own materials, a plain
world and one sun, same size and samples, the scene synced once, each view written as a PNG) and prints
the ratio capture / bare (target: at most 1.6). Run with ``make bench`` or ``python benchmarks/capture.py``.
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
from mathutils import Matrix  # noqa: E402

from blender_addon.blender.capture.render import capture_steps  # noqa: E402
from blender_addon.core.capture.settings import CaptureSettings  # noqa: E402
from blender_addon.core.capture.rigs import RigSpec  # noqa: E402


def bare_renders(vs, samples: int, out: Path) -> float:
    """Seconds per view of a bare Cycles colour render of the ViewSet's cameras (scene synced once)."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device, scene.cycles.samples, scene.cycles.use_denoising = "CPU", samples, False
    scene.cycles.use_adaptive_sampling = False
    scene.render.use_persistent_data = True
    scene.render.film_transparent = True
    scene.render.image_settings.file_format = "PNG"
    world = bpy.data.worlds.new("bare")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.6, 0.6, 0.6, 1.0)
    scene.world = world
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    scene.collection.objects.link(sun)
    cam = bpy.data.objects.new("bare camera", bpy.data.cameras.new("bare camera"))
    scene.collection.objects.link(cam)
    scene.camera = cam
    t0 = time.perf_counter()
    for i, v in enumerate(vs.views):
        k = v.camera.intrinsics
        scene.render.resolution_x, scene.render.resolution_y = k.width, k.height
        cam.data.sensor_fit, cam.data.sensor_width = "AUTO", 36.0
        cam.data.lens = k.fx * 36.0 / max(k.width, k.height)
        cam.matrix_world = Matrix(v.camera.camera_to_world_opengl.tolist())
        scene.render.filepath = str(out / f"bare_{i:03d}.png")
        bpy.ops.render.render(write_still=True)
    return (time.perf_counter() - t0) / len(vs.views)


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
        try:
            while True:
                for k, v in next(steps).stages.items():
                    stages[k] += v
        except StopIteration as stop:
            vs = stop.value
        total = time.perf_counter() - t0
        bare = bare_renders(vs, args.samples, Path(tmp))
    n = len(vs.views)
    stages["setup, mesh, coverage, manifest"] = total - sum(stages.values())

    print(f"\ncapture benchmark: {tris} triangles, {n} views at {args.view_size} px, {args.samples} colour samples")
    print(f"{'stage':<34}{'s per view':>12}{'share':>9}")
    for k, v in stages.items():
        print(f"{k:<34}{v / n:>12.3f}{v / total:>9.1%}")
    print(f"{'total':<34}{total / n:>12.3f}{1:>9.0%}")
    print(f"{'bare colour render (same views)':<34}{bare:>12.3f}")
    print(f"coverage {vs.coverage:.3f}; whole capture {total:.1f} s; capture / bare = {total / n / bare:.2f} "
          "(target <= 1.6)")


if __name__ == "__main__":
    main()
