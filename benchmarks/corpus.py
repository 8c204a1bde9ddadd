"""Corpus benchmark: the restyle, end to end, on every asset of the test corpus (and the two samples) at full size.

For each asset: a capture (10-view orbit-poles rig, 512 px, 32 samples by default), then ``run_restyle_check``:
the identity round trip (its own base colour baked from the views and rendered again), the known recolour given
unlit and given lit (the oracle: lighting removal, bake and apply), the drop between the two, and the closed loop
(the restyled asset re-rendered against the lit edited views). All PSNRs are in dB on the object's pixels of every
view (docs/bake.md, Measured). Run with ``python benchmarks/corpus.py`` (add ``--only NAME`` to pick assets).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402

from blender_addon.blender.check import run_restyle_check  # noqa: E402
from blender_addon.core.capture.rigs import RigSpec  # noqa: E402
from tests.corpus import CORPUS, build  # noqa: E402

SAMPLES = {"Avocado (sample)": "Avocado.glb", "Suzanne (sample)": "Suzanne.glb"}


def _asset(name: str, detail: int):
    if name in SAMPLES:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        bpy.ops.import_scene.gltf(filepath=str(ROOT / "assets" / SAMPLES[name]))
        return next(o for o in bpy.context.scene.objects if o.type == "MESH")
    return build(name, detail)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", type=int, default=10)
    p.add_argument("--view-size", type=int, default=512)
    p.add_argument("--samples", type=int, default=32)
    p.add_argument("--texture-size", type=int, default=1024)
    p.add_argument("--detail", type=int, default=4, help="texture size multiplier of the built assets")
    p.add_argument("--only", action="append", help="asset name (repeatable); default: all")
    args = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    names = args.only or [*CORPUS, *SAMPLES]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            obj = _asset(name, args.detail)
            t0 = time.perf_counter()
            r = run_restyle_check(obj, RigSpec(kind="orbit-poles", count=args.views), args.view_size,
                                  args.texture_size, Path(tmp) / name.replace(" ", "_"), samples=args.samples)
            rows.append((name, r, time.perf_counter() - t0))
            print(f"done: {name}", file=sys.stderr, flush=True)
    print(f"\ncorpus benchmark: {args.views} views at {args.view_size} px, {args.samples} samples, "
          f"{args.texture_size} texture; PSNR in dB on object pixels")
    head = ("asset", "identity", "unlit", "oracle", "drop", "loop", "changed", "s")
    print(f"{head[0]:<22}" + "".join(f"{h:>10}" for h in head[1:]))
    for name, r, seconds in rows:
        values = (r["identity_psnr_db"], r["unlit_psnr_db"], r["oracle_psnr_db"], r["oracle_drop_db"],
                  r["loop_psnr_db"])
        print(f"{name:<22}" + "".join(f"{v:>10.2f}" for v in values) + f"{r['changed_share']:>10.0%}{seconds:>10.1f}")


if __name__ == "__main__":
    main()
