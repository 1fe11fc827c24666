"""`dragfu convert`: an NVIDIA StyleGAN2 pickle -> our safetensors + JSON config."""

from __future__ import annotations

import argparse

from dragfu.cli.common import output_path
from dragfu.models import convert_checkpoint


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("convert", help="convert an NVIDIA .pkl to .safetensors + .json")
    parser.add_argument(
        "source",
        help="NVIDIA StyleGAN2 network pickle (.pkl: PyTorch or TensorFlow-era) or rosinality .pt",
    )
    parser.add_argument(
        "destination", help="output .safetensors (a .json config is written beside it)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    destination = convert_checkpoint(args.source, output_path(args.destination, "destination"))
    print(f"wrote {destination} and {destination.with_suffix('.json')}")
    return 0
