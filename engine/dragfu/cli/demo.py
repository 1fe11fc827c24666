"""`dragfu demo`: the whole job on the embedded toy model, as the plug-in does it.

A toy "photo" (drawn by the toy world's renderer, never by the model) is projected into the toy
generator, then its mouth corners are dragged outward (a wider mouth). Written to --out-dir: the photo, the
projection, the result, an animated GIF of the drag, and a before/after sheet.
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
from dragfu.drag import DragProgress, drag
from dragfu.errors import BadInputError
from dragfu.models import load_generator

# The demo face: a fixed point of the toy world, mid-range in every parameter.
DEMO_UNIT = np.array(
    [0.5, 0.55, 0.6, 0.3, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.55, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.4,
     0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.7, 0.5, 0.5, 0.5, 0.45, 0.3]
)  # fmt: skip
WIDEN_MOUTH = {"mouth_left": (-6.0, 0.0), "mouth_right": (6.0, 0.0)}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="project a toy photo and drag its mouth wider")
    parser.add_argument(
        "--out-dir", default=".", help="where to write the pictures (default: here)"
    )
    parser.add_argument("--model", default="toy", help="model (default: the embedded toy model)")
    parser.add_argument("--steps", type=int, default=200, help="maximum drag steps (default 200)")
    parser.add_argument(
        "--no-project", action="store_true", help="drag a sample of the model instead"
    )
    add_device_option(parser)
    add_output_options(parser)
    parser.set_defaults(func=run)


def demo_photo() -> tuple[np.ndarray, dict[str, tuple[float, float]]]:
    from dragfu.toy import landmarks, params_from_unit, render

    params = params_from_unit(DEMO_UNIT)
    return render(params), landmarks(params)


def run(args: argparse.Namespace) -> int:
    from dragfu.project import ProjectionCache

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not out_dir.is_dir():
        raise BadInputError(f"--out-dir {out_dir}: not a folder")
    say = (lambda *a: None) if args.quiet or args.json else print
    device = choose_device(args.device)
    say(f"device: {describe_device(device)}")
    G = load_generator(args.model, device)
    photo, marks = demo_photo()
    size = G.image_size  # another model's image size: W x H
    sx, sy = size[0] / photo.shape[1], size[1] / photo.shape[0]
    if (sx, sy) != (1.0, 1.0):  # resized (stretched, for a rectangular model), landmarks too
        photo = np.array(Image.fromarray(photo).resize(size, Image.LANCZOS))
        marks = {name: (x * sx, y * sy) for name, (x, y) in marks.items()}
    Image.fromarray(photo).save(out_dir / "before.png")

    started = time.perf_counter()
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

    say("projecting the photo into the toy model (cached after the first run)...")
    projection = ProjectionCache().get_or_project(G, photo, callback=on_project)
    project_seconds = time.perf_counter() - started
    Image.fromarray(projection.reconstruction).save(out_dir / "projected.png")
    say(
        f"projection: PSNR {projection.psnr:.1f} dB, SSIM {projection.ssim:.3f}, {project_seconds:.1f} s"
    )

    handles = [marks[name] for name in WIDEN_MOUTH]
    targets = [
        (x + dx * sx, y + dy * sy)
        for (x, y), (dx, dy) in zip(handles, WIDEN_MOUTH.values(), strict=True)
    ]
    frames: list[Image.Image] = []

    def on_step(progress: DragProgress) -> None:
        if progress_bar is not None:
            progress_bar.set_description("dragging")
            progress_bar.total = progress.max_steps
            progress_bar.n = progress.step
            progress_bar.set_postfix(distance=f"{max(progress.distances):.1f}px")
            progress_bar.refresh()
        if progress.preview is not None:
            frames.append(annotate(progress.preview, progress.points, targets))

    say("dragging the mouth corners outward...")
    result = drag(
        projection.generator, projection.ws, handles, targets,
        max_steps=args.steps, preview_every=4, callback=on_step,
    )  # fmt: skip
    if progress_bar is not None:
        progress_bar.close()
    Image.fromarray(result.image).save(out_dir / "result.png")
    frames.append(annotate(result.image, result.points, targets))
    write_gif(frames, out_dir / "drag.gif")
    sheet = before_after_sheet(photo, projection.reconstruction, result.image, handles, targets)
    sheet.save(out_dir / "before_after.png")

    measured = measure(result.image, list(WIDEN_MOUTH), targets)
    summary = {
        "out_dir": str(out_dir),
        "files": ["before.png", "projected.png", "result.png", "drag.gif", "before_after.png"],
        "projection": {"psnr": round(projection.psnr, 2), "ssim": round(projection.ssim, 4),
                       "seconds": round(project_seconds, 2), "cached": bool(getattr(projection, "cached", False))},
        "drag": {"steps": result.steps, "converged": result.converged, "seconds": round(result.seconds, 2),
                 "targets": [list(t) for t in targets], "tracked_points": [list(p) for p in result.points],
                 "detected_distance_px": measured},
    }  # fmt: skip
    if args.json:
        print_json(summary)
    else:
        state = "reached the targets" if result.converged else "stopped at the step limit"
        say(f"drag: {state} in {result.steps} steps ({result.seconds:.1f} s)")
        if measured is not None:
            say(
                f"mouth corners measured in the result: {measured:.2f} px from the targets (toy detector)"
            )
        say(f"wrote {', '.join(summary['files'])} to {out_dir}")
    return 0


def measure(image: np.ndarray, names: list[str], targets) -> float | None:
    """Mean distance of the detected landmarks to the targets (None if not detected, or when the
    image is not square: the toy detector reads square toy-world images only)."""
    from dragfu.toy.detector import detect

    if image.shape[0] != image.shape[1]:
        return None
    found = detect(image)
    if any(name not in found.points for name in names):
        return None
    distances = [
        np.hypot(*np.subtract(found.points[n], t)) for n, t in zip(names, targets, strict=True)
    ]
    return round(float(np.mean(distances)), 3)


def before_after_sheet(photo, projected, result, handles, targets, scale: int = 3) -> Image.Image:
    """before | projection | after (with the drags drawn), enlarged, labelled."""
    width, height = photo.shape[1] * scale, photo.shape[0] * scale
    panels = [
        ("photo", Image.fromarray(photo)),
        ("projection", Image.fromarray(projected)),
        ("before (drags)", annotate(projected, handles, targets)),
        ("after", Image.fromarray(result)),
    ]
    sheet = Image.new("RGB", (width * len(panels), height + 18), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for index, (label, panel) in enumerate(panels):
        sheet.paste(panel.resize((width, height), Image.NEAREST), (index * width, 18))
        draw.text((index * width + 4, 3), label, fill=(0, 0, 0))
    return sheet
