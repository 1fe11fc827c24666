# -*- coding: utf-8 -*-
"""Client for the Drag-Fu engine process (stdlib only; Python 2.7 and 3.x).

The plug-in cannot import the engine (GIMP's Python has no torch, and may be 2.7), so it starts
``dragfu serve`` as a subprocess (or any command that ends up running it, such as
``ssh gpu-box dragfu serve``) and talks to it in frames (docs/protocol.md).

    client = EngineClient(["dragfu", "serve"])
    client.start()                                   # spawns the engine, says hello
    result = client.drag(seed=3, handles=[(40, 50)], targets=[(60, 50)],
                         progress=on_progress, should_cancel=gimp_cancelled)
    pixels = result.image                            # Part: PNG or raw array bytes
    client.close()

Every request gets zero or more ``progress`` events and then exactly one ``result`` or ``error``:
``progress(event)`` receives ``events.ProgressEvent``s, a request returns its ``events.Result``
(both are frames: ``header``, ``parts``). Errors come back as ``EngineError`` (``code``,
``message``, ``hint``), ``EngineCancelled`` when the request was cancelled.

This is the protocol's one client: the plug-in's, and the engine's tools' (``dragfu doctor``,
the protocol benchmark, the tests), which import it as ``dragfu_core.engine_client``.
"""

from __future__ import absolute_import, division, print_function, unicode_literals

import collections
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time

try:
    import queue  # novermin
except ImportError:  # pragma: no cover - Python 2.7
    import Queue as queue  # noqa: N813  # novermin

from . import frames, winjob
from .events import ErrorEvent, ProgressEvent, Result, event_from_frame
from .frames import PROTOCOL_VERSION, FrameError, FrameReader, array_part, encode_frame, png_part

__all__ = [
    "EngineClient",
    "SocketClient",
    "EngineError",
    "EngineCancelled",
    "engine_command",
    "engine_environment",
    "ErrorEvent",
    "ProgressEvent",
    "Result",
    "array_part",
    "png_part",
    "PROTOCOL_VERSION",
]

CREATE_NO_WINDOW = 0x08000000  # Windows: do not flash a console window for the engine
FLATPAK_INFO = "/.flatpak-info"
# Variables GIMP sets for its own bundled Python; the engine's Python must not inherit them.
STRIPPED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONEXECUTABLE")

_EOF = object()
#: Timeouts and deadlines: a clock that never jumps (Python 2.7 has no time.monotonic).
_clock = getattr(time, "monotonic", time.time)


class EngineError(Exception):
    """An ``error`` event from the engine, or the engine process failing (code ``engine_failed``)."""

    def __init__(self, code, message, hint="", request_id=None):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.hint = hint or ""
        self.request_id = request_id

    def __str__(self):
        if self.hint:
            return "%s (%s)" % (self.message, self.hint)
        return self.message

    def user_message(self):
        """Message + hint, for a GIMP message box."""
        return str(self)


class EngineCancelled(EngineError):
    """The request was cancelled (by ``cancel()``, ``should_cancel``, or a kill after the grace period)."""


def in_flatpak():
    return os.path.exists(FLATPAK_INFO)


def engine_command(argv, flatpak=None, extra_env=None):
    """The argv to spawn: inside a Flatpak sandbox (GIMP from Flathub) the engine lives on the host.

    ``flatpak-spawn --host --watch-bus [--env=NAME=VALUE ...] ARGV``: --watch-bus ends the host
    command when the plug-in goes away; flatpak-spawn does not pass its environment on, so the
    engine's own variables (``extra_env``) travel as --env options. A command that already starts
    with flatpak-spawn is the user's own wrapping and is kept as it is.
    """
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("the engine command is empty")
    if flatpak is None:
        flatpak = in_flatpak()
    if flatpak and argv[0] != "flatpak-spawn":
        options = ["--env=%s=%s" % (key, value) for key, value in sorted((extra_env or {}).items())]
        argv = ["flatpak-spawn", "--host", "--watch-bus"] + options + argv
    return argv


