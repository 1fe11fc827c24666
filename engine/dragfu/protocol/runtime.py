"""The server's runtime: jobs, threads, the queue, sending frames, the life cycle.

Threads:
- a reader thread decodes frames from the input (``os.read`` on the fd, so a blocked read never
  holds a Python-level stream lock at exit) and puts them in the inbox;
- the main thread dispatches: quick requests (hello, cancel, shutdown, echo) are answered at
  once; slow ones (load_model, project, drag) are queued for
- one worker thread, which runs them in order. Each job carries a ``threading.Event``; ``cancel``
  sets it, and the work checks it every optimisation step (``check_cancel`` in every progress
  report, too).

Life cycle: EOF on the input lets queued work finish and then exits 0 (so ``dragfu serve <
requests`` works); a broken output (the client went away) cancels everything and exits 0;
``shutdown`` cancels everything, answers, exits 0; ``idle_timeout`` seconds without requests or
work exits 0.

What a request does is not here: ``Runtime.hello`` and ``Runtime.run`` are the hooks that
``dragfu.protocol.handlers.Server`` fills in.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dragfu.errors import CancelledError, DragfuError
from dragfu.protocol import messages as m
from dragfu.protocol.backend import Backend
from dragfu.protocol.frames import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    Frame,
    FrameError,
    FrameReader,
    Part,
    encode_frame,
    request_id_of,
)
from dragfu.protocol.torch_backend import free_memory, is_out_of_memory

log = logging.getLogger("dragfu.serve")

INTERNAL_HINT = "this is a bug in the engine; its log on stderr has the details"
OOM_HINT = "run the engine with --device cpu, pick a smaller model, or close other GPU programs"
DEFAULT_IDLE_TIMEOUT = 1800.0
# How long shutdown / a vanished client waits for a cancelled request to unwind (it normally takes
# one optimisation step) before the process exits regardless.
SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass
class Job:
    request: Any
    cancel: threading.Event = field(default_factory=threading.Event)
    # `stop` (cancel with keep): a drag ends at its next step and answers with the state reached.
    stop: threading.Event = field(default_factory=threading.Event)


class Stop(Exception):
    """Internal: the output pipe is gone; unwind the worker."""


class Runtime:
    """Runs requests from a frame stream; subclasses say what ``hello`` and queued work do."""

    def __init__(
        self,
        backend: Backend,
        write: Callable[[bytes], Any],
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.backend = backend
        self._write = write
        self.max_payload_bytes = max_payload_bytes
        self.idle_timeout = idle_timeout
        self._write_lock = threading.Lock()
        self._jobs_lock = threading.Lock()
        self._queued: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._work_ready = threading.Condition(self._jobs_lock)
        self._inbox: queue.Queue = queue.Queue()
        self._broken = False
        self._stopping = False
        self._last_activity = time.monotonic()
        # Why the last serve() ended: "eof", "stop" (the client went away), "shutdown", "idle",
        # "fatal" (a frame error the stream cannot recover from).
        self.end_reason: str | None = None

    def attach(self, write: Callable[[bytes], Any]) -> None:
        """A new client stream (the socket server's next connection): the state stays, the
        connection's own flags start afresh."""
        self._write = write
        self._broken = False
        self._stopping = False
        self._inbox = queue.Queue()
        self._last_activity = time.monotonic()

    # -- hooks ---------------------------------------------------------------------------------

    def hello(self, request: m.Hello) -> None:  # pragma: no cover - the handlers' job
        raise NotImplementedError

    def run(self, job: Job) -> None:  # pragma: no cover - the handlers' job
        """Do a queued request's work (on the worker thread) and send its result."""
        raise NotImplementedError

    # -- output --------------------------------------------------------------------------------

    def send(self, header: dict[str, Any], parts: list[Part] | None = None) -> None:
        """Write one frame; a vanished client marks the server broken (it then shuts down)."""
        data = encode_frame(header, parts)
        with self._write_lock:
            if self._broken:
                raise Stop()
            try:
                self._write(data)
            except (BrokenPipeError, ConnectionError, OSError, ValueError) as error:
                log.info("client went away (%s): stopping", error)
                self._broken = True
                self._cancel_all()
                self._inbox.put(("stop", None))
                raise Stop() from None

    def send_error(self, request_id: Any, code: str, message: str, hint: str = "") -> None:
        self.send(m.error_header(request_id, code, message, hint))

    # -- main loop -----------------------------------------------------------------------------

    def serve(self, read: Callable[[int], bytes]) -> int:
        """Run until EOF, shutdown, a broken pipe or the idle timeout; returns the exit code."""
        reader = threading.Thread(
            target=self._read_loop, args=(read, self._inbox), name="dragfu-reader", daemon=True
        )
        worker = threading.Thread(target=self._work_loop, name="dragfu-worker", daemon=True)
        reader.start()
        worker.start()
        drain = True  # at EOF, queued work still runs and answers
        self.end_reason = "eof"
        try:
            while True:
                try:
                    kind, item = self._inbox.get(timeout=self._poll_interval())
                except queue.Empty:
                    if self._idle_expired():
                        log.info("idle for %.0f s: exiting", self.idle_timeout)
                        self.end_reason = "idle"
                        break
                    continue
                self._last_activity = time.monotonic()
                if kind == "eof":
                    log.info("end of input")
                    break
                if kind == "stop":
                    drain = False
                    self.end_reason = "stop"
                    break
                if kind == "frame_error":
                    self.send_error(item.request_id, item.code, item.message)
                    if item.fatal:
                        self.end_reason = "fatal"
                        break
                    continue
                try:
                    outcome = self.dispatch(item)
                except Stop:
                    raise
                except Exception as error:  # a bug in a quick request must not kill the server
                    log.exception("request %r failed", item.id)
                    message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                    self.send_error(request_id_of(item.header), "internal", message, INTERNAL_HINT)
                    continue
                if outcome == "shutdown":
                    drain = False
                    self.end_reason = "shutdown"
                    break
        except Stop:
            drain = False
            self.end_reason = "stop"
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

    def _read_loop(self, read: Callable[[int], bytes], inbox: queue.Queue) -> None:
        # ``inbox``: this connection's (a reader outliving its connection must not feed the next).
        reader = FrameReader(read, max_payload_bytes=self.max_payload_bytes)
        while True:
            try:
                frame = reader.read_frame()
            except FrameError as error:
                inbox.put(("frame_error", error))
                if error.fatal:
                    return
                continue
            except OSError as error:  # stdin itself failed: same as the client going away
                log.info("reading the input failed (%s)", error)
                inbox.put(("eof", None))
                return
            if frame is None:
                inbox.put(("eof", None))
                return
            inbox.put(("frame", frame))

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
            self.hello(request)
        elif isinstance(request, m.Cancel) and request.keep:
            stopped = self.stop(request.target)
            self.send(m.result_header(request.id, request.kind, stopped=stopped))
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

    def stop(self, target: Any = None) -> list[Any]:
        """Stop the running and queued drags with request id ``target`` (None: all) at their
        next step, keeping what they reached; other requests are not affected."""
        stopped = []
        with self._jobs_lock:
            jobs = list(self._queued) + ([self._running] if self._running else [])
            for job in jobs:
                if isinstance(job.request, m.Drag) and (target is None or job.request.id == target):
                    job.stop.set()
                    stopped.append(job.request.id)
        return stopped

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
            except Stop:
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
            self.run(job)
        except Stop:
            raise
        except CancelledError as error:
            self.send_error(rid, "cancelled", str(error) or "cancelled")
        except m.ProtocolError as error:
            self.send_error(rid, error.code, str(error), error.hint)
        except DragfuError as error:
            self.send_error(rid, error.code, str(error), error.hint)
        except Exception as error:
            if is_out_of_memory(error):
                free_memory()
                self.send_error(
                    rid, "out_of_memory", f"out of memory: {error}".splitlines()[0][:300], OOM_HINT
                )
            else:
                log.exception("request %r failed", rid)
                message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
                self.send_error(rid, "internal", message, INTERNAL_HINT)

    def check_cancel(self, job: Job) -> None:
        """Raise when the job was cancelled or the client went away (every progress report)."""
        if self._broken:
            raise Stop()
        if job.cancel.is_set():
            raise CancelledError("cancelled by the client")
