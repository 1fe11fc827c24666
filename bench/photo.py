"""Benchmark: drags on photo-sized toy photos (issue: real photos at their own resolution).

Faces at 1x, 4x and 8x the model's scale, turned 0, 20 and 35 degrees, film grain, on a
2400x1800 canvas; 1- and 5-point drags, the 1-point drag also with a selection around the mouth.
For each run: landmark distance at the model's scale (the toy detector, through the photo's own
world frame) against the same drag on the face's 128 px render; grain kept inside the changed
region away from the drag points (high-frequency energy after / before); pixels outside the
selection unchanged; share of the layer changed; seconds per stage. One 6000x4000 run times the
stages on a big layer.

    python bench/photo.py --out docs/results/photo.json [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from dragfu.cli.demo import measure, world_frame
from dragfu.models import load_generator
from dragfu.photo.pipeline import drag_photo
from dragfu.toy import params_from_unit
from dragfu.toy.photo import HF_SIGMA, PhotoSpec, build_photo

# Five points: both mouth corners outward, the mouth's bottom down, both eyes up and outward.
FIVE = {
    "mouth_left": (-5.0, 0.0), "mouth_right": (5.0, 0.0), "mouth_bottom": (0.0, 3.0),
    "left_eye": (-2.0, -2.0), "right_eye": (2.0, -2.0),
}  # fmt: skip
ONE = {"mouth_right": (6.0, 0.0)}


def grain_ratio(before, after, box, keep_away, radius) -> float | None:
    """High-frequency energy after / before over the changed box, away from the drag points."""
    import cv2

    x0, y0, x1, y1 = box

    def energy(image):
        grey = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY).astype(np.float32)
        return (grey - cv2.GaussianBlur(grey, (0, 0), HF_SIGMA)) ** 2

    ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5
    away = np.ones(xs.shape, bool)
    for px, py in keep_away:
        away &= np.hypot(xs - px, ys - py) > radius
    changed = np.any(after[y0:y1, x0:x1] != before[y0:y1, x0:x1], axis=-1)
    region = away & changed
    if region.sum() < 200:
        return None
    return float(energy(after)[region].mean() / energy(before)[region].mean())


def one_run(G, spec, drags, selection: bool, steps: int, paste: str = "warp") -> dict:
    started = time.perf_counter()
    photo = build_photo(spec)
    build_seconds = time.perf_counter() - started
    names = list(drags)
    world = {n: tuple(photo.to_world([photo.landmarks[n]])[0]) for n in names}
    world_targets = [(world[n][0] + d[0], world[n][1] + d[1]) for n, d in drags.items()]
    handles = [tuple(photo.to_photo([world[n]])[0]) for n in names]
    targets = [tuple(p) for p in photo.to_photo(world_targets)]
    mask = None
    if selection:
        mask = np.zeros(photo.image.shape[:2], bool)
        mx, my = photo.landmarks["mouth"]
        r = 24 * spec.scale
        mask[int(max(my - r, 0)) : int(my + r), int(max(mx - 1.6 * r, 0)) : int(mx + 1.6 * r)] = (
            True
        )
    edit = drag_photo(G, photo.image, handles, targets, mask=mask, max_steps=steps, paste=paste)
    frame = world_frame(photo)
    row = {
        "scale": spec.scale, "angle": spec.angle, "points": len(names), "selection": selection,
        "paste": paste,
        "canvas": list(spec.canvas), "grain": spec.grain,
        "md_model_px": measure(edit.image, frame, names, world_targets),
        "steps": edit.result.steps, "converged": edit.result.converged,
        "found_scale": round(edit.alignment.scale, 3), "found_angle": edit.alignment.angle,
        "changed_share": float(np.any(edit.image != photo.image, axis=-1).mean()),
        "seconds": {"build": round(build_seconds, 3), **edit.seconds},
    }  # fmt: skip
    if edit.box is not None:
        row["grain_ratio"] = grain_ratio(
            photo.image, edit.image, edit.box, handles + targets, 8 * spec.scale
        )
    if mask is not None:
        row["outside_selection_identical"] = bool(
            np.array_equal(edit.image[~mask], photo.image[~mask])
        )
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="one scale and angle")
    parser.add_argument("--big", action="store_true", help="also time a 6000x4000 layer")
    parser.add_argument("--paste", choices=("warp", "render"), default="warp")
    args = parser.parse_args()
    torch.set_num_threads(1)
    G = load_generator("toy", torch.device("cpu"))
    params = params_from_unit(np.full(30, 0.5))
    rows = []
    # The same drags on the model's own 128 px render (the 1-point one also with the same
    # selection): the reference distances.
    for drags, selection in ((ONE, False), (ONE, True), (FIVE, False)):
        spec = PhotoSpec(params, (128, 128), 1.0, 0.0, (64.0, 64.0))
        row = one_run(G, spec, drags, selection, args.steps)
        row["reference"] = True
        rows.append(row)
        print(json.dumps(row), flush=True)
    scales = (4.0,) if args.quick else (1.0, 4.0, 8.0)
    angles = (20.0,) if args.quick else (0.0, 20.0, 35.0)
    for scale in scales:
        for angle in angles:
            spec = PhotoSpec(
                params,
                (2400, 1800),
                scale,
                angle,
                (1180.0, 930.0),
                grain=6.0,
                seed=int(scale * 100 + angle),
            )
            for drags, selection in ((ONE, False), (ONE, True), (FIVE, False)):
                row = one_run(G, spec, drags, selection, args.steps, args.paste)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.big:
        spec = PhotoSpec(params, (6000, 4000), 8.0, 20.0, (3100.0, 2050.0), grain=6.0)
        row = one_run(G, spec, ONE, True, args.steps)
        rows.append(row)
        print(json.dumps(row), flush=True)
    document = {"machine": platform.processor() or platform.machine(), "torch_threads": 1,
                "date": time.strftime("%Y-%m-%d"), "rows": rows}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
