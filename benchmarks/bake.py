"""Bake benchmark: ours against a bare Cycles emission bake and a plain memory copy, in one run.

On one ViewSet (captured here from ``--asset``: 10 views at 1024 px by default) and one texture size
(1024 by default) it times, each the best of three runs:

* **ours**: UV rasterisation + per-texel gather with exact visibility + fill (``core.bake``);
* **Cycles EMIT bake**: Cycles bakes the emission of a material that averages one image lookup per
  view, projected through that view's camera, with no visibility at all: the floor under any
  Cycles-bake route (which adds ray casts on top);
* **numpy copy**: copying the same input arrays and output texture bytes (the memory floor).

It prints seconds, ratios against the Cycles bake, and the PSNR of ours against the asset's texture.
``python benchmarks/bake.py [--asset assets/Avocado.glb] [--views 10] [--view-size 1024] [--texture-size 1024]``
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402
import numpy as np  # noqa: E402
from mathutils import Matrix  # noqa: E402

from blender_addon.blender.capture.render import capture  # noqa: E402
from blender_addon.core.capture.settings import CaptureSettings  # noqa: E402
from blender_addon.blender.bake.textures import base_colour_image, image_pixels  # noqa: E402
from blender_addon.core.bake.gather import bake, sample_texture, views_from_viewset  # noqa: E402
from blender_addon.core.format.images import to_uint8  # noqa: E402
from blender_addon.core.metrics import psnr  # noqa: E402
from blender_addon.core.capture.rigs import RigSpec  # noqa: E402
from blender_addon.core.bake.uv_raster import rasterise_uv  # noqa: E402


def cycles_emit_bake(obj, vs, size: int, repeats: int = 3) -> float:
    """Best of ``repeats`` seconds for Cycles to bake EMIT of a material averaging one projected image
    lookup per view (the first bake also syncs the scene and loads the images)."""
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 1
    target = bpy.data.images.new("bench_target", size, size)
    mat = bpy.data.materials.new("bench_projection")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    for n in list(nodes):
        nodes.remove(n)
    out = nodes.new("ShaderNodeOutputMaterial")
    emit = nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 1.0 / len(vs.views)
    links.new(emit.outputs[0], out.inputs["Surface"])
    total = None
    for v in vs.views:
        k = v.camera.intrinsics
        cam = bpy.data.objects.new(f"bench_{v.name}", None)  # an empty at the camera pose (OpenGL axes)
        scene.collection.objects.link(cam)
        cam.matrix_world = Matrix(v.camera.camera_to_world_opengl.tolist())
        tc = nodes.new("ShaderNodeTexCoord")
        tc.object = cam
        sep = nodes.new("ShaderNodeSeparateXYZ")
        links.new(tc.outputs["Object"], sep.inputs[0])
        def math(op, a, b):
            node = nodes.new("ShaderNodeMath")
            node.operation = op
            for i, x in enumerate((a, b)):
                if isinstance(x, float):
                    node.inputs[i].default_value = x
                else:
                    links.new(x, node.inputs[i])
            return node.outputs[0]
        x_over = math("DIVIDE", sep.outputs["X"], math("MULTIPLY", sep.outputs["Z"], -1.0))
        y_over = math("DIVIDE", sep.outputs["Y"], sep.outputs["Z"])
        u = math("ADD", math("MULTIPLY", x_over, k.fx / k.width), k.cx / k.width)
        v_up = math("SUBTRACT", 1.0, math("ADD", math("MULTIPLY", y_over, k.fy / k.height), k.cy / k.height))
        comb = nodes.new("ShaderNodeCombineXYZ")
        links.new(u, comb.inputs["X"])
        links.new(v_up, comb.inputs["Y"])
        tex = nodes.new("ShaderNodeTexImage")
        tex.image = bpy.data.images.load(str(vs.path(v, "colour")))
        tex.extension = "CLIP"
        links.new(comb.outputs[0], tex.inputs["Vector"])
        if total is None:
            total = tex.outputs["Color"]
        else:
            add = nodes.new("ShaderNodeMix")
            add.data_type, add.blend_type = "RGBA", "ADD"
            add.inputs["Factor"].default_value = 1.0
            links.new(total, add.inputs["A"])
            links.new(tex.outputs["Color"], add.inputs["B"])
            total = add.outputs["Result"]
    links.new(total, emit.inputs["Color"])
    target_node = nodes.new("ShaderNodeTexImage")
    target_node.image = target
    nodes.active = target_node
    obj.data.materials.clear()
    obj.data.materials.append(mat)
    for o in scene.objects:
        o.select_set(o == obj)
    bpy.context.view_layer.objects.active = obj
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        bpy.ops.object.bake(type="EMIT", width=size, height=size, margin=0)
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--asset", type=Path, default=ROOT / "assets" / "Avocado.glb")
    p.add_argument("--views", type=int, default=10)
    p.add_argument("--view-size", type=int, default=1024)
    p.add_argument("--texture-size", type=int, default=1024)
    args = p.parse_args()

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=str(args.asset))
    obj = next(o for o in bpy.context.scene.objects if o.type == "MESH")
    reference_texture = image_pixels(base_colour_image(obj))
    with tempfile.TemporaryDirectory() as tmp:
        vs = capture(obj, RigSpec(kind="orbit-poles", count=args.views), CaptureSettings(view_size=args.view_size, samples=1),
                     Path(tmp) / "vs")
        views = views_from_viewset(vs, "albedo")
        mesh = vs.mesh()
        size = args.texture_size
        ours = []
        for _ in range(3):
            t = time.perf_counter()
            surface = rasterise_uv(mesh, size)
            result = bake(surface, views)
            ours.append(time.perf_counter() - t)
        inputs = [a for v in views for a in (v.image, v.position, v.mask, v.uv, v.normal)]
        copies = []
        for _ in range(3):
            t = time.perf_counter()
            _ = [a.copy() for a in inputs] + [result.texture.copy()]
            copies.append(time.perf_counter() - t)
        cycles_s = cycles_emit_bake(obj, vs, size)
    reference = np.zeros_like(result.texture)
    reference[surface.rows, surface.cols] = to_uint8(sample_texture(reference_texture, surface.uv))
    ours_s, copy_s = min(ours), min(copies)
    print(f"\nbake benchmark: {args.asset.name}, {len(views)} views at {args.view_size} px, texture {size}")
    print(f"{'method':<44}{'seconds':>9}{'vs Cycles':>11}")
    print(f"{'ours (rasterise + gather + visibility + fill)':<44}{ours_s:>9.3f}{ours_s / cycles_s:>11.2f}")
    print(f"{'Cycles EMIT bake, no visibility':<44}{cycles_s:>9.3f}{1.0:>11.2f}")
    print(f"{'numpy copy of inputs and output':<44}{copy_s:>9.3f}{copy_s / cycles_s:>11.2f}")
    print(f"PSNR of ours against the asset's texture on seen texels: {psnr(result.texture, reference, result.seen):.2f} dB")


if __name__ == "__main__":
    main()
