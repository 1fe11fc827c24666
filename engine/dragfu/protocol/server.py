"""`dragfu serve`: the engine as a long-lived process speaking the stdio protocol.

Threads:
- a reader thread decodes frames from stdin (``os.read`` on the fd, so a blocked read never
  holds a Python-level stream lock at exit) and puts them in the inbox;
- the main thread dispatches: quick requests (hello, cancel, shutdown, echo) are answered at
  once; slow ones (load_model, project, drag) are queued for
- one worker thread, which runs them in order. Each job carries a ``threading.Event``; ``cancel``
  sets it, and the engine checks it every optimisation step (our progress callback checks it too).

Output: frames only, written under a lock to the original stdout fd; ``sys.stdout`` and fd 1
are pointed at stderr so a stray ``print`` (ours or a library's) can never corrupt the stream.

Life cycle: EOF on stdin lets queued work finish and then exits 0 (so ``dragfu serve < requests``
works); a broken stdout (the client went away) cancels everything and exits 0; ``shutdown``
cancels everything, answers, exits 0; ``--idle-timeout`` seconds without requests or work exits 0.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dragfu import __version__
from dragfu.errors import CancelledError, DragfuError
from dragfu.protocol import messages as m
from dragfu.protocol.frames import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    Frame,
    FrameError,
    FrameReader,
    Part,
    encode_frame,
    image_part,
    request_id_of,
)

log = logging.getLogger("dragfu.serve")

INTERNAL_HINT = "this is a bug in the engine; its log on stderr has the details"
OOM_HINT = "run the engine with --device cpu, pick a smaller model, or close other GPU programs"
DEFAULT_IDLE_TIMEOUT = 1800.0
DEFAULT_MAX_LATENTS = 8
# How long shutdown / a vanished client waits for a cancelled request to unwind (it normally takes
# one optimisation step) before the process exits regardless.
SHUTDOWN_GRACE_SECONDS = 10.0


# ----------------------------------------------------------------------------------------------
# The engine behind the server (the real one; tests inject fakes with the same methods)


@dataclass
class DragOutcome:
    image: np.ndarray  # uint8 [H, W, 3] at the model's image size
    ws: Any
    points: list[tuple[float, float]]  # model coordinates
    steps: int
    seconds: float
    seconds_per_step: float
    converged: bool


@dataclass
class ProjectOutcome:
    generator: Any
    ws: Any
    reconstruction: np.ndarray | None  # uint8 [H, W, 3] at the model's image size
    stats: dict[str, Any] = field(default_factory=dict)


class EngineBackend:
    """Calls the real engine: dragfu.models, dragfu.project, dragfu.drag, on one device."""

    def __init__(self, device: str | None = None) -> None:
        self.device_name = device

    @property
    def device(self):
        if not hasattr(self, "_device"):
            from dragfu.device import choose_device

            self._device = choose_device(self.device_name)
        return self._device

    def info(self) -> dict[str, Any]:
        import torch

        devices = [{"name": "cpu"}]
        if torch.cuda.is_available():
            for index in range(torch.cuda.device_count()):
                props = torch.cuda.get_device_properties(index)
                devices.append(
                    {
                        "name": f"cuda:{index}",
                        "title": props.name,
                        "memory_mb": props.total_memory // 2**20,
                    }
                )
        from dragfu.device import mps_available

        if mps_available():
            devices.append({"name": "mps"})
        models = []
        try:
            from dragfu.models import registry

            for info in registry.MODELS.values():
                if getattr(info, "kind", "stylegan2") != "stylegan2":
                    continue
                try:
                    present = bool(info.present())
                except Exception:  # a broken models dir must not break hello
                    present = False
                models.append(
                    {"name": info.name, "resolution": list(info.resolution), "present": present}
                )
        except ImportError:
            pass
        return {
            "devices": devices,
            "device": str(self.device),
            "torch": torch.__version__,
            "models": models,
        }

    def load_model(self, name: str) -> Any:
        from dragfu.models import load_generator

        return load_generator(name, self.device)

    def image_size(self, G: Any) -> tuple[int, int]:
        """(width, height) of the model's images: (R, R), or (R/2, R) for StyleGAN-Human."""
        return G.image_size

    def seed_ws(self, G: Any, seed: int, psi: float) -> Any:
        from dragfu.models.seeds import ws_from_seed

        return ws_from_seed(G, seed, psi)

    def render(self, G: Any, ws: Any) -> np.ndarray:
        import torch

        from dragfu.models.seeds import to_uint8

        with torch.no_grad():
            return to_uint8(G.synthesis(ws, noise_mode="const"))

    def mean_image(self, G: Any) -> np.ndarray:
        """The model's image of its mean latent: the average subject, which alignment looks for."""
        from dragfu.photo.pipeline import mean_image

        return mean_image(G)

    def project(
        self, G, image, weight_mask, settings, callback, cancel, cache=True
    ) -> ProjectOutcome:
        """Project (any size: the projection resamples to the model itself); with ``cache``, reuse
        and fill the on-disk projection cache, so re-projecting the same crop costs a lookup."""
        from dragfu.project import ProjectionCache, project

        kwargs: dict[str, Any] = {
            "weight_mask": weight_mask, "settings": self._project_settings(settings),
            "callback": callback, "cancel": cancel,
        }  # fmt: skip
        if cache:
            projection = ProjectionCache().get_or_project(G, image, **kwargs)
        else:
            projection = project(G, image, **kwargs)
        stats: dict[str, Any] = {
            name: round(float(getattr(projection, key)), 4)
            for key, name in (("psnr", "psnr"), ("ssim", "ssim"), ("seconds", "projection_seconds"))
            if isinstance(getattr(projection, key, None), int | float)
        }
        stats["cached"] = bool(getattr(projection, "cached", False))
        reconstruction = getattr(projection, "reconstruction", None)
        generator = getattr(projection, "generator", None) or G
        return ProjectOutcome(generator, projection.ws, reconstruction, stats)

    @staticmethod
    def _project_settings(settings: dict[str, Any]) -> Any:
        """The request's ``settings`` object -> ProjectSettings (same field names)."""
        from dragfu.project import ProjectSettings

        if not settings:
            return None
        try:
            return ProjectSettings(**settings)
        except TypeError as error:
            raise m.ProtocolError("bad_request", f"bad projection 'settings': {error}") from None

    def drag(self, G, ws, handles, targets, *, waypoints, mask, method, max_steps, preview_every,
             callback, cancel, seed, options) -> DragOutcome:  # fmt: skip
        from dragfu.drag import DragSettings, drag

        # Extra drag settings by name (lr, r1, r2, lambda_fixed, stop_distance, precision, ...).
        reserved = {"method", "max_steps", "preview_every"}
        known = {f.name for f in dataclasses.fields(DragSettings)} - reserved
        unknown = sorted(set(options) - known)
        if unknown:
            raise m.ProtocolError(
                "bad_request", f"unknown drag option(s) {unknown}; known: {sorted(known)}"
            )
        result = drag(
            G, ws, handles, targets, waypoints=waypoints, mask=mask, method=method, max_steps=max_steps,
            preview_every=preview_every, callback=callback, cancel=cancel, seed=seed, **options,
        )  # fmt: skip
        return DragOutcome(
            image=np.asarray(result.image),
            ws=result.ws,
            points=[(float(x), float(y)) for x, y in result.points],
            steps=int(result.steps),
            seconds=float(result.seconds),
            seconds_per_step=float(result.seconds_per_step),
            converged=bool(result.converged),
        )


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, MemoryError):
        return True
    try:
        import torch

        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
    except (ImportError, AttributeError):
        pass
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


