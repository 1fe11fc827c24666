"""The installer's options and main()."""

import argparse
import sys

from dragfu_install.installer import Installer
from dragfu_install.machine import InstallError


def build_parser():
    parser = argparse.ArgumentParser(
        prog="install.py",
        description="Install Drag-Fu: the engine (with the right torch) and the GIMP plug-in.",
    )
    engine = parser.add_argument_group("engine")
    engine.add_argument("--python", help="Python >= 3.10 for the engine (default: find one)")
    engine.add_argument("--venv", help="engine environment (default: <data folder>/engine-venv)")
    engine.add_argument(
        "--torch", default="auto",
        help="torch build: auto (default), cpu, cuda, cuXYZ (e.g. cu126), rocm, rocmX.Y, mps, default",
    )  # fmt: skip
    engine.add_argument(
        "--torch-index", metavar="URL",
        help="package index for torch (a mirror of download.pytorch.org/whl/<build>), or `pypi`: "
        "torch from the index your pip configuration uses (default: the build's index; only as "
        "an extra index when your pip configuration names one)",
    )  # fmt: skip
    engine.add_argument("--no-torch", action="store_true", help="leave torch as it is")
    engine.add_argument(
        "--system-site-packages", action="store_true",
        help="let a new environment see the base Python's packages",
    )  # fmt: skip
    engine.add_argument(
        "--engine-no-deps", action="store_true",
        help="install the engine without its dependencies (an environment you prepared)",
    )  # fmt: skip
    engine.add_argument("--dev", action="store_true", help="editable engine, linked plug-in")
    plugin = parser.add_argument_group("GIMP plug-in")
    plugin.add_argument(
        "--plugin-dir", action="append",
        help="install the plug-in into this folder (repeatable) instead of GIMP's folders",
    )  # fmt: skip
    plugin.add_argument("--gimp-version", help="layout for --plugin-dir: 3 (default) or 2.10")
    plugin.add_argument("--plugin-only", action="store_true", help="no engine here (remote GPU)")
    plugin.add_argument(
        "--engine-command",
        help='command the plug-in runs, e.g. "ssh gpu-box /path/to/dragfu serve"',
    )
    plugin.add_argument(
        "--engine-env", action="append", metavar="NAME=VALUE",
        help="extra environment variable for the engine (repeatable)",
    )  # fmt: skip
    plugin.add_argument("--models-dir", help="models folder (default: <data folder>/models)")
    plugin.add_argument("--model", default="toy", help="model the dialog proposes (default toy)")
    plugin.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (default auto)")
    plugin.add_argument("--reset-config", action="store_true", help="rewrite an edited dragfu.json")
    parser.add_argument("--uninstall", action="store_true", help="remove what the install made")
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would change, change nothing"
    )
    parser.add_argument("--no-doctor", action="store_true", help="skip `dragfu doctor` at the end")
    parser.add_argument("--checkout", help=argparse.SUPPRESS)
    return parser


def main(argv=None, host=None, machine=None, runner=None, out=None):
    parser = build_parser()
    options = parser.parse_args(argv)
    for pair in options.engine_env or []:
        if "=" not in pair or not pair.split("=", 1)[0]:
            parser.error(f"--engine-env needs NAME=VALUE, not {pair!r}")
    installer = Installer(options, host=host, machine=machine, runner=runner, out=out)
    try:
        if options.uninstall:
            return installer.uninstall()
        return installer.install()
    except OSError as error:  # a folder we may not write, a full disk...
        print(f"install.py: error: {error}", file=sys.stderr)
        return 2
    except InstallError as error:
        message = f"install.py: error: {error}"
        if error.hint:
            message += f"\n  fix: {error.hint}"
        print(message, file=sys.stderr)
        return 2
