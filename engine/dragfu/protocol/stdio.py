"""Stdio plumbing: claim stdin/stdout for frames, and run the server on them (`dragfu serve`).

stdout carries frames only: the real stdout is kept for frames, and ``sys.stdout`` and fd 1 are
pointed at stderr, so a stray ``print`` (ours or a library's, or C code writing to fd 1) can never
corrupt the stream.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

from dragfu import __version__
from dragfu.protocol.backend import Backend
from dragfu.protocol.frames import DEFAULT_MAX_PAYLOAD_BYTES, PROTOCOL_VERSION
from dragfu.protocol.handlers import DEFAULT_MAX_LATENTS, Server
from dragfu.protocol.runtime import DEFAULT_IDLE_TIMEOUT

log = logging.getLogger("dragfu.serve")


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
    backend: Backend,
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    default_model: str = "toy",
    max_latents: int = DEFAULT_MAX_LATENTS,
    preload: list[str] | None = None,
    socket_path: str | None = None,
) -> int:
    """Serve on this process's stdin/stdout (what `dragfu serve` runs), or, with
    ``socket_path``, as the warm engine on that socket (dragfu.protocol.local_socket)."""
    if socket_path:
        return _run_socket_server(
            backend, socket_path, max_payload_bytes=max_payload_bytes, idle_timeout=idle_timeout,
            default_model=default_model, max_latents=max_latents, preload=preload,
        )  # fmt: skip
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


def _run_socket_server(
    backend: Backend, socket_path: str, *, idle_timeout: float, preload: list[str] | None,
    **server_options,
) -> int:  # fmt: skip
    import signal

    from dragfu.protocol.local_socket import serve_socket

    def not_connected(_data: bytes) -> None:  # pragma: no cover - no connection yet
        raise BrokenPipeError("no client")

    server = Server(backend, not_connected, idle_timeout=idle_timeout, **server_options)
    # Paid before the socket exists, so a socket that answers is a ready engine: torch's import
    # (hello's device list), the preloaded models.
    backend.info()
    for name in preload or []:
        log.info("preloading model %s", name)
        server.models[name] = backend.load_model(name)
    if hasattr(signal, "SIGTERM"):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # unwinds: the socket file goes
    log.info(
        "dragfu %s, protocol %d, warm engine (pid %d)", __version__, PROTOCOL_VERSION, os.getpid()
    )
    code = serve_socket(server, socket_path, idle_timeout=idle_timeout)
    sys.stderr.flush()
    os._exit(code)  # a worker that ignored its cancel flag must not hold the exit
