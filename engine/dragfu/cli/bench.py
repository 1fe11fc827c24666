"""`dragfu bench NAME`: the benchmarks (never part of the test run); results as JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path

import torch

from dragfu.cli.common import print_json

# name -> module under dragfu.bench with add_arguments(parser) and run(args) -> dict
BENCHMARKS = {
    "generator": "StyleGAN2 forward / forward+backward, full synthesis vs stopping at the feature block",
    "drag": "drag accuracy (toy landmarks), paired reconstruction, fidelity, speed; both methods",
    "toy": "the toy model: landmark detection rate, coverage of the world, realism",
    "project": "projection quality and speed on held-out toy renders",
    "protocol": "engine cold start, request overhead, image round trips through the protocol",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark (see docs/benchmarks.md)")
    names = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, help_text in BENCHMARKS.items():
        sub = names.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="print the result as one JSON object")
        sub.add_argument("--out", help="also write the JSON result to this file")
        try:
            module = importlib.import_module(f"dragfu.bench.{name}")
        except ImportError:
            sub.set_defaults(func=_missing, module=None)
            continue
        module.add_arguments(sub)
        sub.set_defaults(func=run, module=module)


def _missing(args: argparse.Namespace) -> int:
    from dragfu.errors import DragfuError

    raise DragfuError(f"benchmark {args.benchmark!r} is not available in this build")


def machine() -> dict:
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(args: argparse.Namespace) -> int:
    measured = args.module.run(args)  # first: a benchmark may set the thread count
    result = {"benchmark": args.benchmark, "machine": machine(), **measured}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print_json(result)
    else:
        print(json.dumps(result, indent=2))
    return 0
