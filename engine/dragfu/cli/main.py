"""`dragfu` entry point: one module per subcommand, each with `register(subparsers)`.

A subcommand module adds its parser and sets `func=run`; `run(args) -> int` returns the exit code.
User errors (`DragfuError`) become one line on stderr and exit code 2, never a traceback; output
into a closed pipe (`dragfu models list | head`) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from dragfu import __version__
from dragfu.errors import DragfuError

# Subcommand modules under dragfu.cli, in the order `dragfu --help` lists them, with their help
# lines (the same as each module's own; tests/test_cli_lazy.py checks). Only the module of the
# subcommand being run is imported: `dragfu serve` never loads the demo, photo or download code.
COMMANDS = {
    "demo": "drag the mouth of a toy photo wider",
    "sample": "render the image of a seed",
    "convert": "convert an NVIDIA .pkl to .safetensors + .json",
    "drag": "drag handle points to target points",
    "project": "project an existing image into the generator (GAN inversion)",
    "serve": "run the engine as a process speaking the stdio protocol (for the GIMP plug-in)",
    "models": "list, download, verify and remove models",
    "doctor": "check the install: device, torch, models, GIMP plug-in, engine command",
}


def chosen_command(argv: list[str]) -> str | None:
    """The subcommand named in argv (the first word that is not an option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser. With argv, only the subcommand it names is imported and registered in full
    (the others are listed by name and help line); without, every subcommand is."""
    parser = argparse.ArgumentParser(
        prog="dragfu", description="DragGAN-style point dragging on StyleGAN2 generators."
    )
    parser.add_argument("--version", action="version", version=f"dragfu {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = None if argv is None else chosen_command(argv)
    for name, help_text in COMMANDS.items():
        if argv is None or name == chosen:
            importlib.import_module(f"dragfu.cli.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, where a closed pipe can still be handled
        return code
    except DragfuError as error:
        hint = f" ({error.hint})" if error.hint else ""
        print(f"dragfu {args.command}: error: {error}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dragfu {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return _stdout_closed()


def _stdout_closed() -> int:
    """The reader of our output went away (`dragfu models list | head`): end quietly, as other
    command-line tools do, and keep Python from failing again when it flushes stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, the status a shell shows for a writer whose reader left


if __name__ == "__main__":
    sys.exit(main())
