"""`dragfu project`: project an existing image into a generator (W, W+, pivotal tuning) and save it.

    dragfu project photo.png --model toy --out photo.safetensors --preview recon.png --json

The result (W+ latent + tuned-weight difference + quality numbers) is a safetensors file that
`dragfu drag` and the server read. Projections are cached (see `dragfu.project.cache`): projecting the
same image with the same model and settings again returns at once; `--no-cache` skips the cache.
"""

from __future__ import annotations

import argparse
import sys
import time

from dragfu.cli.common import (
    add_device_option,
    add_model_option,
    add_output_options,
    output_path,
    print_json,
    show_progress,
)
from dragfu.errors import BadInputError
from dragfu.imageio import read_image, read_mask, resize_weight, write_image
from dragfu.project import (
    ProjectionCache,
    ProjectProgress,
    ProjectSettings,
    project,
    save_projection,
)
from dragfu.project.settings import PTI_SETTINGS, WPLUS_STEPS_WITHOUT_TUNING, settings_for


def _steps(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = ProjectSettings()
    parser = subparsers.add_parser(
        "project",
        help="project an existing image into the generator (GAN inversion)",
        description="Find the latent (and tuned generator weights) that reproduce IMAGE.",
    )
    parser.add_argument(
        "image", metavar="IMAGE", help="image file (any size; RGB, RGBA, grey, palette, 16-bit)"
    )
    add_model_option(parser)
    parser.add_argument(
        "--out", required=True, metavar="LATENT.safetensors", help="where to write the projection"
    )
    parser.add_argument(
        "--preview", metavar="RECON.png", help="also write the reconstruction image"
    )
    parser.add_argument(
        "--mask", metavar="MASK.png", help="weight mask: white = pixels that matter"
    )
    parser.add_argument(
        "--steps", type=_steps, default=None,
        help=f"W projection steps (default: the model's, {defaults.w_steps} for the toy model, "
        f"{PTI_SETTINGS.w_steps} (PTI) for 256 px and larger)",
    )  # fmt: skip
    parser.add_argument(
        "--wplus-steps", type=_steps, default=None,
        help=f"W+ refinement steps (default {defaults.wplus_steps}; "
        f"{WPLUS_STEPS_WITHOUT_TUNING} with --no-tune)",
    )  # fmt: skip
    parser.add_argument(
        "--tune-steps", type=_steps, default=None,
        help=f"pivotal tuning steps (default: the model's, {defaults.tune_steps} for the toy "
        f"model, {PTI_SETTINGS.tune_steps} (PTI) for 256 px and larger)",
    )  # fmt: skip
    parser.add_argument(
        "--no-tune", action="store_true",
        help="skip pivotal tuning: the latent only (W, then W+ refinement)",
    )  # fmt: skip
    parser.add_argument(
        "--perceptual", choices=("auto", "lpips", "fallback"), default=defaults.perceptual,
        help="perceptual loss: LPIPS (needs vgg16.pt), the built-in fallback, or auto (default)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default 0)")
    parser.add_argument(
        "--no-cache", action="store_true", help="neither read nor write the projection cache"
    )
    add_device_option(parser)
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dragfu.device import choose_device
    from dragfu.models import load_generator

    out = output_path(args.out, "--out")
    preview = output_path(args.preview, "--preview") if args.preview else None
    image = read_image(args.image)
    mask = None
    if args.mask:
        mask = read_mask(args.mask)
        if mask.shape != image.shape[:2]:
            mask = resize_weight(mask, (image.shape[1], image.shape[0]))
    G = load_generator(args.model, choose_device(args.device))
    # The model's own settings (PTI's for big models), with what the command line says on top.
    overrides = {"perceptual": args.perceptual, "seed": args.seed}
    if args.steps is not None:
        overrides["w_steps"] = args.steps
    if args.wplus_steps is not None:
        overrides["wplus_steps"] = args.wplus_steps
    elif args.no_tune:
        overrides["wplus_steps"] = WPLUS_STEPS_WITHOUT_TUNING
    if args.no_tune:
        overrides["tune_steps"] = 0
    elif args.tune_steps is not None:
        overrides["tune_steps"] = args.tune_steps
    settings = settings_for(G, overrides)
    if settings.w_steps + settings.wplus_steps + settings.tune_steps == 0:
        raise BadInputError("nothing to do: every stage has 0 steps")

    reporter = _ProgressLine() if show_progress(args) else None
    started = time.perf_counter()
    try:
        if args.no_cache:
            projection = project(G, image, weight_mask=mask, settings=settings, callback=reporter)
        else:
            projection = ProjectionCache().get_or_project(
                G, image, weight_mask=mask, settings=settings, callback=reporter
            )
    finally:
        if reporter is not None:
            reporter.close()
    save_projection(projection, out)
    if preview is not None:
        write_image(preview, projection.reconstruction)

    if args.json:
        document = projection.quality()
        document.update(
            out=str(out),
            preview=str(preview) if preview else None,
            model=str(args.model),
            resolution=int(G.img_resolution),  # the model's image height (and width if square)
            model_size=list(G.image_size),  # [W, H] of the model's images
            wall_seconds=round(time.perf_counter() - started, 3),
        )
        print_json(document)
    elif not args.quiet:
        source = " (from the cache)" if projection.cached else ""
        print(
            f"wrote {out}{source}: PSNR {projection.psnr:.2f} dB, SSIM {projection.ssim:.3f}, "
            f"{projection.seconds:.1f} s"
        )
        if preview is not None:
            print(f"wrote {preview}")
    return 0


class _ProgressLine:
    """One status line on stderr, rewritten in place (only when stderr is a terminal)."""

    NAMES = {"w": "W", "w+": "W+", "tune": "tuning"}

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, progress: ProjectProgress) -> None:
        now = time.perf_counter()
        if now - self.last < 0.2 and progress.step != progress.total:
            return
        self.last = now
        name = self.NAMES.get(progress.stage, progress.stage)
        sys.stderr.write(
            f"\rprojecting: {name} {progress.step}/{progress.total}  loss {progress.loss:.4f}   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\r" + " " * 60 + "\r")
        sys.stderr.flush()
