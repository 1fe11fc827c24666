"""`dragfu demo`: the whole job on the embedded toy model, as a user does it on a photo.

A 2400x1800 "photo" with film grain (drawn by the toy world's renderer at photo resolution, never
by the model), its face four times larger than the model draws faces and turned 12 degrees; the
mouth corners are dragged 24 px outward (a wider mouth). The engine finds the face near the drag
points and aligns it to the model, projects it, drags, and moves the photo's own pixels by the
drag's motion: the grain stays, and nothing away from the mouth changes. Written to --out-dir:
the photo, the projection, the result, an animated GIF of the drag, and a before/after sheet.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dragfu.cli.common import add_device_option, add_output_options, print_json, show_progress
from dragfu.cli.drag import annotate, write_gif
from dragfu.device import choose_device, describe_device
from dragfu.drag import DragProgress
from dragfu.errors import BadInputError
from dragfu.models import load_generator

# The demo face: a fixed point of the toy world, mid-range in every parameter.
DEMO_UNIT = np.array(
    [0.5, 0.55, 0.6, 0.3, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.55, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4,
     0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.7, 0.5, 0.5, 0.5, 0.45, 0.3]
)  # fmt: skip
WIDEN_MOUTH = {"mouth_left": (-6.0, 0.0), "mouth_right": (6.0, 0.0)}  # world (model) px
PHOTO_CANVAS = (2400, 1800)
PHOTO_SCALE = 4.0
PHOTO_ANGLE = 12.0
PHOTO_CENTRE = (1300.0, 860.0)
PHOTO_GRAIN = 6.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="drag the mouth of a toy photo wider")
    parser.add_argument(
        "--out-dir", default=".", help="where to write the pictures (default: here)"
    )
    parser.add_argument("--model", default="toy", help="model (default: the embedded toy model)")
    parser.add_argument("--steps", type=int, default=200, help="maximum drag steps (default 200)")
    add_device_option(parser)
    add_output_options(parser)
    parser.set_defaults(func=run)


def demo_photo():
    """The demo's photo (a dragfu.toy.photo.Photo: image, exact landmarks, world <-> photo)."""
    from dragfu.toy import params_from_unit
    from dragfu.toy.photo import PhotoSpec, build_photo

    spec = PhotoSpec(
        params_from_unit(DEMO_UNIT), PHOTO_CANVAS, PHOTO_SCALE, PHOTO_ANGLE, PHOTO_CENTRE,
        grain=PHOTO_GRAIN,
    )  # fmt: skip
    return build_photo(spec)


def world_frame(photo):
    """The photo's own world -> photo transform, as an alignment (for measuring)."""
    from dragfu.photo import Similarity
    from dragfu.toy.world import WORLD_SIZE

    spec = photo.spec
    return Similarity(spec.scale, spec.angle, tuple(spec.photo_centre), (WORLD_SIZE, WORLD_SIZE))


