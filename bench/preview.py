"""Live-preview overhead: the same toy drag through `dragfu serve`, with and without previews.

Run from the checkout root: `python -m bench.preview [SIZE] [STEPS]` (default 384 px, 40 steps);
prints one line per drag and a JSON document (docs/results/preview_overhead.json).
"""

import json
import os
import platform
import sys
import time

import numpy as np
import torch
from PIL import Image

from dragfu.models import load_generator
from dragfu.models.seeds import to_uint8, ws_from_seed
from dragfu.toy.detector import detect
from dragfu_core.engine_client import EngineClient, engine_environment, rgb_part

G = load_generator("toy")
with torch.no_grad():
    small = to_uint8(G.synthesis(ws_from_seed(G, 2)))
corner = detect(small).points["mouth_right"]
S = int(sys.argv[1]) if len(sys.argv) > 1 else 384
photo = np.asarray(Image.fromarray(small).resize((S, S), Image.BICUBIC))
scale = S / 128
handle = (corner[0] * scale, corner[1] * scale)
target = (handle[0] + 6 * scale, handle[1] + 2 * scale)
env = engine_environment(extra={"PYTHONPATH": os.environ["PYTHONPATH"], "DRAGFU_DEVICE": "cpu"})
client = EngineClient(
    [sys.executable, "-m", "dragfu.cli.main", "serve", "--device", "cpu"], env=env
)
client.start()
p = client.request(
    "project",
    {"output": "array", "cache": False, "settings": {"w_steps": 20, "tune_steps": 0}},
    [rgb_part("image", photo.tobytes(), S, S)],
)
pid = p.header["projection_id"]
STEPS = int(sys.argv[2]) if len(sys.argv) > 2 else 40
rows = []
for rep in range(2):
    for every in [0, 10, 4] if rep == 0 else [4, 10, 0]:
        previews = [0]

        def on(ev, previews=previews):
            if "preview" in ev.parts:
                previews[0] += 1

        t = time.perf_counter()
        r = client.drag(
            [handle],
            [target],
            projection_id=pid,
            max_steps=STEPS,
            preview_every=every,
            output="array",
            progress=on,
            paste="warp",
            options={"stop_distance": 0.0},
            preview_interval=0.5 if every else None,
        )
        wall = time.perf_counter() - t
        hdr = r.header
        rows.append(
            {
                "preview_every": every,
                "steps": hdr["steps"],
                "previews": previews[0],
                "wall_seconds": round(wall, 3),
                "engine_seconds_per_step": hdr["timings"]["seconds_per_step"],
                "wall_per_step": round(wall / max(1, hdr["steps"]), 4),
            }
        )
        print(rows[-1], flush=True)
client.close()
out = {
    "image": [S, S],
    "max_steps": STEPS,
    "machine": platform.processor() or platform.machine(),
    "cpus": os.cpu_count(),
    "load": os.getloadavg(),
    "torch": torch.__version__,
    "rows": rows,
    "date": time.strftime("%Y-%m-%d"),
}
print(json.dumps(out))
