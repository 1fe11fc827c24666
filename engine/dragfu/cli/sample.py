"""`dragfu sample`: the image of a seed, as NVIDIA's tools draw it."""

from __future__ import annotations

import argparse

from PIL import Image

from dragfu.cli.common import (
    add_device_option,
    add_model_option,
    add_output_options,
    output_path,
    print_json,
)
from dragfu.device import choose_device
from dragfu.models import load_generator
from dragfu.models.seeds import DEFAULT_PSI, to_uint8, ws_from_seed


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sample", help="render the image of a seed")
    add_model_option(parser)
    parser.add_argument("--seed", type=int, default=0, help="NVIDIA-style seed (default 0)")
    parser.add_argument(
        "--psi", type=float, default=DEFAULT_PSI, help=f"truncation psi (default {DEFAULT_PSI})"
    )
    parser.add_argument("--out", default=None, help="output PNG (default seedNNNN.png)")
    add_device_option(parser)
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = output_path(args.out or f"seed{args.seed:04d}.png", "--out")
    device = choose_device(args.device)
    G = load_generator(args.model, device)
    image = to_uint8(G.synthesis(ws_from_seed(G, args.seed, args.psi), noise_mode="const"))
    Image.fromarray(image).save(out)
    if args.json:
        print_json(
            {"out": str(out), "seed": args.seed, "psi": args.psi, "size": list(image.shape[1::-1])}
        )
    elif not args.quiet:
        print(f"wrote {out}")
    return 0