# ----------------------------------------------------------------------------------------------
# The server


@dataclass
class Latent:
    """A point in latent space the client can drag from: the generator to use, ws, coordinates."""

    model: str
    generator: Any
    ws: Any
    size: tuple[int, int]  # (width, height) of the client's image these coordinates refer to
    frame: Any = None  # dragfu.photo.PhotoFrame of a projected image; None for a seed's latent


@dataclass
class Job:
    request: Any
    cancel: threading.Event = field(default_factory=threading.Event)


class _Stop(Exception):
    """Internal: the output pipe is gone; unwind the worker."""


class Server:
    def __init__(
        self,
        backend: Any,
        write: Callable[[bytes], Any],
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        default_model: str = "toy",
        max_latents: int = DEFAULT_MAX_LATENTS,
    ) -> None:
        self.backend = backend
        self._write = write
        self.max_payload_bytes = max_payload_bytes
        self.idle_timeout = idle_timeout
        self.default_model = default_model
        self.max_latents = max_latents
        self.models: dict[str, Any] = {}
        self.latents: collections.OrderedDict[str, Latent] = collections.OrderedDict()
        self.mean_images: dict[str, np.ndarray | None] = {}
        self._next_latent = 0
        self._write_lock = threading.Lock()
        self._jobs_lock = threading.Lock()
        self._queued: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._work_ready = threading.Condition(self._jobs_lock)
        self._inbox: queue.Queue = queue.Queue()
        self._broken = False
        self._stopping = False
        self._last_activity = time.monotonic()

    # -- output --------------------------------------------------------------------------------

    def send(self, header: dict[str, Any], parts: list[Part] | None = None) -> None:
        """Write one frame; a vanished client marks the server broken (it then shuts down)."""
        data = encode_frame(header, parts)
        with self._write_lock:
            if self._broken:
                raise _Stop()
            try:
                self._write(data)
            except (BrokenPipeError, ConnectionError, OSError, ValueError) as error:
                log.info("client went away (%s): stopping", error)
                self._broken = True
                self._cancel_all()
                self._inbox.put(("stop", None))
                raise _Stop() from None

    def send_error(self, request_id: Any, code: str, message: str, hint: str = "") -> None:
        self.send(m.error_header(request_id, code, message, hint))

    # -- main loop -----------------------------------------------------------------------------

    def serve(self, read: Callable[[int], bytes]) -> int:
        """Run until EOF, shutdown, a broken pipe or the idle timeout; returns the exit code."""
        reader = threading.Thread(
            target=self._read_loop, args=(read,), name="dragfu-reader", daemon=True
        )
        worker = threading.Thread(target=self._work_loop, name="dragfu-worker", daemon=True)
        reader.start()
        worker.start()
        drain = True  # at EOF, queued work still runs and answers
        try:
            while True:
                try:
                    kind, item = self._inbox.get(timeout=self._poll_interval())
                except queue.Empty:
                    if self._idle_expired():
                        log.info("idle for %.0f s: exiting", self.idle_timeout)
                        break
                    continue
                self._last_activity = time.monotonic()
                if kind == "eof":
                    log.info("end of input")
                    break
                if kind == "stop":
                    drain = False
                    break
                if kind == "frame_error":
                    self.send_error(item.request_id, item.code, item.message)
                    if item.fatal:
                        break
                    continue
                try:
                    outcome = self.dispatch(item)
                except _Stop:
                    raise
                except Exception as error:  # a bug in a quick request must not kill the server
                    log.exception("request %r failed", item.id)
                    message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                    self.send_error(request_id_of(item.header), "internal", message, INTERNAL_HINT)
                    continue
                if outcome == "shutdown":
                    drain = False
                    break
        except _Stop:
            drain = False
        if not drain:
            self._cancel_all()
        self._stop_worker(worker, None if drain else SHUTDOWN_GRACE_SECONDS)
        return 0

    def _poll_interval(self) -> float:
        return 0.5 if self.idle_timeout > 0 else 3600.0

    def _idle_expired(self) -> bool:
        if self.idle_timeout <= 0:
            return False
        with self._jobs_lock:
            busy = self._running is not None or bool(self._queued)
        if busy:
            self._last_activity = time.monotonic()
            return False
        return time.monotonic() - self._last_activity >= self.idle_timeout

    def _read_loop(self, read: Callable[[int], bytes]) -> None:
        reader = FrameReader(read, max_payload_bytes=self.max_payload_bytes)
        while True:
            try:
                frame = reader.read_frame()
            except FrameError as error:
                self._inbox.put(("frame_error", error))
                if error.fatal:
                    return
                continue
            except OSError as error:  # stdin itself failed: same as the client going away
                log.info("reading stdin failed (%s)", error)
                self._inbox.put(("eof", None))
                return
            if frame is None:
                self._inbox.put(("eof", None))
                return
            self._inbox.put(("frame", frame))

    def _stop_worker(self, worker: threading.Thread, timeout: float | None) -> None:
        with self._work_ready:
            self._stopping = True
            self._work_ready.notify_all()
        worker.join(timeout)
        if worker.is_alive():
            log.warning(
                "the running request did not stop within %.0f s; exiting anyway", timeout or 0
            )

    # -- dispatch (main thread) ----------------------------------------------------------------

    def dispatch(self, frame: Frame) -> str | None:
        """Handle one request frame; returns "shutdown" when the server should stop."""
        try:
            request = m.parse_request(frame)
        except m.ProtocolError as error:
            self.send_error(error.request_id, error.code, str(error), error.hint)
            return None
        if isinstance(request, m.Hello):
            self._hello(request)
        elif isinstance(request, m.Cancel):
            cancelled = self.cancel(request.target)
            self.send(m.result_header(request.id, "cancel", cancelled=cancelled))
        elif isinstance(request, m.Echo):
            parts = list(request.parts.values())
            self.send(m.result_header(request.id, "echo"), parts)
        elif isinstance(request, m.Shutdown):
            self._cancel_all()
            self._wait_idle()
            self.send(m.result_header(request.id, "shutdown"))
            return "shutdown"
        else:
            with self._work_ready:
                self._queued.append(Job(request))
                self._work_ready.notify()
        return None

    def _hello(self, request: m.Hello) -> None:
        try:
            info = self.backend.info()
        except DragfuError as error:
            self.send_error(request.id, error.code, str(error), error.hint)
            return
        self.send(
            m.result_header(
                request.id,
                "hello",
                protocol=PROTOCOL_VERSION,
                protocols=list(SUPPORTED_PROTOCOL_VERSIONS),
                engine="dragfu",
                engine_version=__version__,
                python=sys.version.split()[0],
                pid=os.getpid(),
                max_payload_bytes=self.max_payload_bytes,
                loaded_models=sorted(self.models),
                **info,
            )
        )

    def cancel(self, target: Any = None) -> list[Any]:
        """Cancel the running and queued jobs with request id ``target`` (None: all)."""
        cancelled = []
        with self._jobs_lock:
            jobs = list(self._queued) + ([self._running] if self._running else [])
            for job in jobs:
                if target is None or job.request.id == target:
                    job.cancel.set()
                    cancelled.append(job.request.id)
        return cancelled

    def _cancel_all(self) -> None:
        self.cancel(None)

    def _wait_idle(self, timeout: float = SHUTDOWN_GRACE_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        with self._work_ready:
            while (self._running is not None or self._queued) and time.monotonic() < deadline:
                self._work_ready.wait(0.05)

    # -- worker --------------------------------------------------------------------------------

    def _work_loop(self) -> None:
        while True:
            with self._work_ready:
                while not self._queued and not self._stopping:
                    self._work_ready.wait()
                if not self._queued:
                    return  # stopping and nothing left
                job = self._queued.popleft()
                self._running = job
            try:
                self._run_job(job)
            except _Stop:
                pass
            finally:
                with self._work_ready:
                    self._running = None
                    self._last_activity = time.monotonic()
                    self._work_ready.notify_all()

    def _run_job(self, job: Job) -> None:
        request = job.request
        rid = request.id
        try:
            if job.cancel.is_set():
                raise CancelledError("cancelled before it started")
            if isinstance(request, m.LoadModel):
                self._load_model(job)
            elif isinstance(request, m.Project):
                self._project(job)
            elif isinstance(request, m.Drag):
                self._drag(job)
            else:  # pragma: no cover - dispatch only queues the three above
                raise m.ProtocolError("internal", f"cannot run {type(request).__name__}")
        except _Stop:
            raise
        except CancelledError as error:
            self.send_error(rid, "cancelled", str(error) or "cancelled")
        except m.ProtocolError as error:
            self.send_error(rid, error.code, str(error), error.hint)
        except DragfuError as error:
            self.send_error(rid, error.code, str(error), error.hint)
        except Exception as error:
            if is_out_of_memory(error):
                self._free_memory()
                self.send_error(
                    rid, "out_of_memory", f"out of memory: {error}".splitlines()[0][:300], OOM_HINT
                )
            else:
                log.exception("request %r failed", rid)
                message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                self.send_error(rid, "internal", message, INTERNAL_HINT)

    def _free_memory(self) -> None:
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass

    def _check_cancel(self, job: Job) -> None:
        if self._broken:
            raise _Stop()
        if job.cancel.is_set():
            raise CancelledError("cancelled by the client")

    def _model(self, name: str | None, job: Job) -> tuple[str, Any]:
        name = name or self.default_model
        if name not in self.models:
            self.send(m.progress_header(job.request.id, "load", 0, 1, model=name))
            self._check_cancel(job)
            self.models[name] = self.backend.load_model(name)
        return name, self.models[name]

    def _store_latent(self, prefix: str, latent: Latent) -> str:
        self._next_latent += 1
        latent_id = f"{prefix}{self._next_latent}"
        self.latents[latent_id] = latent
        while len(self.latents) > self.max_latents:
            dropped, _ = self.latents.popitem(last=False)
            log.info("forgetting latent %s (keeping %d)", dropped, self.max_latents)
        return latent_id

    def _load_model(self, job: Job) -> None:
        request: m.LoadModel = job.request
        start = time.perf_counter()
        name, G = self._model(request.model, job)
        model_width, model_height = self.backend.image_size(G)
        self.send(
            m.result_header(
                request.id, "load_model", model=name, resolution=[model_width, model_height],
                seconds=round(time.perf_counter() - start, 4),
            )
        )  # fmt: skip

    def _mean_image(self, name: str, G: Any) -> np.ndarray | None:
        if name not in self.mean_images:
            mean_image = getattr(self.backend, "mean_image", None)
            self.mean_images[name] = None if mean_image is None else mean_image(G)
        return self.mean_images[name]

    def _project(self, job: Job) -> None:
        from dragfu.photo import PhotoFrame, choose_alignment

        request: m.Project = job.request
        start = time.perf_counter()
        name, G = self._model(request.model, job)
        model_width, model_height = self.backend.image_size(G)
        height, width = request.image.shape[:2]
        alignment, notes = choose_alignment(
            request.image, (model_width, model_height), request.alignment,
            request.align_points, lambda: self._mean_image(name, G),
        )  # fmt: skip
        align_seconds = time.perf_counter() - start
        frame = PhotoFrame(request.image, alignment, before=None)

        def on_progress(progress: Any) -> None:
            self._check_cancel(job)
            step = int(getattr(progress, "step", 0))
            total = int(getattr(progress, "total", 0))
            fields: dict[str, Any] = {}
            phase = getattr(progress, "stage", None)  # the projection's own stage: w, w+, tune
            if isinstance(phase, str):
                fields["phase"] = phase
            loss = getattr(progress, "loss", None)
            if isinstance(loss, int | float) and math.isfinite(loss):
                fields["loss"] = round(float(loss), 6)
            parts = None
            preview = getattr(progress, "preview", None)
            if request.preview_every and preview is not None and step % request.preview_every == 0:
                parts = [image_part("preview", np.asarray(preview), request.output)]
                fields["space"] = "model"
            self.send(m.progress_header(request.id, "project", step, total, **fields), parts)

        # The model sees the aligned frame of the image, at its own size.
        outcome = self.backend.project(
            G,
            frame.model_image(),
            frame.model_weight(request.weight_mask),
            request.settings,
            on_progress,
            job.cancel,
            request.cache,
        )
        self._check_cancel(job)
        frame.before = outcome.reconstruction
        if frame.before is None:
            frame.before = self.backend.render(outcome.generator, outcome.ws)
        latent_id = self._store_latent(
            "p", Latent(name, outcome.generator, outcome.ws, (width, height), frame)
        )
        # The projection as it would sit in the image (the model's frame put back).
        shown = frame.paste(frame.before, None, "render").image
        fields = {
            **outcome.stats,  # the backend's numbers first: the protocol's own fields win
            "projection_id": latent_id, "latent_id": latent_id, "model": name,
            "size": [width, height], "model_size": [model_width, model_height],
            "alignment": alignment.to_dict(), "align_seconds": round(align_seconds, 4),
            "seconds": round(time.perf_counter() - start, 4),
        }  # fmt: skip
        if notes:
            fields["notes"] = notes
        self.send(
            m.result_header(request.id, "project", **fields),
            [image_part("image", shown, request.output)],
        )

    def _drag(self, job: Job) -> None:
        request: m.Drag = job.request
        start = time.perf_counter()
        rid = request.id
        frame = None
        if request.latent_id is not None:
            latent = self.latents.get(request.latent_id)
            if latent is None:
                raise m.ProtocolError(
                    "unknown_latent", f"no projection or latent {request.latent_id!r} in this engine",
                    hint="project the image again (the engine keeps the latest few, and forgets all when it exits)",
                )  # fmt: skip
            self.latents.move_to_end(request.latent_id)
            name, G, ws, size = latent.model, latent.generator, latent.ws, latent.size
            frame = latent.frame
            if request.model is not None and request.model != latent.model:
                raise m.ProtocolError(
                    "bad_request",
                    f"latent {request.latent_id!r} belongs to model {latent.model!r}, not {request.model!r}",
                )
            model_width, model_height = self.backend.image_size(G)
        else:
            name, G = self._model(request.model, job)
            model_width, model_height = self.backend.image_size(G)
            ws = self.backend.seed_ws(G, request.seed, request.psi)
            size = (model_width, model_height)  # the model's own image
        width, height = size
        m.check_points_inside(request.handles, size, "handles", rid)
        m.check_points_inside(request.targets, size, "targets", rid)
        for i, points in enumerate(request.waypoints or []):
            m.check_points_inside(points, size, f"waypoints[{i}]", rid)
        mask = request.mask
        if mask is not None:
            if mask.shape != (height, width):
                raise m.ProtocolError(
                    "bad_request",
                    f"'mask' is {mask.shape[1]}x{mask.shape[0]} but the image it refers to is {width}x{height}",
                )
            if not mask.any():
                raise m.ProtocolError(
                    "bad_request",
                    "'mask' is empty: nothing may move",
                    hint="select a region, or send no mask",
                )
        model_mask = None
        if mask is not None:
            model_mask = frame.model_mask(mask) if frame is not None else mask
            if not model_mask.any():
                raise m.ProtocolError(
                    "bad_request",
                    "'mask': the movable region lies outside the region the model sees",
                    hint="select the region around the drag points",
                )

        # Client coordinates <-> model coordinates: through the photo's alignment, or the identity
        # for a seed's own image.
        def to_model(points, what="point"):
            if frame is None:
                return [(float(x), float(y)) for x, y in points]
            try:
                return frame.to_model(points, what)
            except DragfuError as error:
                raise m.ProtocolError("invalid_points", str(error)) from None

        def to_client(points):
            if frame is None:
                return [(float(x), float(y)) for x, y in points]
            return frame.to_client(points)

        def edited(image: np.ndarray) -> tuple[np.ndarray, list[int], dict[str, Any]]:
            """The client's image with the model's image applied; the box that changed."""
            if frame is None:
                return image, [0, 0, width, height], {}
            edit = frame.paste(image, mask, request.paste)
            x0, y0, x1, y1 = edit.box or (0, 0, width, height)
            return edit.image[y0:y1, x0:x1], [x0, y0, x1 - x0, y1 - y0], edit.stats

        targets = request.targets
        model_handles = to_model(request.handles, "handle")
        model_targets = to_model(targets, "target")
        for i, ((hx, hy), (tx, ty)) in enumerate(zip(model_handles, model_targets, strict=True)):
            if math.hypot(hx - tx, hy - ty) < 0.5:
                raise m.ProtocolError(
                    "invalid_points",
                    f"drag {i + 1}: the handle is already at its target (less than half a model pixel away)",
                )

        def on_progress(progress: Any) -> None:
            self._check_cancel(job)
            points = to_client(getattr(progress, "points", []) or [])
            distances = [
                math.hypot(px - tx, py - ty)
                for (px, py), (tx, ty) in zip(points, targets, strict=False)
            ]
            parts, fields = None, {}
            preview = getattr(progress, "preview", None)
            if preview is not None:
                pixels, box, _ = edited(np.asarray(preview))
                parts = [image_part("preview", pixels, request.output)]
                fields["box"] = box
            self.send(
                m.progress_header(
                    rid, "drag", int(getattr(progress, "step", 0)),
                    int(getattr(progress, "max_steps", request.max_steps)),
                    points=[[round(x, 3), round(y, 3)] for x, y in points],
                    distances=[round(d, 3) for d in distances], **fields,
                ),
                parts,
            )  # fmt: skip

        outcome = self.backend.drag(
            G, ws, model_handles, model_targets,
            waypoints=[to_model(p, "waypoint") for p in request.waypoints] if request.waypoints is not None else None,
            mask=model_mask, method=request.method, max_steps=request.max_steps,
            preview_every=request.preview_every, callback=on_progress, cancel=job.cancel,
            seed=request.drag_seed, options=request.options,
        )  # fmt: skip
        self._check_cancel(job)
        paste_start = time.perf_counter()
        pixels, box, paste_stats = edited(np.asarray(outcome.image))
        paste_seconds = time.perf_counter() - paste_start
        encode_start = time.perf_counter()
        part = image_part("image", pixels, request.output)
        encode_seconds = time.perf_counter() - encode_start
        next_frame = None
        if frame is not None:
            whole = frame.photo.copy()
            whole[box[1] : box[1] + box[3], box[0] : box[0] + box[2]] = pixels
            next_frame = dataclasses.replace(frame, photo=whole, before=np.asarray(outcome.image))
        latent_id = self._store_latent("l", Latent(name, G, outcome.ws, size, next_frame))
        points = to_client(outcome.points)
        extra = {"paste": request.paste if frame is not None else "model"}
        if "new_content_share" in paste_stats:
            extra["new_content_share"] = paste_stats["new_content_share"]
        self.send(
            m.result_header(
                rid, "drag", latent_id=latent_id, model=name, size=[width, height],
                model_size=[model_width, model_height], box=box,
                points=[[round(x, 3), round(y, 3)] for x, y in points],
                distances=[round(math.hypot(px - tx, py - ty), 3) for (px, py), (tx, ty) in zip(points, targets, strict=False)],
                steps=outcome.steps, converged=outcome.converged, **extra,
                timings={
                    "drag_seconds": round(outcome.seconds, 4),
                    "seconds_per_step": round(outcome.seconds_per_step, 5),
                    "paste_seconds": round(paste_seconds, 4),
                    "encode_seconds": round(encode_seconds, 4),
                    "total_seconds": round(time.perf_counter() - start, 4),
                },
            ),
            [part],
        )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Process plumbing


def claim_stdio() -> tuple[Callable[[int], bytes], Callable[[bytes], None]]:
    """Take fd 0/1 for frames and make sure nothing else can write to the frame stream.

    The original stdout is duplicated for our frames; fd 1 and ``sys.stdout`` then point at stderr,
    so prints from us, from libraries and from C code all land in the log.
    """
    in_fd = sys.stdin.fileno() if sys.stdin is not None else 0
    out_fd = os.dup(1)
    try:
        os.dup2(2, 1)
    except OSError:  # no usable stderr (e.g. pythonw on Windows): stray output goes nowhere
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.close(devnull)
    sys.stdout = sys.stderr if sys.stderr is not None else open(os.devnull, "w")
    if sys.platform == "win32":  # pragma: no cover - binary pipes on Windows
        import msvcrt

        msvcrt.setmode(in_fd, os.O_BINARY)
        msvcrt.setmode(out_fd, os.O_BINARY)

    def read(n: int) -> bytes:
        return os.read(in_fd, n)

    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(out_fd, view)
            view = view[written:]

    return read, write


def run_server(
    backend: Any,
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    default_model: str = "toy",
    max_latents: int = DEFAULT_MAX_LATENTS,
    preload: list[str] | None = None,
) -> int:
    """Serve on this process's stdin/stdout (what `dragfu serve` runs)."""
    read, write = claim_stdio()
    server = Server(
        backend, write, max_payload_bytes=max_payload_bytes, idle_timeout=idle_timeout,
        default_model=default_model, max_latents=max_latents,
    )  # fmt: skip
    for name in preload or []:
        log.info("preloading model %s", name)
        server.models[name] = backend.load_model(name)
    log.info(
        "dragfu %s serving protocol %d on stdio (pid %d)",
        __version__,
        PROTOCOL_VERSION,
        os.getpid(),
    )
    code = server.serve(read)
    if any(t.name == "dragfu-worker" and t.is_alive() for t in threading.enumerate()):
        # A request that ignored its cancel flag: do not let interpreter shutdown wait on it.
        sys.stderr.flush()
        os._exit(code)
    return code
