"""`dragfu drag`: drag points on a seed's image, or on an existing image (projected first)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dragfu.cli.common import (
    add_device_option,
    add_model_option,
    add_output_options,
    output_path,
    print_json,
    show_progress,
)
from dragfu.device import choose_device
from dragfu.drag import METHODS, DragProgress, DragResult, drag
from dragfu.errors import BadInputError
from dragfu.models import load_generator
from dragfu.models.seeds import DEFAULT_PSI, ws_from_seed


class _Ordered(argparse.Action):
    """Keep --drag and --via in command-line order: a --via belongs to the --drag before it."""

    def __call__(self, parser, namespace, value, option_string=None):
        items = getattr(namespace, "route", None) or []
        items.append((self.dest, value))
        namespace.route = items


def parse_point(text: str, where: str) -> tuple[float, float]:
    try:
        x, y = (float(part) for part in text.split(","))
    except ValueError:
        raise BadInputError(f"{where} {text!r}: expected X,Y") from None
    return x, y


def parse_route(items: list[tuple[str, str]]) -> tuple[list, list, list]:
    """[('drag', 'X1,Y1:X2,Y2'), ('via', 'X,Y'), ...] -> handles, targets, waypoints."""
    handles, targets, waypoints = [], [], []
    for kind, value in items:
        if kind == "drag":
            if value.count(":") != 1:
                raise BadInputError(f"--drag {value!r}: expected X1,Y1:X2,Y2")
            start, end = value.split(":")
            handles.append(parse_point(start, "--drag"))
            targets.append(parse_point(end, "--drag"))
            waypoints.append([])
        else:
            if not waypoints:
                raise BadInputError(f"--via {value!r} comes before any --drag")
            waypoints[-1].append(parse_point(value, "--via"))
    return handles, targets, waypoints


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "drag",
        help="drag handle points to target points",
        description="Coordinates are pixels of the output image (x right, y down, pixel centres "
        "at +0.5). Without IMAGE the seed's image is edited; with IMAGE, the image is projected "
        "into the model first (cached) and the result has the image's size.",
    )
    parser.add_argument("image", nargs="?", help="existing image to edit (optional)")
    add_model_option(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the image to edit (no IMAGE)")
    parser.add_argument(
        "--psi", type=float, default=DEFAULT_PSI, help=f"truncation psi (default {DEFAULT_PSI})"
    )
    parser.add_argument(
        "--drag", dest="drag", action=_Ordered, metavar="X1,Y1:X2,Y2", help="handle:target (repeat)"
    )
    parser.add_argument(
        "--via", dest="via", action=_Ordered, metavar="X,Y", help="waypoint of the preceding --drag"
    )
    parser.add_argument(
        "--pin", dest="pins", action="append", default=[], metavar="X,Y",
        help="a point that must stay where it is while the handles move (repeat)",
    )  # fmt: skip
    parser.add_argument(
        "--mask", help="movable region: image of the output's size, white = may move"
    )
    parser.add_argument(
        "--steps", type=int, default=300, help="maximum optimisation steps (default 300)"
    )
    parser.add_argument(
        "--method", choices=METHODS, default="default", help="default (ours) or draggan (published)"
    )
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--gif", help="also write the drag's trajectory as an animated GIF")
    parser.add_argument(
        "--gif-every", type=int, default=5, help="GIF frame every k steps (default 5)"
    )
    parser.add_argument("--latent-out", help="also save the final W+ latent (.safetensors)")
    parser.add_argument(
        "--align", default="auto", metavar="auto|crop|SCALE,ANGLE,CX,CY",
        help="IMAGE only: how the subject maps to the model's frame: found near the drag points "
        "(auto, default), the whole image (crop), or given (photo px per model px, degrees "
        "clockwise, centre in image pixels)",
    )  # fmt: skip
    parser.add_argument(
        "--paste", choices=("warp", "render"), default="warp",
        help="IMAGE only: move the image's own pixels (warp, default: keeps grain and detail) or "
        "paste the model's re-render",
    )  # fmt: skip
    add_device_option(parser)
    add_output_options(parser)
    parser.set_defaults(func=run, route=None)


def load_mask(path: str, size: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as image:
            mask = np.asarray(image.convert("L")) > 127
    except (OSError, ValueError) as error:
        raise BadInputError(f"--mask {path}: cannot read the image ({error})") from None
    if mask.shape != (size[1], size[0]):
        raise BadInputError(
            f"--mask {path}: is {mask.shape[1]}x{mask.shape[0]}, the output is {size[0]}x{size[1]}"
        )
    return mask


def run(args: argparse.Namespace) -> int:
    handles, targets, waypoints = parse_route(args.route or [])
    if not handles:
        raise BadInputError("no --drag given: say at least one X1,Y1:X2,Y2")
    if args.steps < 1:
        raise BadInputError(f"--steps {args.steps}: must be at least 1")
    args.pin_points = [parse_point(text, "--pin") for text in args.pins]
    out = output_path(args.out, "--out")
    gif = output_path(args.gif, "--gif") if args.gif else None
    device = choose_device(args.device)
    G = load_generator(args.model, device)
    size = G.image_size  # (W, H): R x R, or R/2 x R (StyleGAN-Human)

    if args.image:
        return run_on_image(args, G, handles, targets, waypoints, out, gif)
    out_size = size
    for what, points in (("handle", handles), ("target", targets), ("pin", args.pin_points)):
        for index, (x, y) in enumerate(points):
            if not (0 <= x <= out_size[0] and 0 <= y <= out_size[1]):
                raise BadInputError(
                    f"{what} {index + 1} at ({x:g}, {y:g}) is outside the {out_size[0]}x{out_size[1]} image"
                )
    mask = load_mask(args.mask, out_size) if args.mask else None
    generator, ws = G, ws_from_seed(G, args.seed, args.psi)

    frames: list[Image.Image] = []
    bar = None
    if show_progress(args):
        from tqdm import tqdm

        bar = tqdm(total=args.steps, unit="step", desc="dragging", leave=False)

    def on_step(progress: DragProgress) -> None:
        if bar is not None:
            bar.n = progress.step
            bar.set_postfix(distance=f"{max(progress.distances):.1f}px")
            bar.refresh()
        if progress.preview is not None:
            frames.append(annotate(progress.preview, progress.points, targets))

    result = drag(
        generator, ws, handles, targets,
        waypoints=waypoints, pins=args.pin_points or None, mask=mask, method=args.method,
        max_steps=args.steps, preview_every=args.gif_every if gif else 0,
        callback=on_step,
    )  # fmt: skip
    if bar is not None:
        bar.close()

    Image.fromarray(result.image).save(out)
    if gif:
        frames.append(annotate(result.image, result.points, targets))
        write_gif(frames, gif)
    if args.latent_out:
        from safetensors.torch import save_file

        save_file(
            {"ws": result.ws.cpu().contiguous()}, str(output_path(args.latent_out, "--latent-out"))
        )
    report(args, result, result.points, targets, out)
    return 0


def parse_alignment(text: str):
    if text in ("auto", "crop"):
        return text
    try:
        scale, angle, cx, cy = (float(v) for v in text.split(","))
    except ValueError:
        raise BadInputError(
            f"--align {text!r}: expected auto, crop or SCALE,ANGLE,CX,CY (four numbers)"
        ) from None
    return {"scale": scale, "angle": angle, "centre": [cx, cy]}


def run_on_image(args, G, handles, targets, waypoints, out: Path, gif: Path | None) -> int:
    """An existing image: the subject near the points aligned to the model, projected (cached),
    dragged, and the edit carried back to the image's own pixels."""
    from dragfu.imageio import read_image
    from dragfu.photo.pipeline import drag_photo

    alignment = parse_alignment(args.align)
    photo = read_image(args.image)
    mask = load_mask(args.mask, (photo.shape[1], photo.shape[0])) if args.mask else None
    frames: list[Image.Image] = []

    def on_step(progress: DragProgress) -> None:
        if progress.preview is not None:
            frames.append(annotate(progress.preview, progress.points, progress.targets))

    edit = drag_photo(
        G, photo, handles, targets, waypoints=waypoints or None, pins=args.pin_points or None,
        mask=mask, alignment=alignment,
        paste=args.paste, method=args.method, max_steps=args.steps,
        preview_every=args.gif_every if gif else 0, drag_callback=on_step,
    )  # fmt: skip
    Image.fromarray(edit.image).save(out)
    if gif:
        frames.append(annotate(edit.result.image, edit.result.points, edit.result.targets))
        write_gif(frames, gif)
    if args.latent_out:
        from safetensors.torch import save_file

        save_file(
            {"ws": edit.result.ws.cpu().contiguous()},
            str(output_path(args.latent_out, "--latent-out")),
        )
    for note in edit.notes:
        if not (args.quiet or args.json):
            print(f"note: {note}")
    report(args, edit.result, edit.points, targets, out, photo=edit)
    return 0


