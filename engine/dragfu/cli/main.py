"""`dragfu` entry point: one module per subcommand, each with `register(subparsers)`.

A subcommand module adds its parser and sets `func=run`; `run(args) -> int` returns the exit code.
User errors (`DragfuError`) become one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from dragfu import __version__
from dragfu.errors import DragfuError

# Subcommand modules under dragfu.cli, in the order `dragfu --help` lists them.
COMMANDS = [
    "demo",
    "sample",
    "convert",
    "drag",
    "project",
    "serve",
    "models",
    "bench",
    "doctor",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dragfu", description="DragGAN-style point dragging on StyleGAN2 generators."
    )
    parser.add_argument("--version", action="version", version=f"dragfu {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"dragfu.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except DragfuError as error:
        hint = f" ({error.hint})" if error.hint else ""
        print(f"dragfu {args.command}: error: {error}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dragfu {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
