"""`dragfu` imports only the subcommand it runs; the benchmarks live outside the package."""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys

import pytest

from dragfu.cli.main import COMMANDS, build_parser, main
from tests.conftest import REPO

# What `dragfu serve` must not load: research code, the photo pipeline (OpenCV), downloads.
NOT_FOR_SERVE = (
    "dragfu.bench",
    "bench",
    "dragfu.toy",
    "dragfu.models.download",
    "dragfu.photo",
    "cv2",
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "engine"), str(REPO)])}


def test_serve_imports_no_benchmark_detector_download_or_photo_code():
    code = (
        "import sys\n"
        "from dragfu.cli.main import build_parser\n"
        "args = build_parser(['serve', '--device', 'cpu']).parse_args(['serve', '--device', 'cpu'])\n"
        "assert args.command == 'serve' and callable(args.func)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {NOT_FOR_SERVE!r}\n"
        f"             or any(m.startswith(p + '.') or m == p for p in {NOT_FOR_SERVE!r}))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"`dragfu serve` imported {done.stdout.strip()}"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_listed_help_lines_are_the_modules_own(name):
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers(dest="command")
    importlib.import_module(f"dragfu.cli.{name}").register(subparsers)
    (action,) = subparsers._choices_actions
    assert action.dest == name and action.help == COMMANDS[name]


def test_every_cli_module_is_listed():
    modules = {p.stem for p in (REPO / "engine" / "dragfu" / "cli").glob("*.py")}
    assert modules - {"__init__", "main", "common"} == set(COMMANDS)


def test_the_full_parser_and_the_lazy_one_agree(capsys):
    full = build_parser()
    assert full.parse_args(["models", "list", "--json"]).json is True
    lazy = build_parser(["models", "list"]).parse_args(["models", "list"])
    assert lazy.models_command == "list"
    with pytest.raises(SystemExit):
        main(["bench", "drag"])  # no `dragfu bench`: the benchmarks are `python -m bench`
    assert "invalid choice: 'bench'" in capsys.readouterr().err


def test_the_benchmarks_are_not_in_the_package():
    """They are `python -m bench` from a checkout (tests/test_cli_engine.py runs one)."""
    import dragfu

    assert not (REPO / "engine" / "dragfu" / "bench").exists()
    assert not hasattr(dragfu, "bench")
