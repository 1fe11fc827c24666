"""`dragfu serve`: speak the stdio protocol (docs/protocol.md) on stdin/stdout until told to stop.

The plug-in starts this as a subprocess, locally or as `ssh gpu-box dragfu serve`. Models and
projections stay in memory between requests. Logs go to stderr; stdout carries frames only.
"""

from __future__ import annotations

import argparse
import logging
import sys

from dragfu.cli.common import add_device_option
from dragfu.protocol.frames import DEFAULT_MAX_PAYLOAD_BYTES
from dragfu.protocol.parent import watch_parent
from dragfu.protocol.server import (
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_LATENTS,
    EngineBackend,
    run_server,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the engine as a process speaking the stdio protocol (for the GIMP plug-in)",
        description="Read request frames on stdin, write event frames on stdout (docs/protocol.md). "
        "Logs go to stderr. Exits on end of input, on a `shutdown` request, when the client goes away "
        "(or the process that started it dies), "
        "or after --idle-timeout seconds without work.",
    )
    add_device_option(parser)
    parser.add_argument(
        "--model", default="toy",
        help="model used by requests that name none (default: toy)",
    )  # fmt: skip
    parser.add_argument(
        "--preload", action="append", default=[], metavar="MODEL",
        help="load MODEL before answering anything (repeatable), so the first drag starts at once",
    )  # fmt: skip
    parser.add_argument(
        "--max-payload-mb", type=float, default=DEFAULT_MAX_PAYLOAD_BYTES / 2**20,
        help=f"refuse frames whose payload is larger (default {DEFAULT_MAX_PAYLOAD_BYTES // 2**20})",
    )  # fmt: skip
    parser.add_argument(
        "--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
        help=f"exit after this long without requests or work; 0 = never (default {DEFAULT_IDLE_TIMEOUT:.0f})",
    )  # fmt: skip
    parser.add_argument(
        "--max-latents", type=int, default=DEFAULT_MAX_LATENTS,
        help=f"projections and drag results kept in memory, oldest dropped first (default {DEFAULT_MAX_LATENTS})",
    )  # fmt: skip
    parser.add_argument(
        "--socket", metavar="PATH", default=None,
        help="serve connections on this Unix socket (a named pipe \\\\.\\pipe\\NAME on Windows) "
        "instead of stdio: the warm engine the plug-in starts and reuses (docs/protocol.md)",
    )  # fmt: skip
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"),
        help="stderr log level (default info)",
    )  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, args.log_level.upper()),
        format="dragfu serve %(levelname)s %(message)s",
    )
    if args.max_payload_mb <= 0:
        print("dragfu serve: error: --max-payload-mb must be positive", file=sys.stderr)
        return 2
    watch_parent()  # the engine ends with the process that started it (even on SIGKILL)
    backend = EngineBackend(args.device)
    return run_server(
        backend,
        max_payload_bytes=int(args.max_payload_mb * 2**20),
        idle_timeout=max(0.0, args.idle_timeout),
        default_model=args.model,
        max_latents=max(1, args.max_latents),
        preload=args.preload,
        socket_path=args.socket,
    )
