"""`python -m bench NAME`: the benchmarks, run from a checkout (never part of the test run).

    python -m bench generator / drag / toy / project / protocol [--json] [--out FILE] ...

Run it from the repository root with the engine importable (`pip install -e .`, or
PYTHONPATH=engine). The benchmarks are not in the installed package: the `dragfu` command has no
`bench` subcommand. Each result is one JSON object (the machine added); raw results live in
docs/results/.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

# name -> module bench.NAME with add_arguments(parser) and run(args) -> dict
BENCHMARKS = {
    "generator": "StyleGAN2 forward / forward+backward, full synthesis vs stopping at the feature block",
    "drag": "drag accuracy (toy landmarks), paired reconstruction, fidelity, speed; both methods",
    "toy": "the toy model: landmark detection rate, coverage of the world, realism",
    "project": "projection quality and speed on held-out toy renders",
    "protocol": "engine cold start, request overhead, image round trips through the protocol",
    "warm": "the warm engine: OK to the first drag step, cold vs warm, again on a result layer",
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser; only the benchmark named in argv (if any) is imported."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Drag-Fu benchmarks (docs/benchmarks.md)"
    )
    names = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, help_text in BENCHMARKS.items():
        sub = names.add_parser(name, help=help_text)
        sub.add_argument("--json", action="store_true", help="print the result as one JSON object")
        sub.add_argument("--out", help="also write the JSON result to this file")
        if name == chosen:
            module = importlib.import_module(f"bench.{name}")
            module.add_arguments(sub)
            sub.set_defaults(module=module)
    return parser


def machine() -> dict:
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def main(argv: list[str] | None = None) -> int:
    from dragfu.cli.common import print_json

    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