def engine_environment(base=None, extra=None):
    """The engine's environment: ours without the variables that point at GIMP's own Python."""
    env = dict(os.environ if base is None else base)
    for name in STRIPPED_ENV:
        env.pop(name, None)
    if extra:
        env.update(extra)
    return env


class EngineClient(object):
    """One engine process and the conversation with it.

    ``argv``: the engine command as a list (``["dragfu", "serve"]``, ``["ssh", "gpu-box", "dragfu",
    "serve"]``). ``startup_timeout``: seconds to wait for the hello answer (a cold start loads
    torch; over ssh add the login). ``event_timeout``: the longest silence tolerated while a
    request runs (the engine sends progress every optimisation step); after it the engine is
    killed. ``stderr_lines``: how many of the engine's last log lines to keep for error messages;
    ``log``: optional callable that receives every engine log line as it arrives.
    ``client_name``: what ``hello`` says this client is.
    """

    def __init__(
        self,
        argv,
        env=None,
        cwd=None,
        startup_timeout=180.0,
        event_timeout=600.0,
        max_payload_bytes=1 << 40,
        stderr_lines=40,
        log=None,
        flatpak=None,
        client_name="dragfu-plugin",
    ):
        self.client_name = client_name
        self.argv = engine_command(argv, flatpak)
        self.env = engine_environment() if env is None else env
        self.cwd = cwd
        self.startup_timeout = startup_timeout
        self.event_timeout = event_timeout
        self.max_payload_bytes = max_payload_bytes
        self.log = log
        self.proc = None
        self.hello_info = None
        self.stderr_tail = collections.deque(maxlen=stderr_lines)
        self._events = queue.Queue()
        self._pending = {}  # request id -> events that arrived while waiting on another request
        self._ignored = set()  # ids of requests whose answers nobody waits for (cancel)
        self._ids = itertools.count(1)
        self._write_lock = threading.Lock()
        self._eof = False
        self._threads = []
        self._job = None  # Windows: the job object holding the engine (closed when we exit)

    # -- process ------------------------------------------------------------------------------

    def start(self, should_cancel=None):
        """Spawn the engine (or connect to it) and say hello; returns the hello result's header.
        ``should_cancel``: polled while waiting for the hello (an engine importing torch takes
        seconds); when it returns True the engine is stopped at once (EngineCancelled)."""
        self._open()
        self._threads = []
        for target, name in self._reader_threads():
            thread = threading.Thread(target=target, name=name)
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        try:
            result = self.request(
                "hello", {"protocol": PROTOCOL_VERSION, "client": self.client_name}, timeout=self.startup_timeout,
                should_cancel=should_cancel, cancel_grace=0.0,
            )
        except EngineError:
            self.kill()  # nothing may linger after a failed start
            raise
        info = dict(result.header)
        supported = info.get("protocols") or [info.get("protocol")]
        if PROTOCOL_VERSION not in supported:
            self.kill()
            raise EngineError(
                "bad_version",
                "the engine speaks protocol %r, this plug-in speaks %d" % (supported, PROTOCOL_VERSION),
                "update the plug-in and the engine to the same release",
            )
        self.hello_info = info
        return info

    # -- the transport: a subprocess's pipes (SocketClient: a connection to a warm engine) ---------

    def _open(self):
        kwargs = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = CREATE_NO_WINDOW
        elif frames.PY2:  # pragma: no cover - Python 2.7
            kwargs["preexec_fn"] = os.setsid
        else:
            # Its own process group, so kill() reaches everything the command started (a
            # wrapper's children, the engine behind `sh -c`), not only the first process.
            kwargs["start_new_session"] = True
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env,
                cwd=self.cwd,
                bufsize=0,
                **kwargs
            )
        except OSError as error:
            raise EngineError(
                "engine_failed",
                "cannot start the engine command %r: %s" % (" ".join(self.argv), error),
                "check the engine command in the plug-in settings (is Drag-Fu's engine installed?)",
            )
        if sys.platform == "win32":
            # The engine and whatever it starts end with the plug-in, however the plug-in ends.
            self._job = winjob.kill_on_close(self.proc)

    def _reader_threads(self):
        return ((self._read_stdout, "dragfu-engine-out"), (self._read_stderr, "dragfu-engine-log"))

    def _raw_read(self):
        """The function that reads the engine's output: read(n) -> bytes (b"" at the end)."""
        fd = self.proc.stdout.fileno()
        return lambda n: os.read(fd, n)

    def _write_all(self, data):
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while len(view):
            written = os.write(fd, view)
            view = view[written:]

    def _opened(self):
        return self.proc is not None

    def _read_stdout(self):
        raw_read = self._raw_read()
        head = bytearray()  # the output's first bytes, to name a login banner in the error

        def read(n):
            data = raw_read(n)
            if len(head) < 4096:
                head.extend(data[: 4096 - len(head)])
            return data

        reader = FrameReader(read, max_payload_bytes=self.max_payload_bytes)
        started = False
        while True:
            try:
                frame = reader.read_frame()
            except FrameError as error:
                if not started:
                    # Text before the first frame: a login banner, a shell rc file's echo, a
                    # wrapper's message. Nothing after it can be trusted to be frames.
                    self._events.put(_banner_error(head, error))
                    break
                self._events.put(error)
                if error.fatal:
                    break
                continue
            except (OSError, ValueError):
                break
            if frame is None:
                break
            started = True
            self._events.put(frame)
        self._events.put(_EOF)

    def _read_stderr(self):
        stream = self.proc.stderr
        while True:
            try:
                line = stream.readline()
            except (OSError, ValueError):
                return
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            self.stderr_tail.append(text)
            if self.log is not None:
                try:
                    self.log(text)
                except Exception:  # a broken log sink must not stop the drain (or the engine blocks)
                    pass

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _wait_exit(self, timeout):
        deadline = _clock() + timeout
        while self.proc.poll() is None:
            if _clock() >= deadline:
                return None
            time.sleep(0.02)
        return self.proc.returncode

    def _signal(self, number):
        """Send a signal to the engine's process group (POSIX), or to the process itself."""
        if sys.platform != "win32":
            try:
                os.killpg(self.proc.pid, number)
                return
            except OSError:
                pass
        if self.proc.poll() is None:  # never signal a pid that may already belong to someone else
            try:
                self.proc.send_signal(number)
            except OSError:
                pass

    def kill(self, grace=2.0):
        """Stop the engine now, without a goodbye: SIGTERM to its process group (flatpak-spawn
        forwards it to the host side), then SIGKILL after ``grace`` seconds."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            if sys.platform == "win32":  # pragma: no cover - Windows only
                self.proc.kill()
            else:
                self._signal(signal.SIGTERM)
                if self._wait_exit(grace) is None:
                    self._signal(signal.SIGKILL)
        self._wait_exit(10.0)
        self._close_pipes()

    def _close_pipes(self):
        # Close our ends only once the threads reading them are done, never under a running read
        # (the fd number could be reused by the next engine and read by a stale thread).
        readers = dict(zip(("out", "log"), self._threads))
        for key, stream in (("in", self.proc.stdin), ("out", self.proc.stdout), ("log", self.proc.stderr)):
            thread = readers.get(key)
            if thread is not None:
                thread.join(2.0)
                if thread.is_alive():
                    continue
            try:
                stream.close()
            except (OSError, ValueError, IOError):
                pass

    def close(self, grace=5.0):
        """Shut the engine down: ``shutdown`` request, then close its input, then kill after ``grace`` s."""
        if self.proc is None:
            return None
        if self.proc.poll() is None and not self._eof:
            try:
                self.request("shutdown", timeout=grace)
            except EngineError:
                pass
        try:
            self.proc.stdin.close()
        except (OSError, ValueError, IOError):
            pass
        code = self._wait_exit(grace)
        if code is None:
            self.kill()
            code = self.proc.returncode
        else:
            self._close_pipes()
        return code

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def _failure(self, what):
        """EngineError for a dead or silent engine, with its last log lines (ssh errors show up there)."""
        code = self.proc.poll() if self.proc is not None else None
        if code is not None and len(self._threads) == 2:
            self._threads[1].join(1.0)  # let the log drain catch the engine's last words
        tail = [line for line in self.stderr_tail if line.strip()][-3:]
        message = what
        if code is not None:
            message += " (exit code %s)" % code
        if tail:
            message += ": " + " | ".join(tail)
        return EngineError("engine_failed", message, "run the engine command in a terminal to see its full log")

    # -- frames -------------------------------------------------------------------------------

    def new_id(self):
        return "c%d" % next(self._ids)

    def send(self, type_, fields=None, parts=None, request_id=None):
        """Send one request frame; returns its id."""
        if not self._opened():
            raise EngineError("engine_failed", "the engine is not started")
        header = dict(fields or {})
        header["type"] = type_
        header["id"] = request_id if request_id is not None else self.new_id()
        data = encode_frame(header, parts)
        with self._write_lock:
            try:
                self._write_all(data)
            except (OSError, ValueError, IOError):
                # The engine is gone; its stderr usually says why.
                self._wait_exit(1.0)
                raise self._failure("the engine stopped reading requests")
        return header["id"]

    def _next_frame(self, timeout):
        """Next frame from the engine; raises EngineError when the engine dies or stays silent."""
        try:
            item = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _EOF:
            self._eof = True
            self._events.put(_EOF)  # later waits see the end too
            self._wait_exit(2.0)
            raise self._failure("the engine stopped")
        if isinstance(item, EngineError):
            self._events.put(item)  # later waits see it too
            raise item
        if isinstance(item, FrameError):
            raise EngineError("bad_frame", "the engine sent a bad frame: %s" % item.message)
        return item

    def events(self, request_id, timeout=None, should_cancel=None, cancel_grace=10.0, should_stop=None):
        """Yield the events of one request (``ProgressEvent``s, then the ``Result``); raise on ``error``.

        ``should_cancel``: polled about ten times a second; when it returns True a ``cancel`` is
        sent, and if the engine has not ended the request ``cancel_grace`` seconds later it is
        killed. ``should_stop``: polled the same way; when it returns True a ``stop`` is sent once
        (a drag then ends with its normal result, from the state it reached). ``timeout``: longest
        silence (default ``event_timeout``); the engine is killed after it.
        """
        silence = self.event_timeout if timeout is None else timeout
        last_event = _clock()
        cancel_sent_at = None
        stop_sent = False
        while True:
            if not stop_sent and cancel_sent_at is None and should_stop is not None and should_stop():
                self.stop(request_id)
                stop_sent = True
            backlog = self._pending.get(request_id)
            if backlog:
                frame = backlog.popleft()
            else:
                frame = self._next_frame(0.1)
            now = _clock()
            if frame is None:
                if cancel_sent_at is None and should_cancel is not None and should_cancel():
                    self.cancel(request_id)
                    cancel_sent_at = now
                if cancel_sent_at is not None and now - cancel_sent_at > cancel_grace:
                    self.kill()
                    raise EngineCancelled(
                        "cancelled", "the engine did not stop within %g s; it was killed" % cancel_grace,
                        request_id=request_id,
                    )
                if silence is not None and now - last_event > silence:
                    self.kill()
                    raise EngineError(
                        "timeout", "no word from the engine for %g s; it was stopped" % silence,
                        "raise the timeout for very slow devices, or check the engine's log",
                        request_id,
                    )
                continue
            last_event = now
            if frame.id in self._ignored:
                if frame.type != "progress":
                    self._ignored.discard(frame.id)
                continue
            if frame.id != request_id:
                if frame.type == "error" and frame.id is None:
                    # Addressed to nobody: the engine could not read a frame we sent.
                    raise EngineError(
                        frame.header.get("code", "error"), frame.header.get("message", ""),
                        frame.header.get("hint", ""), request_id,
                    )
                self._pending.setdefault(frame.id, collections.deque()).append(frame)
                continue
            frame = event_from_frame(frame)
            if isinstance(frame, ProgressEvent):
                yield frame
                if cancel_sent_at is None and should_cancel is not None and should_cancel():
                    self.cancel(request_id)
                    cancel_sent_at = _clock()
                continue
            self._pending.pop(request_id, None)
            if isinstance(frame, ErrorEvent):
                cls = EngineCancelled if frame.code == "cancelled" else EngineError
                raise cls(frame.code, frame.message, frame.hint, request_id)
            yield frame if isinstance(frame, Result) else Result.from_frame(frame)
            return

    def wait(self, request_id, progress=None, should_cancel=None, timeout=None, cancel_grace=10.0,
             should_stop=None):
        """Wait for a request's ``Result``, calling ``progress(event)`` for each ``ProgressEvent``."""
        result = None
        for event in self.events(request_id, timeout, should_cancel, cancel_grace, should_stop):
            if isinstance(event, ProgressEvent):
                if progress is not None:
                    progress(event)
            else:
                result = event
        return result

    def request(self, type_, fields=None, parts=None, progress=None, should_cancel=None, timeout=None,
                cancel_grace=10.0, should_stop=None):
        """Send a request and wait for its ``Result`` (a frame: ``header`` and ``parts``)."""
        request_id = self.send(type_, fields, parts)
        return self.wait(request_id, progress, should_cancel, timeout, cancel_grace, should_stop)

    def cancel(self, target=None):
        """Ask the engine to cancel ``target`` (a request id; None = everything). Does not wait:
        the cancelled request still ends with its own ``error`` event (code ``cancelled``)."""
        fields = {} if target is None else {"target": target}
        request_id = self.new_id()
        self._ignored.add(request_id)  # its own small result is dropped when it arrives
        return self.send("cancel", fields, request_id=request_id)

    def stop(self, target=None):
        """Ask the engine to stop the drag ``target`` (None = every drag) at its next step and
        answer with the state reached (its normal ``result``, ``stopped: true``). Does not wait."""
        fields = {} if target is None else {"target": target}
        request_id = self.new_id()
        self._ignored.add(request_id)  # its small result (or an old engine's error) is dropped
        return self.send("stop", fields, request_id=request_id)

    # -- typed requests -----------------------------------------------------------------------

    def hello(self, timeout=None):
        return self.request("hello", {"protocol": PROTOCOL_VERSION, "client": self.client_name}, timeout=timeout).header

    def load_model(self, model, progress=None, should_cancel=None, timeout=None):
        return self.request("load_model", {"model": model}, progress=progress, should_cancel=should_cancel,
                            timeout=timeout).header

    def echo(self, parts, timeout=None):
        return self.request("echo", {}, parts, timeout=timeout)

    def project(self, image, weight_mask=None, model=None, settings=None, output="png", preview_every=0,
                progress=None, should_cancel=None, timeout=None):
        """Project ``image`` (a Part named "image") into the model's latent space.

        Returns the result frame: ``header["projection_id"]`` names the latent for ``drag``;
        ``parts["image"]`` (when present) is the reconstruction at the sent size.
        """
        fields = {"output": output, "preview_every": preview_every}
        if model:
            fields["model"] = model
        if settings:
            fields["settings"] = settings
        parts = [_renamed(image, "image")]
        if weight_mask is not None:
            parts.append(_renamed(weight_mask, "weight_mask"))
        return self.request("project", fields, parts, progress=progress, should_cancel=should_cancel, timeout=timeout)

    def drag(self, handles, targets, projection_id=None, latent_id=None, seed=None, psi=None, waypoints=None,
             mask=None, model=None, method=None, max_steps=None, preview_every=0, output="png",
             progress=None, should_cancel=None, timeout=None, cancel_grace=10.0, paste=None, pins=None,
             should_stop=None, options=None, preview_interval=None, image_mode=None):
        """Drag ``handles`` to ``targets`` ((x, y) in the sent image's pixel coordinates).

        The start is a ``projection_id`` / ``latent_id`` from an earlier result, or a ``seed``.
        ``mask`` (a Part, uint8 [H, W], nonzero = may move) limits what moves. Returns the result
        frame: ``parts["image"]`` (the part of the sent image inside ``header["box"]``, [x, y, w,
        h]: what the edit changed; ``paste`` "warp" or "render" says how), ``header["points"]`` (where the handles ended up) and
        ``header["latent_id"]`` (to keep dragging from the result). ``pins``: points that must stay
        where they are. ``should_stop``: polled; when true a ``stop`` is sent (Stop = keep).
        ``preview_interval``: seconds; no preview sooner than this after the last one.
        ``image_mode``: "grey" for the result as luma ([H, W]: for a grey layer), default "rgb".
        """
        fields = {
            "handles": [[float(x), float(y)] for x, y in handles],
            "targets": [[float(x), float(y)] for x, y in targets],
            "preview_every": int(preview_every),
            "output": output,
        }
        for key, value in (("projection_id", projection_id), ("latent_id", latent_id), ("seed", seed),
                           ("psi", psi), ("model", model), ("method", method), ("max_steps", max_steps),
                           ("paste", paste), ("image_mode", image_mode)):
            if value is not None:
                fields[key] = value
        if waypoints is not None:
            fields["waypoints"] = [[[float(x), float(y)] for x, y in points] for points in waypoints]
        if pins:
            fields["pins"] = [[float(x), float(y)] for x, y in pins]
        if options:
            fields["options"] = dict(options)
        if preview_interval:  # an engine that predates it ignores the field
            fields["preview_interval"] = float(preview_interval)
        parts = [_renamed(mask, "mask")] if mask is not None else None
        return self.request("drag", fields, parts, progress=progress, should_cancel=should_cancel,
                            timeout=timeout, cancel_grace=cancel_grace, should_stop=should_stop)


