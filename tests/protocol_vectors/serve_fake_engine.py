"""The tests' one fake engine backend, and a fake `dragfu serve` process built on it.

The real server code (frames, threads, stdio plumbing) runs unchanged; only the maths behind it is
replaced, so the tests can script slow steps, failures, out-of-memory and noisy libraries.
``FakeBackend`` implements ``dragfu.protocol.backend.Backend`` (tests/test_serve.py checks it).

Two kinds of pictures:
- default (the server tests): handles move 1 model pixel per step; images encode the step count;
- ``photo`` (the plug-in tests, tests/gimp2_shim/fake_engine.py): the "projection" of an image is
  the image itself resized to the model's size, and a "drag" returns it with a 3x3 MARK_COLOR
  marker painted at every target (model coordinates), so a test can check where the plug-in put
  the targets, through every coordinate change, in milliseconds.

Run as a process: `python tests/protocol_vectors/serve_fake_engine.py [--step-seconds S] [--noisy]
[--photo] [--fail-load] [--resolution R] [--width W]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Run as a process by a client that drops PYTHONPATH (as the plug-in does): the checkout's engine.
_ENGINE = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "engine"
)
if __name__ == "__main__" and os.path.isdir(os.path.join(_ENGINE, "dragfu")):
    sys.path.insert(0, _ENGINE)

from dragfu.errors import CancelledError, CheckpointError, UnknownModelError  # noqa: E402
from dragfu.protocol.backend import DragOutcome, ProjectOutcome  # noqa: E402

MARK_COLOR = (255, 0, 255)


@dataclass
class FakeG:
    name: str
    img_resolution: int  # the height, as in a real generator
    img_width: int

    @property
    def img_height(self) -> int:
        return self.img_resolution


@dataclass
class Progress:
    step: int
    max_steps: int
    points: list
    distances: list
    preview: np.ndarray | None = None
    pins: list | None = None


@dataclass
class ProjectProgress:
    stage: str
    step: int
    total: int
    loss: float


class FakeBackend:
    """Handles move 1 model pixel per step towards their targets; images encode the step count."""

    def __init__(
        self,
        resolution: int = 16,
        step_seconds: float = 0.0,
        noisy: bool = False,
        width: int | None = None,  # a rectangular model: `width` x `resolution` images
        *,
        photo: bool = False,  # projections are the image itself, drags paint marks at targets
        fail_load: bool = False,  # every model is unknown
    ) -> None:
        self.photo = photo
        self.fail_load = fail_load
        self.model_resolution = resolution
        self.model_width = width or resolution
        self.step_seconds = step_seconds
        self.noisy = noisy
        self.calls: list[tuple[str, dict]] = []
        # What happened, one line each (the cancel tests read it): set to a writer to log.
        self.log: Callable[[str], None] = lambda line: None
        self.steps_run = 0
        self.drag_started = threading.Event()

    def info(self) -> dict:
        return {
            "devices": [{"name": "cpu"}],
            "device": "cpu",
            "torch": "fake",
            "models": [
                {
                    "name": "fake",
                    "resolution": [self.model_width, self.model_resolution],
                    "present": True,
                }
            ],
        }

    def load_model(self, name: str) -> FakeG:
        self.calls.append(("load_model", {"name": name}))
        if self.noisy:
            print("a library printing to stdout")  # must end up on stderr, not in the frames
            os.write(1, b"C code writing to fd 1\n")
        if name == "missing" or self.fail_load:
            raise UnknownModelError(
                f"no model named {name!r}", hint="`dragfu models list` shows every model name"
            )
        if name == "corrupt":
            raise CheckpointError(f"model file {name}.safetensors is truncated")
        if name == "huge":
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return FakeG(name, self.model_resolution, self.model_width)

    def image_size(self, G: FakeG) -> tuple[int, int]:
        return G.img_width, G.img_height

    def seed_ws(self, G: FakeG, seed: int, psi: float) -> np.ndarray:
        if self.photo:  # the latent is the picture itself
            return np.zeros((G.img_height, G.img_width, 3), np.uint8)
        return np.full((1, 2, 4), float(seed) * psi, dtype=np.float32)

    def render(self, G: FakeG, ws) -> np.ndarray:
        shape = (G.img_height, G.img_width, 3)
        ws = np.asarray(ws)
        return ws.astype(np.uint8) if ws.shape == shape else np.zeros(shape, np.uint8)

    def mean_image(self, G: FakeG) -> None:
        return None  # no average subject: "auto" alignment falls back to the crop

    def project(
        self, G, image, weight_mask, settings, callback, cancel, cache=True
    ) -> ProjectOutcome:
        self.calls.append(
            (
                "project",
                {
                    "shape": image.shape,
                    "weight": None if weight_mask is None else weight_mask.shape,
                    "settings": settings,
                    "cache": cache,
                },
            )
        )
        if self.photo:
            return self._photo_project(G, image, callback, cancel)
        total = int(settings.get("steps", 3))
        for step in range(1, total + 1):
            if cancel.is_set():
                raise CancelledError("projection cancelled")
            time.sleep(self.step_seconds)
            callback(ProjectProgress("w", step, total, 1.0 / step))
        reconstruction = np.zeros((G.img_height, G.img_width, 3), dtype=np.uint8)
        reconstruction[..., 0] = 200
        return ProjectOutcome(
            G,
            np.zeros((1, 2, 4), dtype=np.float32),
            reconstruction,
            {"psnr": 30.0, "ssim": 0.9, "cached": False},
        )

    def drag(
        self,
        G,
        ws,
        handles,
        targets,
        *,
        waypoints,
        mask,
        method,
        max_steps,
        preview_every,
        callback,
        cancel,
        seed,
        options,
        stop=None,
        pins=None,
        preview_ready=None,
    ) -> DragOutcome:
        self.calls.append(
            (
                "drag",
                {
                    "handles": handles,
                    "targets": targets,
                    "waypoints": waypoints,
                    "mask": None if mask is None else mask.shape,
                    "method": method,
                    "ws": ws,
                    "pins": pins,
                    "preview_every": preview_every,
                    "options": options,
                },
            )
        )
        self.preview_ready = preview_ready or (lambda: True)  # the server's pacing of previews
        if self.photo:
            return self._photo_drag(
                G, ws, handles, targets, preview_every, max_steps, callback, cancel, stop, pins
            )
        if method == "crash":
            raise ValueError("fake engine bug\nsecond line of the message")
        if method == "stubborn":  # ignores its cancel flag and sends nothing: only a kill stops it
            time.sleep(60)
        if method == "oom":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        self.drag_started.set()
        points = [np.array(p, dtype=float) for p in handles]
        goals = [np.array(t, dtype=float) for t in targets]
        shape = (G.img_height, G.img_width, 3)
        step, stopped = 0, False
        for step in range(max_steps + 1):
            if cancel.is_set():
                raise CancelledError(f"drag cancelled at step {step}")
            distances = [float(np.linalg.norm(g - p)) for p, g in zip(points, goals, strict=True)]
            preview = None
            if preview_every and step % preview_every == 0 and self.preview_ready():
                preview = np.full(shape, step % 256, dtype=np.uint8)
            callback(
                Progress(step, max_steps, [tuple(p) for p in points], distances, preview, pins)
            )
            if max(distances) <= 0.5 or step == max_steps:
                break
            if stop is not None and stop.is_set():
                stopped = True
                break
            time.sleep(self.step_seconds)
            self.steps_run += 1
            for i, (p, g) in enumerate(zip(points, goals, strict=True)):
                d = g - p
                n = np.linalg.norm(d)
                points[i] = g if n <= 1 else p + d / n
        image = np.zeros(shape, dtype=np.uint8)
        image[..., 1] = min(step, 255)
        return DragOutcome(
            image,
            np.asarray(ws) + 1,
            [tuple(p) for p in points],
            step,
            0.01 * step,
            0.01,
            step < max_steps and not stopped,
            stopped,
            list(pins or []),
        )

    # -- photo pictures ---------------------------------------------------------------------------

    def _photo_project(self, G: FakeG, image, callback, cancel) -> ProjectOutcome:
        from PIL import Image

        # Like the real projection: the crop is resampled to the model's image size.
        size = (G.img_width, G.img_height)
        model_image = np.asarray(
            Image.fromarray(np.asarray(image, np.uint8)[:, :, :3]).resize(size, Image.BILINEAR)
        )
        for step in range(1, 4):
            if cancel.is_set():
                raise CancelledError("projection cancelled")
            callback(ProjectProgress("w", step, 3, 1.0 / step))
        return ProjectOutcome(G, model_image.copy(), model_image.copy(), {"psnr": 99.0})

    def _photo_drag(
        self, G, ws, handles, targets, preview_every, max_steps, callback, cancel, stop, pins
    ) -> DragOutcome:
        """Handles move linearly from start to target over the steps; the marks go where the
        handles ended: at the targets, or, after a `stop`, where they had got to."""
        image = np.array(self.render(G, ws), np.uint8)
        steps = max_steps if self.step_seconds else min(max_steps, 4)
        done, stopped, points = 0, False, list(handles)
        try:
            for step in range(1, steps + 1):
                if cancel.is_set():
                    raise CancelledError(f"drag cancelled at step {step}")
                if stop is not None and stop.is_set():
                    stopped = True
                    break
                time.sleep(self.step_seconds)
                done = step
                self.log(f"step {step}")
                t = step / steps
                points = [
                    (hx + (tx - hx) * t, hy + (ty - hy) * t)
                    for (hx, hy), (tx, ty) in zip(handles, targets, strict=True)
                ]
                preview = None
                if preview_every and step % preview_every == 0 and self.preview_ready():
                    preview = image.copy()
                    for x, y in points:
                        i, j = int(x), int(y)
                        preview[max(0, j - 1) : j + 2, max(0, i - 1) : i + 2] = MARK_COLOR
                callback(Progress(step, max_steps, points, [], preview, pins))
        finally:
            state = "cancelled" if cancel.is_set() else ("stopped" if stopped else "done")
            self.log(f"drag-end {done} {state}")
        for x, y in points:
            i, j = int(x), int(y)
            image[max(0, j - 1) : j + 2, max(0, i - 1) : i + 2] = MARK_COLOR
        return DragOutcome(
            image, ws, list(points), done, 0.0, 0.0, not stopped, stopped, list(pins or [])
        )


def main(argv: list[str] | None = None) -> int:
    import logging

    from dragfu.protocol.server import run_server

    parser = argparse.ArgumentParser()
    parser.add_argument("--step-seconds", type=float, default=0.0)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--width", type=int, default=None, help="rectangular: WIDTH x RESOLUTION")
    parser.add_argument("--noisy", action="store_true")
    parser.add_argument(
        "--photo", action="store_true", help="projections = the image, drags mark targets"
    )
    parser.add_argument("--fail-load", action="store_true", help="every model is unknown")
    parser.add_argument("--idle-timeout", type=float, default=0.0)
    parser.add_argument("--max-payload-bytes", type=int, default=1 << 20)
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.INFO)
    backend = FakeBackend(
        args.resolution,
        args.step_seconds,
        args.noisy,
        args.width,
        photo=args.photo,
        fail_load=args.fail_load,
    )
    return run_server(
        backend, idle_timeout=args.idle_timeout, max_payload_bytes=args.max_payload_bytes
    )


if __name__ == "__main__":
    sys.exit(main())
