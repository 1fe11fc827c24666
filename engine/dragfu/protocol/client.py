"""A small engine-side client for `dragfu serve`: for `dragfu doctor`, the benchmarks and tests.

The plug-in has its own stdlib-only client (plugin/dragfu/dragfu_core/engine_client.py); this one
may use the engine's codec and Python 3 freely.
"""

from __future__ import annotations

import collections
import itertools
import os
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from dragfu.errors import DragfuError
from dragfu.protocol.frames import Frame, FrameError, FrameReader, Part, encode_frame


class EngineError(DragfuError):
    """An `error` frame from the engine, or the engine process failing."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message, hint=hint or None, code=code)


class EngineProcess:
    """One engine process (argv, e.g. ["dragfu", "serve"] or ["ssh", "gpu", "dragfu", "serve"])."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        stderr: Any = "tail",
    ) -> None:
        """``stderr``: "tail" keeps the engine's last log lines for error messages (default);
        anything else is passed to Popen (None: inherit, subprocess.DEVNULL: drop)."""
        self.argv = list(argv)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        keep_tail = isinstance(stderr, str) and stderr == "tail"
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE if keep_tail else stderr, env=env, bufsize=0,
            )  # fmt: skip
        except OSError as error:
            raise EngineError(
                "engine_failed", f"cannot start engine {self.argv[0]!r}: {error}"
            ) from None
        self._events: queue.Queue[Frame | FrameError | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._log_reader: threading.Thread | None = None
        if keep_tail:
            self._log_reader = threading.Thread(target=self._read_log, daemon=True)
            self._log_reader.start()
        self._reader = threading.Thread(target=self._read_loop, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    def _failure(self, what: str) -> EngineError:
        """An engine_failed error ending with the engine's last log lines (ssh errors show there)."""
        try:
            code = self.proc.wait(2.0)
        except subprocess.TimeoutExpired:
            code = None
        if self._log_reader is not None:
            self._log_reader.join(1.0)
        tail = [line for line in self.stderr_tail if line.strip()][-3:]
        message = what + (f" (exit code {code})" if code is not None else "")
        if tail:
            message += ": " + " | ".join(tail)
        return EngineError("engine_failed", message)

    def _read_loop(self) -> None:
        fd = self.proc.stdout.fileno()
        reader = FrameReader(lambda n: os.read(fd, n), max_payload_bytes=2**40)
        while True:
            try:
                frame = reader.read_frame()
            except FrameError as error:
                self._events.put(error)
                if error.fatal:
                    self._events.put(None)
                    return
                continue
            except OSError:
                frame = None
            self._events.put(frame)
            if frame is None:
                return

    def new_id(self) -> str:
        return f"r{next(self._ids)}"

    def send(self, header: dict[str, Any], parts: Sequence[Part] | None = None) -> None:
        try:
            self.proc.stdin.write(encode_frame(header, parts))
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._failure("the engine stopped reading requests") from None

    def next_event(self, timeout: float | None = None) -> Frame:
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            raise EngineError(
                "timeout", f"no answer from the engine within {timeout:g} s"
            ) from None
        if item is None:
            self._events.put(None)  # stay at end of stream for later callers
            raise self._failure("the engine ended its output")
        if isinstance(item, FrameError):
            raise EngineError("bad_frame", f"engine sent a bad frame: {item.message}")
        return item

    def request(
        self,
        header: dict[str, Any],
        parts: Sequence[Part] | None = None,
        *,
        timeout: float | None = 600.0,
        on_progress: Callable[[Frame], None] | None = None,
    ) -> Frame:
        """Send one request and return its `result` frame; raises EngineError on `error`."""
        header = dict(header)
        header.setdefault("id", self.new_id())
        self.send(header, parts)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            frame = self.next_event(remaining)
            if frame.id != header["id"]:
                continue  # an answer to another request (e.g. a cancel) while we wait
            if frame.type == "progress":
                if on_progress is not None:
                    on_progress(frame)
                continue
            if frame.type == "error":
                raise EngineError(
                    str(frame.header.get("code", "error")), str(frame.header.get("message", "")),
                    str(frame.header.get("hint", "")),
                )  # fmt: skip
            return frame

    def close(self, timeout: float = 10.0) -> int | None:
        """Close the engine's input (it finishes queued work and exits), wait; kill if it does not go."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        # Close our ends only once the threads reading them are done (never under a running read).
        for thread, stream in (
            (self._reader, self.proc.stdout),
            (self._log_reader, self.proc.stderr),
        ):
            if thread is not None:
                thread.join(2.0)
            if stream is not None and (thread is None or not thread.is_alive()):
                try:
                    stream.close()
                except OSError:
                    pass
        return code

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hello_check(argv: Sequence[str], timeout: float = 60.0) -> dict[str, Any]:
    """Start the engine command, say hello, shut it down; the hello result's header (for doctor)."""
    with EngineProcess(argv) as engine:
        result = engine.request(
            {"type": "hello", "protocol": 1, "client": "dragfu-check"}, timeout=timeout
        )
        return dict(result.header)
