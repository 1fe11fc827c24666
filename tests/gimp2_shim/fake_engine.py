"""A fake engine process for plug-in tests: the real protocol server over the tests' one fake
backend (tests/protocol_vectors/serve_fake_engine.py) in its ``photo`` mode: the "projection" of
an image is the image itself resized to the model's W x R (W = R unless given: `--width` makes a
rectangular model, as StyleGAN-Human's R high, R/2 wide), and a "drag" returns it with a 3x3
marker at every target in MARK_COLOR, so a test can check where the plug-in put the targets.

`python fake_engine.py [--resolution R] [--width W] [--fail-load] [--step-delay S] [--log FILE]
[--socket PATH]` (`--socket`: as the warm engine, `dragfu serve --socket`)
`--log FILE` appends what happened, one line each, flushed at once: `pid N`, `request TYPE ID
[target=T] [pins=[[x, y], ...]]` for every request frame the server dispatches, `step N` as each drag step ends,
`drag-end N cancelled` or `drag-end N done` (N = steps run) -- for the cancel tests.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The fake backend beside this file (a copy in a test's work folder) or in the checkout's
# tests/protocol_vectors; the checkout's engine first (the plug-in starts engines without PYTHONPATH).
ENGINE = os.path.join(os.path.dirname(os.path.dirname(HERE)), "engine")
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "protocol_vectors")]
if os.path.isdir(os.path.join(ENGINE, "dragfu")):
    sys.path.insert(0, ENGINE)

from serve_fake_engine import MARK_COLOR, FakeBackend  # noqa: E402

from dragfu.protocol.stdio import run_server  # noqa: E402

__all__ = ["MARK_COLOR", "main"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--fail-load", action="store_true")
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--log", default=None, help="append requests and drag steps to this file")
    parser.add_argument("--socket", default=None, help="serve as a warm engine on this socket")
    args = parser.parse_args()
    backend = FakeBackend(
        args.resolution, args.step_delay, width=args.width, photo=True, fail_load=args.fail_load
    )
    if args.log:
        backend.log = log_to(args.log)
    return run_server(backend, idle_timeout=60, socket_path=args.socket)


def log_to(path):
    """A line writer on path (flushed at once) that also logs every request the server dispatches."""
    from dragfu.protocol import server as server_module

    out = open(path, "a")

    def log(line):
        out.write(line + "\n")
        out.flush()

    dispatch = server_module.Server.dispatch

    def logged(self, frame):
        header = frame.header
        target = " target=%s" % header["target"] if "target" in header else ""
        pins = f" pins={header['pins']}" if header.get("pins") else ""
        log("request %s %s%s" % (header.get("type"), header.get("id"), target) + pins)
        return dispatch(self, frame)

    server_module.Server.dispatch = logged
    log("pid %d" % os.getpid())
    return log


if __name__ == "__main__":
    sys.exit(main())