class SocketClient(EngineClient):
    """The same client over a connection to a warm engine (``dragfu serve --socket PATH``).

    ``path``: a Unix socket, or on Windows a named pipe (``\\\\.\\pipe\\NAME``, with
    ``authkey``: the key the engine's listener checks). ``startup_timeout``: how long hello may
    take (a warm engine answers at once: a few seconds). ``log_path``: the engine's log file, whose
    last lines go into error messages. ``close()`` only disconnects: the engine stays for the next
    run; ``shutdown()`` stops it. ``kill()`` (a cancel that was not honoured, a silent engine)
    disconnects and stops the engine process (its pid from hello).
    """

    def __init__(self, path, authkey=None, log_path=None, startup_timeout=5.0, **kwargs):
        kwargs.setdefault("client_name", "dragfu-plugin")
        EngineClient.__init__(self, [path], startup_timeout=startup_timeout, flatpak=False, **kwargs)
        self.path = path
        self.authkey = authkey
        self.log_path = log_path
        self.sock = None
        self._pipe = None  # Windows: a multiprocessing connection
        self._buffer = b""
        self._closed = False

    def _open(self):
        if self.sock is not None or self._pipe is not None:
            return  # connected already (warm.try_connect): start() only says hello
        try:
            if self.authkey is not None:  # pragma: no cover - Windows named pipe
                from multiprocessing.connection import Client

                self._pipe = Client(self.path, family="AF_PIPE", authkey=self.authkey)
                return
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except Exception:
                sock.close()
                raise
        except (OSError, IOError, EOFError) as error:
            raise EngineError("engine_failed", "cannot connect to the engine at %s: %s" % (self.path, error))
        self.sock = sock

    def _reader_threads(self):
        return ((self._read_stdout, "dragfu-engine-out"),)

    def _raw_read(self):
        if self._pipe is not None:  # pragma: no cover - Windows named pipe

            def read(n):
                if not self._buffer:
                    try:
                        self._buffer = self._pipe.recv_bytes()
                    except (EOFError, OSError, IOError):
                        return b""
                data, self._buffer = self._buffer[:n], self._buffer[n:]
                return data

            return read
        return self.sock.recv

    def _write_all(self, data):
        if self._pipe is not None:  # pragma: no cover - Windows named pipe
            self._pipe.send_bytes(bytes(data))
            return
        self.sock.sendall(data)

    def _opened(self):
        return (self.sock is not None or self._pipe is not None) and not self._closed

    def running(self):
        return self._opened() and not self._eof

    def _wait_exit(self, timeout):
        return None

    def _disconnect(self):
        if self._closed:
            return
        self._closed = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except (OSError, IOError):
                pass
        for thread in self._threads:
            thread.join(2.0)
        for handle in (self.sock, self._pipe):
            if handle is not None:
                try:
                    handle.close()
                except (OSError, IOError):
                    pass

    def close(self, grace=5.0):
        """Disconnect; the warm engine stays for the next run."""
        self._disconnect()
        return None

    def shutdown(self, timeout=10.0):
        """Stop the warm engine itself (the `shutdown` request), then disconnect."""
        if self._opened() and not self._eof:
            try:
                self.request("shutdown", timeout=timeout)
            except EngineError:
                pass
        self._disconnect()

    def kill(self, grace=2.0):
        """The engine does not answer as it should: disconnect, and stop its process."""
        self._disconnect()
        pid = (self.hello_info or {}).get("pid")
        if isinstance(pid, int) and pid > 0 and sys.platform != "win32":
            _terminate(pid, grace)

    def _failure(self, what):
        tail = []
        if self.log_path:
            try:
                with open(self.log_path, "rb") as handle:
                    handle.seek(0, 2)
                    handle.seek(max(0, handle.tell() - 4096))
                    lines = handle.read().decode("utf-8", "replace").splitlines()
                tail = [line for line in lines if line.strip()][-3:]
            except (OSError, IOError):
                pass
        message = what
        if tail:
            message += ": " + " | ".join(tail)
        hint = "its log is %s" % self.log_path if self.log_path else ""
        return EngineError("engine_failed", message, hint)


def _terminate(pid, grace):
    """SIGTERM, then SIGKILL after ``grace`` seconds, to one process we have reason to own."""
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.time() + grace
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def _banner_error(head, error):
    """EngineError for output that is not a frame before the first frame (a login banner?)."""
    lines = [line.strip() for line in bytes(head).decode("utf-8", "replace").splitlines()]
    first = next((line for line in lines if line), "")
    if len(first) > 80:
        first = first[:77] + "..."
    return EngineError(
        "bad_frame",
        "the engine command printed '%s' before the protocol started (a login banner?): %s"
        % (first, error.message),
        "the engine's standard output must carry only protocol frames: make the remote login "
        "print nothing for non-interactive commands (messages to stderr, or only when `[ -t 1 ]`)",
    )


def _renamed(part, name):
    if part.name == name:
        return part
    return frames.Part(name, part.kind, part.data, part.dtype, part.shape)


def rgb_part(name, data, width, height, channels=3):
    """Raw 8-bit pixels (rows top to bottom, ``channels`` bytes per pixel) as an array part."""
    if channels == 1:
        return array_part(name, data, "uint8", [height, width])
    return array_part(name, data, "uint8", [height, width, channels])
