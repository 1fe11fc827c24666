"""The warm engine: `dragfu serve --socket PATH` serves the user's GIMP runs one connection at a time.

The server (models, latents, the projection cache) outlives each connection, so torch's import,
the model load and projections are paid once per session, not once per run. Each connection
speaks the same frames as stdio (docs/protocol.md).

Who may connect: POSIX: a Unix socket, mode 0600, in a folder of mode 0700 owned by the user
(the plug-in makes it: ``$XDG_RUNTIME_DIR/dragfu`` or ``<temp>/dragfu-<uid>``); a peer whose
uid (SO_PEERCRED, Linux) is not ours is refused as well. Windows: a named pipe
(``\\\\.\\pipe\\...``) through ``multiprocessing.connection``, whose connections must answer
an HMAC challenge with the key in ``PATH.key``, a file in the user's own folder.

One engine per socket: ``PATH.lock`` is held (flock) for the engine's life, with its pid inside;
a second engine for the same socket exits at once (status 0). While a connection is served, other
connections get an ``engine_busy`` error frame and are closed. The engine exits on ``shutdown``,
after ``idle_timeout`` seconds with no connection and no work, or on SIGTERM.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import socket
import struct
import sys
import threading
import time
from typing import Any

from dragfu.errors import DragfuError
from dragfu.protocol import messages as m
from dragfu.protocol.frames import encode_frame
from dragfu.protocol.runtime import Runtime

log = logging.getLogger("dragfu.serve")

BUSY_WAIT_SECONDS = 3.0
BUSY_HINT = "another Drag-Fu run is using the engine; try again when it has finished"


class SocketInUse(Exception):
    """Another engine holds this socket's lock."""


def is_pipe_name(path: str) -> bool:
    return path.startswith("\\\\.\\pipe\\") or path.startswith("//./pipe/")


def check_private_dir(folder: str) -> None:
    """The socket's folder must be ours and closed to others (the plug-in makes it 0700)."""
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.stat(folder)
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise DragfuError(f"{folder} belongs to another user", code="bad_socket")
    if info.st_mode & 0o077:
        raise DragfuError(
            f"{folder} is open to other users (mode {info.st_mode & 0o777:o}); it must be 0700",
            hint=f"chmod 700 {folder}",
            code="bad_socket",
        )


def acquire_lock(path: str) -> Any:
    """The open lock file (kept for the engine's life, the pid in it), or SocketInUse."""
    import fcntl

    handle = open(path + ".lock", "a+")  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise SocketInUse(path) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def bind_unix(path: str) -> socket.socket:
    """A listening Unix socket at ``path``, mode 0600 from its creation (umask), stale file removed."""
    try:
        os.unlink(path)  # we hold the lock: whatever is there was left by a dead engine
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    listener.listen(8)
    return listener


def peer_uid(conn: socket.socket) -> int | None:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, option, 12))
    except OSError:
        return None
    return uid


def busy_frame() -> bytes:
    return encode_frame(
        m.error_header(None, "engine_busy", "the engine is serving another connection", BUSY_HINT)
    )


class _Connection:
    """A connection as the runtime wants it: read(n) -> bytes, write(bytes), close()."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def read(self, n: int) -> bytes:
        return self.conn.recv(n)

    def write(self, data: bytes) -> None:
        self.conn.sendall(data)

    def reject(self) -> None:
        try:
            self.conn.sendall(busy_frame())
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        try:
            self.conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


class _PipeConnection:
    """A multiprocessing.connection (Windows named pipe): messages carry the byte stream."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._buffer = b""

    def read(self, n: int) -> bytes:
        if not self._buffer:
            try:
                self._buffer = self.conn.recv_bytes()
            except (EOFError, OSError):
                return b""
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def write(self, data: bytes) -> None:
        try:
            self.conn.send_bytes(data)
        except EOFError as error:
            raise BrokenPipeError(str(error)) from None

    def reject(self) -> None:
        try:
            self.conn.send_bytes(busy_frame())
        except (EOFError, OSError):
            pass
        self.close()

    def close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass


