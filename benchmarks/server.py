"""Server benchmark: upload throughput and submit-to-start latency of a 16-view 1024 px job.

Starts a real ``groupedit-server`` (identity editor) on a free loopback port, uploads 16 colour
images and masks, and compares with writing and copying the same bytes as local files in the same
run. Prints seconds, MB/s and ratios (server / local copy). ``python benchmarks/server.py [--views 16] [--size 1024]``
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.backend.server import Server, png  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", type=int, default=16)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0 : args.size, 0 : args.size]
    files, views = {}, []
    for i in range(args.views):  # smooth image plus noise: compresses like a render
        img = ((np.stack([xx, yy, xx + yy], -1) * (i + 1)) % 256 + rng.integers(0, 8, (args.size, args.size, 3))).astype(np.uint8)
        mask = ((xx - args.size / 2) ** 2 + (yy - args.size / 2) ** 2 < (args.size / 3) ** 2).astype(np.uint8) * 255
        files[f"image_{i}"] = (f"{i}.png", png(img), "image/png")
        files[f"mask_{i}"] = (f"{i}m.png", png(mask), "image/png")
        views.append({"name": f"view_{i:03d}", "image": f"image_{i}", "mask": f"mask_{i}"})
    total = sum(len(f[1]) for f in files.values())
    manifest = json.dumps({"instruction": "identity", "views": views})

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "src"
        src.mkdir()
        for name, (_, data, _) in files.items():
            (src / name).write_bytes(data)
        copies = []
        for r in range(args.repeat):
            t = time.perf_counter()
            shutil.copytree(src, tmp / f"copy{r}")
            copies.append(time.perf_counter() - t)
        copy_s = min(copies)

        server = Server(tmp / "data", "identity", "--max-queue", "64").start()
        try:
            uploads, latencies, send_to_start = [], [], []
            for _ in range(args.repeat):
                t, sent_wall = time.perf_counter(), time.time()
                r = requests.post(server.url + "/v1/jobs", data={"manifest": manifest}, files=files, timeout=600)
                t_up, accepted_wall = time.perf_counter(), time.time()
                r.raise_for_status()
                job_id = r.json()["id"]
                job = server.wait_state(job_id, ("running", "succeeded", "failed"), timeout=600)
                uploads.append(t_up - t)
                # the server may start the job before its 202 reaches us: then the latency is 0
                latencies.append(max(0.0, job["started"] - accepted_wall))
                send_to_start.append(job["started"] - sent_wall)
                server.wait_state(job_id, ("succeeded", "failed"), timeout=600)
        finally:
            server.kill()
    up = min(uploads)
    lat = min(latencies)
    mb = total / 1e6
    print(f"\nserver benchmark: {args.views} views at {args.size} px, {mb:.1f} MB of PNG (images and masks)")
    print(f"{'measure':<36}{'seconds':>10}{'MB/s':>10}{'ratio':>9}")
    print(f"{'local file copy (baseline)':<36}{copy_s:>10.3f}{mb / copy_s:>10.0f}{1.0:>9.2f}")
    print(f"{'upload: POST /v1/jobs until 202':<36}{up:>10.3f}{mb / up:>10.0f}{up / copy_s:>9.2f}")
    print(f"{'submit (202) -> job started':<36}{lat:>10.3f}{'':>10}{lat / copy_s:>9.2f}")
    sts = min(send_to_start)
    print(f"{'POST sent -> job started':<36}{sts:>10.3f}{'':>10}{sts / copy_s:>9.2f}")


if __name__ == "__main__":
    main()
