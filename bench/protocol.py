"""Protocol benchmark: what the process boundary costs, on a local pipe and through an ssh-like wrapper.

- cold start: spawn `dragfu serve` and wait for the answer to `hello` (the engine is ready);
- warm overhead: round trip of a `hello` to an engine already running (frame codec + pipe + thread
  hand-offs + listing devices and model files), and of an empty `echo` (the transport alone);
- image round trip: a 1024x1024 RGB image sent and sent back by the `echo` request, as a raw
  uint8 array (3 MiB each way) and as PNG (plus the PNG encode/decode the two ends would pay).

The wrapper is `sh -c "cat | ENGINE | cat"`: the command is re-parsed by a shell and both streams
are relayed by other processes, as ssh does (without the network and the encryption).
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import shlex
import statistics
import sys
import time

import numpy as np

from dragfu.protocol.frames import numpy_part, png_part
from dragfu_core.engine_client import EngineClient


def open_engine(argv: list[str]) -> EngineClient:
    """The one protocol client, keeping this Python's environment (PYTHONPATH included)."""
    return EngineClient(argv, env=dict(os.environ), startup_timeout=300)


TRANSPORTS = ("pipe", "wrapper")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--engine", default=None,
        help="engine command (default: this Python running `dragfu serve --device cpu`)",
    )  # fmt: skip
    parser.add_argument("--transports", default=",".join(TRANSPORTS), help="pipe, wrapper or both")
    parser.add_argument("--cold-runs", type=int, default=5, help="engine starts timed")
    parser.add_argument("--warm-requests", type=int, default=300, help="hello round trips timed")
    parser.add_argument("--image-runs", type=int, default=20, help="image round trips timed")
    parser.add_argument("--size", type=int, default=1024, help="side of the square test image")
    parser.add_argument(
        "--cold-only", action="store_true", help="only the cold start (spawn to `hello` answered)"
    )


def ssh_like(argv: list[str]) -> list[str]:
    """The same indirections as `ssh host CMD`: a shell re-parses the command, streams are relayed."""
    return ["sh", "-c", f"cat | {shlex.join(argv)} | cat"]


def stats_ms(times: list[float]) -> dict:
    ms = sorted(t * 1000 for t in times)
    return {
        "median_ms": round(statistics.median(ms), 3),
        "min_ms": round(ms[0], 3),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 3),
        "runs": len(ms),
    }


def cold_start(argv: list[str], runs: int) -> dict:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        with open_engine(argv) as engine:
            engine.request("hello", timeout=300)
            times.append(time.perf_counter() - started)
    return stats_ms(times)


def warm(argv: list[str], requests: int, image: np.ndarray, image_runs: int) -> dict:
    from PIL import Image

    with open_engine(argv) as engine:
        engine.request("hello", timeout=300)
        for _ in range(10):  # warm-up: threads started, pages touched
            engine.request("hello")
        hello_times = []
        for _ in range(requests):
            started = time.perf_counter()
            engine.request("hello")
            hello_times.append(time.perf_counter() - started)
        # An empty echo: the transport alone (hello also lists devices and checks model files).
        echo_times = []
        for _ in range(requests):
            started = time.perf_counter()
            engine.request("echo")
            echo_times.append(time.perf_counter() - started)

        array_part = numpy_part("image", image)
        echo = engine.request("echo", None, [array_part])  # warm-up, and check the bytes
        if echo.parts["image"].data != array_part.data:
            raise RuntimeError("echo returned different bytes")
        array_times = []
        for _ in range(image_runs):
            started = time.perf_counter()
            engine.request("echo", None, [array_part])
            array_times.append(time.perf_counter() - started)

        def encode_png() -> bytes:
            buffer = io.BytesIO()
            Image.fromarray(image).save(
                buffer, format="PNG", compress_level=1
            )  # what the engine uses
            return buffer.getvalue()

        png = encode_png()
        png_times, encode_times, decode_times = [], [], []
        for _ in range(image_runs):
            started = time.perf_counter()
            data = encode_png()
            encoded = time.perf_counter()
            back = engine.request("echo", None, [png_part("image", data)])
            sent = time.perf_counter()
            with Image.open(io.BytesIO(back.parts["image"].data)) as decoded:
                decoded.load()
            done = time.perf_counter()
            encode_times.append(encoded - started)
            png_times.append(sent - encoded)
            decode_times.append(done - sent)
    array_stats = stats_ms(array_times)
    megabytes = 2 * len(array_part.data) / 2**20
    array_stats["throughput_mb_s"] = round(megabytes / (array_stats["median_ms"] / 1000), 1)
    return {
        "hello_round_trip": stats_ms(hello_times),
        "empty_echo_round_trip": stats_ms(echo_times),
        "image_array_round_trip": array_stats,
        "image_png_round_trip": stats_ms(png_times),
        "png_encode": stats_ms(encode_times),
        "png_decode": stats_ms(decode_times),
        "png_bytes": len(png),
        "array_bytes": len(array_part.data),
    }


def test_image(size: int) -> np.ndarray:
    """A photo-like test image: smooth gradients plus mild noise (PNG compresses it like a photo)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    rgb = np.stack([x, y, 0.5 + 0.5 * np.sin(6 * x + 4 * y)], axis=-1) * 200
    noise = np.random.default_rng(0).normal(0, 6, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8)


def run(args: argparse.Namespace) -> dict:
    argv = (
        shlex.split(args.engine)
        if args.engine
        else [sys.executable, "-m", "dragfu.cli.main", "serve", "--device", "cpu"]
    )
    image = test_image(args.size)
    results: dict = {
        "benchmark": "protocol",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "host": {  # `python -m bench` adds its own "machine" (CPU, torch, GPU)
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": [round(v, 2) for v in os.getloadavg()]
            if hasattr(os, "getloadavg")
            else None,
        },
        "engine": shlex.join(argv),
        "image": f"{args.size}x{args.size} RGB uint8",
    }
    for transport in [t.strip() for t in args.transports.split(",") if t.strip()]:
        if transport not in TRANSPORTS:
            raise SystemExit(f"unknown transport {transport!r}; choose from {TRANSPORTS}")
        command = argv if transport == "pipe" else ssh_like(argv)
        results[transport] = {"cold_start_to_ready": cold_start(command, args.cold_runs)}
        if not getattr(args, "cold_only", False):
            results[transport].update(warm(command, args.warm_requests, image, args.image_runs))
    return results


def main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--json", action="store_true", help="(always JSON; accepted for symmetry)")
    print(json.dumps(run(parser.parse_args(argv)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
