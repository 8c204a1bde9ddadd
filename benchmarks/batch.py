"""Batch benchmark: assets per hour of ``groupedit batch`` with 1 and 2 workers, and a model for many GPU machines.

Builds ``--assets`` small assets from the test corpus (saved as .blend files), then runs the same batch twice on a
local classical-editor server, with ``--workers 1`` and ``--workers 2``, each into a fresh folder, and prints per run:
wall time, assets per hour, the ratio to 1 worker (measured in the same run), the share of the time the edit server
had no job of the batch (idle), and the mean seconds per asset of each stage.

Then the model for N GPU machines (docs/batch.md): an asset needs ``c`` core-seconds of CPU (capture + bake, measured
here with 1 worker using every core) and ``e`` seconds of one GPU (the edit: a parameter until measured on a GPU
machine). With ``k`` cores and ``g`` GPUs per machine, ``N`` machines restyle ``N * min(k / c, g / e) * 3600`` assets
per hour; the slower side is busy all the time, the other ``min / its rate`` of it. Run with ``python benchmarks/batch.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bpy  # noqa: E402

from tests.corpus import CORPUS, build  # noqa: E402


def _assets(folder: Path, count: int) -> None:
    names = list(CORPUS)
    for i in range(count):
        build(names[i % len(names)])
        bpy.ops.wm.save_as_mainfile(filepath=str(folder / f"asset_{i:02d}.blend"), copy=True)


def _batch(assets: Path, out: Path, workers: int, args: argparse.Namespace) -> tuple[float, dict]:
    exe = Path(sys.executable).with_name("groupedit")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "blender_addon.cli"]
    t0 = time.perf_counter()
    r = subprocess.run([*command, "batch", str(assets), "--instruction", "make it weathered bronze", "--views",
                        str(args.views), "--view-size", str(args.view_size), "--samples", str(args.samples),
                        "--texture-size", "512", "--workers", str(workers), "--out", str(out)],
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"the batch failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return seconds, json.loads((out / "report.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--assets", type=int, default=8)
    p.add_argument("--views", type=int, default=6)
    p.add_argument("--view-size", type=int, default=256)
    p.add_argument("--samples", type=int, default=16)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        assets = Path(tmp) / "assets"
        assets.mkdir()
        _assets(assets, args.assets)
        runs = {w: _batch(assets, Path(tmp) / f"out_{w}", w, args) for w in (1, 2)}
    print(f"\nbatch benchmark: {args.assets} assets, {args.views} views at {args.view_size} px, {args.samples} samples, "
          "512 texture, classical editor on a local server, 2-core CPU")
    print(f"{'workers':>8}{'wall s':>9}{'assets/h':>10}{'ratio':>7}{'server idle':>13}"
          f"{'capture s':>11}{'edit s':>8}{'bake s':>8}")
    base = None
    stage_means = {}
    for w, (seconds, report) in runs.items():
        per_hour = args.assets / seconds * 3600
        base = base or per_hour
        done = [a for a in report["assets"] if a["status"] == "done"]
        means = {s: sum(a["times"][s] for a in done) / max(len(done), 1) for s in ("capture", "edit", "bake")}
        stage_means[w] = means
        print(f"{w:>8}{seconds:>9.1f}{per_hour:>10.0f}{per_hour / base:>7.2f}"
              f"{100 * report['totals']['edit_idle_share']:>12.0f}%{means['capture']:>11.2f}{means['edit']:>8.2f}"
              f"{means['bake']:>8.2f}")
    cores = os.cpu_count() or 1
    c = (stage_means[1]["capture"] + stage_means[1]["bake"]) * cores  # Cycles and numpy use every core of a worker
    print(f"\nmodel for N GPU machines: c = {c:.1f} core-seconds per asset (capture + bake with 1 worker on "
          f"{cores} cores, measured above); e = GPU seconds per edit (a parameter until measured on a GPU machine)")
    print(f"{'machines':>9}{'cores':>7}{'GPUs':>6}{'e s':>6}{'assets/h':>10}{'GPU busy':>10}{'CPU busy':>10}")
    for machines, k, gpus in ((1, cores, 1), (1, 16, 1), (8, 16, 1), (16, 32, 4)):
        for e in (30.0, 90.0):
            cpu_rate, gpu_rate = k / c, gpus / e
            rate = min(cpu_rate, gpu_rate)
            print(f"{machines:>9}{k:>7}{gpus:>6}{e:>6.0f}{machines * rate * 3600:>10.0f}"
                  f"{100 * rate / gpu_rate:>9.0f}%{100 * rate / cpu_rate:>9.0f}%")

if __name__ == "__main__":
    main()
