"""A fake engine process for plug-in tests: the real protocol server over a fake backend.

`python fake_engine.py [--resolution R] [--width W] [--fail-load] [--step-delay S] [--log FILE]` speaks the real stdio protocol
(dragfu.protocol.server) but computes nothing: the "projection" of an image is the image itself
resized to the model's W x R (W = R unless given: `--width` makes a rectangular model, as
StyleGAN-Human's R high, R/2 wide), and a "drag" returns that image with a 3x3 marker painted at every target (in
model coordinates; the server scales to and from the client's crop), in MARK_COLOR. So a test can
check where the plug-in put the targets, through every coordinate change, in milliseconds.
`--log FILE` appends what happened, one line each, flushed at once: `pid N`, `request TYPE ID
[target=T]` for every request frame the server dispatches, `step N` as each drag step ends,
`drag-end N cancelled` or `drag-end N done` (N = steps run) -- for the cancel tests.
"""

import argparse
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dragfu.errors import UnknownModelError
from dragfu.protocol import server as server_module
from dragfu.protocol.server import DragOutcome, ProjectOutcome, run_server

MARK_COLOR = (255, 0, 255)
LOG = None


def log(line):
    if LOG is not None:
        LOG.write(line + "\n")
        LOG.flush()


def log_requests():
    """Log every request frame the real server dispatches (wraps Server.dispatch)."""
    dispatch = server_module.Server.dispatch

    def logged(self, frame):
        header = frame.header
        target = f" target={header['target']}" if "target" in header else ""
        log(f"request {header.get('type')} {header.get('id')}{target}")
        return dispatch(self, frame)

    server_module.Server.dispatch = logged


@dataclass
class Progress:
    step: int
    max_steps: int
    points: list
    preview: object = None


class FakeBackend:
    def __init__(self, resolution, fail_load=False, step_delay=0.0, width=None):
        self.res = resolution
        self.width = width or resolution
        self.fail_load = fail_load
        self.step_delay = step_delay

    def info(self):
        return {"devices": [{"name": "cpu"}], "device": "cpu", "torch": "fake", "models": []}

    def load_model(self, name):
        if self.fail_load or name == "missing":
            raise UnknownModelError(f"no model named {name!r}", hint="see `dragfu models list`")
        return {"name": name}

    def image_size(self, G):
        return self.width, self.res

    def seed_ws(self, G, seed, psi):
        return np.zeros((self.res, self.width, 3), np.uint8)

    def render(self, G, ws):
        return ws

    def project(self, G, image, weight_mask, settings, callback, cancel, cache=True):
        # Like the real projection: the crop is resampled to the model's image size.
        model_image = np.asarray(Image.fromarray(np.asarray(image, np.uint8)[:, :, :3]).resize((self.width, self.res), Image.BILINEAR))
        for step in range(1, 4):
            callback(Progress(step, 3, []))
        return ProjectOutcome(G, model_image.copy(), model_image.copy(), {"psnr": 99.0})

    def drag(self, G, ws, handles, targets, *, waypoints, mask, method, max_steps, preview_every,
             callback, cancel, seed, options):  # fmt: skip
        image = np.array(ws, np.uint8)
        steps = max_steps if self.step_delay else min(max_steps, 4)
        done = 0
        try:
            for step in range(1, steps + 1):
                if cancel.is_set():
                    break
                if self.step_delay:
                    time.sleep(self.step_delay)
                done = step
                log(f"step {step}")
                self._step(image, handles, targets, step, steps, max_steps, preview_every, callback)
        finally:
            log(f"drag-end {done} {'cancelled' if cancel.is_set() else 'done'}")
        for x, y in targets:
            i, j = int(x), int(y)
            image[max(0, j - 1):j + 2, max(0, i - 1):i + 2] = MARK_COLOR
        return DragOutcome(image, ws, list(targets), steps, 0.0, 0.0, True)

    @staticmethod
    def _step(image, handles, targets, step, steps, max_steps, preview_every, callback):
        t = step / steps
        points = [(hx + (tx - hx) * t, hy + (ty - hy) * t) for (hx, hy), (tx, ty) in zip(handles, targets, strict=True)]
        preview = image if preview_every and step % preview_every == 0 else None
        callback(Progress(step, max_steps, points, preview))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--fail-load", action="store_true")
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--log", default=None, help="append requests and drag steps to this file")
    args = parser.parse_args()
    if args.log:
        global LOG
        LOG = open(args.log, "a")
        log(f"pid {os.getpid()}")
        log_requests()
    return run_server(FakeBackend(args.resolution, args.fail_load, args.step_delay, args.width), idle_timeout=60)


if __name__ == "__main__":
    sys.exit(main())
