"""Options and helpers shared by several subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dragfu.errors import BadInputError

DEFAULT_MODEL = "toy"


def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default=DEFAULT_MODEL,
        help=f"model name (see `dragfu models list`) or .pkl/.safetensors path (default: {DEFAULT_MODEL})",
    )  # fmt: skip


def add_device_option(parser: argparse.ArgumentParser) -> None:
    from dragfu.device import DEVICE_CHOICES  # imports torch: only for the commands that use it

    parser.add_argument(
        "--device", default=None, choices=DEVICE_CHOICES,
        help="compute device (default: $DRAGFU_DEVICE or auto: CUDA, then MPS, then CPU)",
    )  # fmt: skip


def add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object for scripts")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


def print_json(document: dict) -> None:
    json.dump(document, sys.stdout, indent=None, sort_keys=True)
    sys.stdout.write("\n")


def output_path(path: str | Path, what: str) -> Path:
    """Check that an output file can be written before spending minutes computing it."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise BadInputError(f"{what} {path}: is a folder; give a file name")
    if not path.parent.exists():
        raise BadInputError(f"{what} {path}: folder {path.parent} does not exist")
    return path


def show_progress(args: argparse.Namespace) -> bool:
    return not (args.json or args.quiet) and sys.stderr.isatty()
