"""Benchmark: a drag on a big photo layer in the real GIMP 3 (the Debian 13 chroot of tests/gimp3).

A 6000x4000 (or --size) layer with film grain, the toy face 8x the model's scale, a selection
around it, one path from the mouth's right corner 6 model px outward; the plug-in with its
defaults and the real engine on the CPU. The plug-in logs its own stages (read, engine,
composite, insert) and its peak memory; everything but `engine` is the plug-in's overhead.

    python -m bench.gimp_photo [--size 6000x4000] [--scale 8]
"""

from __future__ import annotations

import argparse
import json
import re
import time

import numpy as np

from dragfu.toy import params_from_unit
from dragfu.toy.photo import PhotoSpec, build_photo
from tests.gimp3 import harness
from tests.gimp3.test_gimp3_e2e import run_scene


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="6000x4000")
    parser.add_argument("--scale", type=float, default=8.0)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    spec = PhotoSpec(
        params_from_unit(np.full(30, 0.5)), (width, height), args.scale, 20.0,
        (width * 0.52, height * 0.5), grain=6.0,
    )  # fmt: skip
    photo = build_photo(spec)
    corner = photo.to_world([photo.landmarks["mouth_right"]])[0]
    handle = tuple(float(v) for v in photo.landmarks["mouth_right"])
    target = tuple(float(v) for v in photo.to_photo([(corner[0] + 6.0, corner[1])])[0])
    x0, y0, x1, y1 = (int(v) for v in photo.face_box)
    params = {
        "width": width, "height": height,
        "layer": {"mode": "RGB", "width": width, "height": height, "offsets": [0, 0]},
        "strokes": [[handle, target]],
        "selection": [x0 - 40, y0 - 40, x1 - x0 + 80, y1 - y0 + 80],
        "args": {"steps": 200},
    }  # fmt: skip
    mode = harness.ensure_gimp()
    started = time.perf_counter()
    report, _, _ = run_scene(mode, params, photo.image, {}, timeout=1500)
    wall = time.perf_counter() - started
    line = re.search(r"Drag-Fu timings: (.*?); peak memory (\S+) MB", report["console"])
    stages = dict(re.findall(r"(\w+) ([0-9.]+) s", line.group(1))) if line else {}
    print(json.dumps({
        "layer": [width, height], "face_scale": args.scale, "status": report["status"],
        "plugin_seconds": {k: float(v) for k, v in stages.items()},
        "plugin_overhead_seconds": round(sum(float(v) for k, v in stages.items() if k != "engine"), 3),
        "plugin_peak_memory_mb": line.group(2) if line else None,
        "gimp_wall_seconds": round(wall, 1),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