def report(args, result: DragResult, points, targets, out: Path, photo=None) -> None:
    document = {
        "steps": result.steps,
        "points": [list(p) for p in points],
        "targets": [list(t) for t in targets],
        "seconds": round(result.seconds, 4),
        "seconds_per_step": round(result.seconds_per_step, 5),
        "method": result.method,
        "converged": result.converged,
        "out": str(out),
    }
    if result.pins and photo is None:  # a seed's image: model coordinates are the output's
        document["pins"] = [list(p) for p in result.pins]
    if photo is not None:
        document["alignment"] = photo.alignment.to_dict()
        document["changed_box"] = list(photo.box) if photo.box else None
        document["stage_seconds"] = photo.seconds
    if args.json:
        print_json(document)
    elif not args.quiet:
        state = "reached the targets" if result.converged else "stopped at the step limit"
        print(f"{state} in {result.steps} steps ({result.seconds:.1f} s); wrote {out}")
        print(json.dumps({"points": document["points"]}))


def annotate(image: np.ndarray, points, targets) -> Image.Image:
    """Draw handles (red) and targets (blue) on a frame."""
    frame = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(frame)
    radius = max(1.5, max(image.shape[:2]) / 128)
    for (x, y), (tx, ty) in zip(points, targets, strict=False):
        draw.line([(x, y), (tx, ty)], fill=(255, 255, 255), width=1)
        draw.ellipse([tx - radius, ty - radius, tx + radius, ty + radius], fill=(40, 90, 255))
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(255, 40, 40))
    return frame


def write_gif(frames: list[Image.Image], path: Path, frame_ms: int = 80) -> None:
    if not frames:
        return
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