class SocketServer:
    """Accepts connections on a thread; the calling thread serves them one by one."""

    def __init__(self, server: Runtime, path: str, *, idle_timeout: float) -> None:
        self.server = server
        self.path = path
        self.idle_timeout = idle_timeout
        self._connections: queue.Queue = queue.Queue()
        self._free = threading.Event()  # set while no connection is being served
        self._free.set()
        self._closing = False
        self._listener: Any = None
        self._lock: Any = None
        self._inode: tuple[int, int] | None = None

    # -- set-up ----------------------------------------------------------------------------------

    def open(self) -> None:
        if is_pipe_name(self.path):  # pragma: no cover - Windows
            self._listener = _pipe_listener(self.path)
            return
        check_private_dir(os.path.dirname(os.path.abspath(self.path)))
        self._lock = acquire_lock(self.path)
        self._listener = bind_unix(self.path)
        info = os.stat(self.path)
        self._inode = (info.st_dev, info.st_ino)

    def close(self) -> None:
        self._closing = True
        if self._inode is not None:
            try:  # only our own socket file (a successor may have bound a new one)
                info = os.stat(self.path)
                if (info.st_dev, info.st_ino) == self._inode:
                    os.unlink(self.path)
            except OSError:
                pass
        try:
            self._listener.close()
        except (OSError, AttributeError):
            pass
        if self._lock is not None:
            self._lock.close()  # releases the flock

    # -- accepting (a thread) --------------------------------------------------------------------

    def _accept_one(self) -> Any:
        if self._inode is None:  # pragma: no cover - Windows
            return _PipeConnection(self._listener.accept())
        conn, _ = self._listener.accept()
        uid = peer_uid(conn)
        if uid is not None and hasattr(os, "getuid") and uid != os.getuid():
            log.warning("refused a connection from uid %d", uid)
            conn.close()
            return None
        return _Connection(conn)

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                connection = self._accept_one()
            except OSError as error:
                if self._closing:
                    return
                if getattr(error, "errno", None) in (errno.EINTR, errno.ECONNABORTED):
                    continue
                log.warning("accept failed: %s", error)
                time.sleep(0.2)
                continue
            except Exception as error:  # pragma: no cover - a failed pipe handshake (bad key)
                log.warning("connection refused: %s", error)
                continue
            if connection is None:
                continue
            # The previous run's connection may still be winding down: wait a moment for it.
            if not self._free.wait(BUSY_WAIT_SECONDS):
                log.info("busy: refusing a second connection")
                connection.reject()
                continue
            self._free.clear()
            self._connections.put(connection)

    # -- serving (the calling thread) ------------------------------------------------------------

    def serve(self) -> int:
        acceptor = threading.Thread(target=self._accept_loop, name="dragfu-accept", daemon=True)
        acceptor.start()
        last = time.monotonic()
        try:
            while True:
                try:
                    connection = self._connections.get(timeout=0.5)
                except queue.Empty:
                    if self.idle_timeout > 0 and time.monotonic() - last >= self.idle_timeout:
                        log.info("no connection for %.0f s: exiting", self.idle_timeout)
                        return 0
                    continue
                log.info("client connected")
                self.server.attach(connection.write)
                try:
                    self.server.serve(connection.read)
                finally:
                    connection.close()
                    self._free.set()
                    last = time.monotonic()
                reason = self.server.end_reason
                log.info("client done (%s)", reason)
                if reason in ("shutdown", "idle"):
                    return 0
        finally:
            self.close()


def _pipe_listener(name: str) -> Any:  # pragma: no cover - Windows
    """A named pipe for this user: multiprocessing's listener, each client proving it knows the
    key in ``<runtime dir>/<pipe name>.key`` (a file only this user can read; the plug-in writes
    it before starting the engine and passes its path as DRAGFU_PIPE_KEY)."""
    from multiprocessing.connection import Listener

    key_path = os.environ.get("DRAGFU_PIPE_KEY")
    if not key_path:
        raise DragfuError("a named pipe needs DRAGFU_PIPE_KEY (the key file)", code="bad_socket")
    with open(key_path, "rb") as handle:
        key = handle.read().strip()
    return Listener(name.replace("/", "\\"), family="AF_PIPE", authkey=key)


def serve_socket(server: Runtime, path: str, *, idle_timeout: float) -> int:
    """Run the warm engine on ``path`` until shutdown or idle; 0 also when another engine has it."""
    listener = SocketServer(server, path, idle_timeout=idle_timeout)
    try:
        listener.open()
    except SocketInUse:
        log.info("another engine serves %s: exiting", path)
        return 0
    log.info("serving on %s (pid %d)", path, os.getpid())
    sys.stderr.flush()
    return listener.serve()
