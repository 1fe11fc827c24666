"""Live-preview overhead: the demo's photo drag through `dragfu serve`, as the plug-in runs it,
with and without the live preview.

Run from the checkout root: `python -m bench.preview [--steps 40 120] [--repeats 3]`. The demo's
2400x1800 grainy photo; the region the plug-in would send (the 1536 px context square around the
mouth corners), `alignment: auto`; each drag once without previews and once with them, in turn,
`repeats` times, with the plug-in's own `dragfu_core.live.LiveDrag` on a host that keeps the
preview layer in memory (so the plug-in's side, the box pasted into the shown crop, markers and
the changed rectangle, is counted too; GIMP's own drawing is not). `stop_distance` 0: every
step runs. Prints one line per drag and writes a JSON document (docs/results/preview_overhead.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

from dragfu.cli.demo import WIDEN_MOUTH, demo_photo
from dragfu.photo.pipeline import context_box
from dragfu_core import live, progress
from dragfu_core.engine_client import EngineClient, engine_environment, rgb_part
from dragfu_core.geometry import Rect
from dragfu_core.strokes import Drag

PROJECT_SETTINGS = {"w_steps": 60, "tune_steps": 0}  # the drag, not the projection, is measured


class MemoryHost:
    """The plug-in's preview host with the layer as a bytearray."""

    live_preview = True

    def __init__(self) -> None:
        self.layer: bytearray | None = None
        self.updates = 0

    def preview_update(self, area, rect, rgb) -> None:
        if self.layer is None:
            self.layer = bytearray(area.width * area.height * 3)
        row = rect.width * 3
        for j in range(rect.height):
            start = ((rect.y - area.y + j) * area.width + rect.x - area.x) * 3
            self.layer[start : start + row] = rgb[j * row : (j + 1) * row]
        self.updates += 1

    def preview_remove(self) -> None:
        self.layer = None


def demo_drags():
    """The demo's photo and its two mouth-corner drags (photo coordinates)."""
    photo = demo_photo()
    handles = [tuple(photo.to_world([photo.landmarks[n]])[0]) for n in WIDEN_MOUTH]
    targets = [
        (x + dx, y + dy) for (x, y), (dx, dy) in zip(handles, WIDEN_MOUTH.values(), strict=True)
    ]
    return (
        photo.image,
        [tuple(p) for p in photo.to_photo(handles)],
        [tuple(p) for p in photo.to_photo(targets)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[40, 120])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="")
    args = parser.parse_args()

    image, handles, targets = demo_drags()
    x0, y0, x1, y1 = context_box((image.shape[1], image.shape[0]), handles + targets, (128, 128))
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    width, height = x1 - x0, y1 - y0
    local = [
        Drag((hx - x0, hy - y0), (tx - x0, ty - y0))
        for (hx, hy), (tx, ty) in zip(handles, targets, strict=True)
    ]
    env = engine_environment(
        extra={"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "DRAGFU_DEVICE": "cpu"}
    )
    client = EngineClient(
        [sys.executable, "-m", "dragfu.cli.main", "serve", "--device", "cpu"], env=env
    )
    client.start()
    projected = client.request(
        "project",
        {"output": "array", "cache": False, "settings": PROJECT_SETTINGS, "alignment": "auto",
         "align_points": [list(p) for d in local for p in (d.handle, d.target)]},
        [rgb_part("image", crop.tobytes(), width, height)],
    )  # fmt: skip
    projection_id = projected.header["projection_id"]

    rows = []
    for steps in args.steps:
        for repeat in range(args.repeats):
            for with_preview in (False, True) if repeat % 2 == 0 else (True, False):
                host = MemoryHost()
                host.live_preview = with_preview
                report = progress.Progress(lambda fraction, text: None)
                shown = live.LiveDrag(
                    host, report, Rect(x0, y0, width, height), crop.tobytes(), local
                )
                every = shown.preview_every(steps)
                previews = [0]

                def on_event(event, shown=shown, previews=previews):
                    part = event.parts.get("preview")
                    preview = None
                    if part is not None:
                        previews[0] += 1
                        bx, by, bw, bh = event.header["box"]
                        preview = (bytearray(part.data), bw, bh, (bx, by, bw, bh))
                    shown.on_progress(event.header, preview)

                started = time.perf_counter()
                result = client.drag(
                    [d.handle for d in local], [d.target for d in local],
                    projection_id=projection_id, max_steps=steps, preview_every=every,
                    output="array", progress=on_event, paste="warp",
                    options={"stop_distance": 0.0}, **shown.drag_fields(),
                )  # fmt: skip
                wall = time.perf_counter() - started
                shown.finish()
                done = result.header["steps"]
                rows.append({
                    "max_steps": steps, "preview": with_preview, "preview_every": every,
                    "previews_sent": previews[0], "previews_shown": host.updates,
                    "steps": done, "wall_seconds": round(wall, 3),
                    "wall_per_step": round(wall / max(1, done), 4),
                })  # fmt: skip
                print(rows[-1], flush=True)
    client.close()

    summary = []
    for steps in args.steps:
        plain = [r["wall_per_step"] for r in rows if r["max_steps"] == steps and not r["preview"]]
        shown = [r["wall_per_step"] for r in rows if r["max_steps"] == steps and r["preview"]]
        off, on = statistics.median(plain), statistics.median(shown)
        summary.append({
            "max_steps": steps, "median_per_step_without": off, "median_per_step_with": on,
            "overhead": round(on / off - 1, 4),
            "previews_shown": statistics.median(
                r["previews_shown"] for r in rows if r["max_steps"] == steps and r["preview"]
            ),
        })  # fmt: skip
        print(summary[-1], flush=True)
    out = {
        "about": "python -m bench.preview: the demo photo's 1536 px region, alignment auto, "
        "paste warp, the plug-in's LiveDrag (preview_every max(4, steps/20), interval 0.5 s)",
        "region": [x0, y0, x1, y1],
        "machine": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "load": os.getloadavg(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": rows,
        "summary": summary,
    }
    text = json.dumps(out, indent=1)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