def run(args: argparse.Namespace) -> int:
    from dragfu.photo.pipeline import drag_photo

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not out_dir.is_dir():
        raise BadInputError(f"--out-dir {out_dir}: not a folder")
    say = (lambda *a: None) if args.quiet or args.json else print
    device = choose_device(args.device)
    say(f"device: {describe_device(device)}")
    G = load_generator(args.model, device)
    photo = demo_photo()
    Image.fromarray(photo.image).save(out_dir / "before.png")
    world_handles = [tuple(photo.to_world([photo.landmarks[n]])[0]) for n in WIDEN_MOUTH]
    world_targets = [
        (x + dx, y + dy)
        for (x, y), (dx, dy) in zip(world_handles, WIDEN_MOUTH.values(), strict=True)
    ]
    handles = [tuple(p) for p in photo.to_photo(world_handles)]
    targets = [tuple(p) for p in photo.to_photo(world_targets)]

    progress_bar = None
    if show_progress(args):
        from tqdm import tqdm

        progress_bar = tqdm(unit="step", leave=False)

    def on_project(progress) -> None:
        if progress_bar is not None:
            progress_bar.set_description(f"projecting ({progress.stage})")
            progress_bar.total = progress.total
            progress_bar.n = progress.step
            progress_bar.refresh()

    frames: list[Image.Image] = []

    def on_step(progress: DragProgress) -> None:
        if progress_bar is not None:
            progress_bar.set_description("dragging")
            progress_bar.total = progress.max_steps
            progress_bar.n = progress.step
            progress_bar.set_postfix(distance=f"{max(progress.distances):.1f}px")
            progress_bar.refresh()
        if progress.preview is not None:
            frames.append(annotate(progress.preview, progress.points, progress.targets))

    say(
        f"a {PHOTO_CANVAS[0]}x{PHOTO_CANVAS[1]} photo with grain; aligning, projecting (cached after the first run), dragging the mouth corners outward..."
    )
    started = time.perf_counter()
    edit = drag_photo(
        G, photo.image, handles, targets, max_steps=args.steps, preview_every=4,
        project_callback=on_project, drag_callback=on_step,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    if progress_bar is not None:
        progress_bar.close()
    projection, result = edit.projection, edit.result
    Image.fromarray(projection.reconstruction).save(out_dir / "projected.png")
    Image.fromarray(edit.image).save(out_dir / "result.png")
    frames.append(annotate(result.image, result.points, result.targets))
    write_gif(frames, out_dir / "drag.gif")
    sheet = before_after_sheet(photo.image, edit.image, edit.box or edit.region, handles, targets)
    sheet.save(out_dir / "before_after.png")

    measured = measure(edit.image, world_frame(photo), list(WIDEN_MOUTH), world_targets)
    changed = float(np.any(edit.image != photo.image, axis=-1).mean())
    summary = {
        "out_dir": str(out_dir),
        "files": ["before.png", "projected.png", "result.png", "drag.gif", "before_after.png"],
        "photo": {"size": list(PHOTO_CANVAS), "grain": PHOTO_GRAIN, "face_scale": PHOTO_SCALE},
        "alignment": edit.alignment.to_dict(),
        "projection": {"psnr": round(projection.psnr, 2), "ssim": round(projection.ssim, 4),
                       "cached": bool(getattr(projection, "cached", False))},
        "drag": {"steps": result.steps, "converged": result.converged,
                 "targets": [list(t) for t in targets], "tracked_points": [list(p) for p in edit.points],
                 "detected_distance_model_px": measured},
        "changed_share": round(changed, 5),
        "stage_seconds": edit.seconds, "seconds": round(seconds, 2),
    }  # fmt: skip
    if args.json:
        print_json(summary)
    else:
        a = edit.alignment
        say(
            f"alignment: the face found at {a.scale:.2f}x the model's scale, turned {a.angle:.1f} deg"
        )
        say(f"projection: PSNR {projection.psnr:.1f} dB, SSIM {projection.ssim:.3f}")
        state = "reached the targets" if result.converged else "stopped at the step limit"
        say(f"drag: {state} in {result.steps} steps; {changed:.2%} of the photo changed")
        if measured is not None:
            say(
                f"mouth corners measured in the result: {measured:.2f} model px from the targets (toy detector)"
            )
        say("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in edit.seconds.items()))
        say(f"wrote {', '.join(summary['files'])} to {out_dir}")
    return 0


def measure(image: np.ndarray, frame, names: list[str], world_targets) -> float | None:
    """Mean distance (model px) of the landmarks the toy detector finds in the photo, seen
    through the photo's own world frame, to their targets (None if not found)."""
    from dragfu.photo.alignment import sample_model_frame
    from dragfu.toy.detector import detect

    found = detect(sample_model_frame(image, frame))
    if any(name not in found.points for name in names):
        return None
    distances = [
        np.hypot(*np.subtract(found.points[n], t))
        for n, t in zip(names, world_targets, strict=True)
    ]
    return round(float(np.mean(distances)), 3)


def before_after_sheet(before, after, box, handles, targets, margin: int = 60) -> Image.Image:
    """The edited part of the photo at its own resolution: before (drags drawn) | after."""
    x0, y0, x1, y1 = box
    x0, y0 = max(x0 - margin, 0), max(y0 - margin, 0)
    x1, y1 = min(x1 + margin, before.shape[1]), min(y1 + margin, before.shape[0])
    shift = [(x - x0, y - y0) for x, y in handles], [(x - x0, y - y0) for x, y in targets]
    panels = [
        ("photo (drags)", annotate(np.ascontiguousarray(before[y0:y1, x0:x1]), *shift)),
        ("after (1:1 pixels)", Image.fromarray(np.ascontiguousarray(after[y0:y1, x0:x1]))),
    ]
    width, height = x1 - x0, y1 - y0
    sheet = Image.new("RGB", (width * len(panels), height + 18), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (label, panel) in enumerate(panels):
        sheet.paste(panel, (index * width, 18))
        draw.text((index * width + 4, 3), label, fill=(0, 0, 0))
    return sheet
