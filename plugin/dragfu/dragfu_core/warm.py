"""The warm engine: find the user's running engine, or start one that outlives this run.

A GIMP run is one short plug-in process; torch's import, the model load and projections would be
paid on every run. Instead the local engine is started detached (its own process session) as
``dragfu serve --socket PATH`` and stays up until it has been idle for its idle timeout; the next
run connects to it. One engine per user and engine set-up (command + environment: a socket name
per hash of them), reachable by that user only:

- POSIX: a Unix socket (mode 0600, the engine makes it so) in a folder of mode 0700 owned by the
  user: ``$XDG_RUNTIME_DIR/dragfu`` when that is set (a per-user tmpfs on Linux), else
  ``<temp dir>/dragfu-<uid>``. ``DRAGFU_RUNTIME_DIR`` overrides (tests).
- Windows: a named pipe ``\\\\.\\pipe\\dragfu-<user>-<hash>``; each connection must answer the
  engine's HMAC challenge with a random key kept in ``%LOCALAPPDATA%\\dragfu\\run`` (a folder
  only the user can read), so other users cannot talk to it.

A socket that refuses connections or is missing (a dead engine) means: start a new engine. A
socket that accepts but says nothing within a few seconds (a stuck engine) is stopped first: the
engine holds ``PATH.lock`` (flock) with its pid inside for its whole life, so a held lock names a
live engine and its pid cannot be a recycled one. Remote commands (ssh) never come here: they
keep the stdio transport.
"""

import errno
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

from . import frames
from .engine_client import EngineCancelled, EngineError, SocketClient

HELLO_TIMEOUT = 5.0  # a warm engine answers hello at once; longer = stuck
ENGINE_NAMES = ("dragfu", "dragfu.exe", "dragfu-script.py")
DETACHED_PROCESS = 0x00000008
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000


def wanted(argv, config, flatpak=False):
    """Use the warm engine for this command? Config ``warm_engine``: true / false / "auto" (the
    default: only a local ``dragfu ... serve`` command, never ssh or another wrapper)."""
    setting = config.get("warm_engine", "auto")
    if setting is False or flatpak or not argv or "--socket" in argv:
        return False
    if setting is True:
        return True
    return os.path.basename(str(argv[0])).lower() in ENGINE_NAMES and "serve" in argv[1:]


def runtime_dir(environ=None):
    """The user's private folder for the socket (made 0700 if missing; refused if it is not ours)."""
    environ = os.environ if environ is None else environ
    if environ.get("DRAGFU_RUNTIME_DIR"):
        folder = environ["DRAGFU_RUNTIME_DIR"]
    elif sys.platform == "win32":  # pragma: no cover - Windows
        base = environ.get("LOCALAPPDATA") or tempfile.gettempdir()
        folder = os.path.join(base, "dragfu", "run")
    elif environ.get("XDG_RUNTIME_DIR") and os.path.isdir(environ["XDG_RUNTIME_DIR"]):
        folder = os.path.join(environ["XDG_RUNTIME_DIR"], "dragfu")
    else:
        folder = os.path.join(tempfile.gettempdir(), "dragfu-%d" % os.getuid())
    _private_dir(folder)
    return folder


def _private_dir(folder):
    try:
        os.makedirs(folder, 0o700)
    except OSError as error:
        if error.errno != errno.EEXIST:
            raise EngineError("engine_failed", "cannot make the engine's folder %s: %s" % (folder, error))
    if sys.platform == "win32":  # pragma: no cover - the profile folder's ACL protects it
        return
    info = os.lstat(folder)
    if info.st_uid != os.getuid() or not os.path.isdir(folder) or os.path.islink(folder):
        raise EngineError(
            "engine_failed",
            "%s is not a folder of this user: the warm engine's socket cannot go there" % folder,
            "remove it, or set DRAGFU_RUNTIME_DIR to a folder of your own",
        )
    if info.st_mode & 0o077:
        os.chmod(folder, 0o700)


def engine_id(argv, extra_env):
    """A short name for this engine set-up: another device or models folder is another engine."""
    text = json.dumps([list(argv), sorted((extra_env or {}).items())], sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


def endpoint(argv, extra_env, environ=None):
    """(socket path or pipe name, log path, key path or None) for this engine set-up."""
    folder = runtime_dir(environ)
    name = "engine-%s" % engine_id(argv, extra_env)
    log_path = os.path.join(folder, name + ".log")
    if sys.platform == "win32":  # pragma: no cover - Windows
        user = (os.environ.get("USERNAME") or "user").replace("\\", "_")
        return "\\\\.\\pipe\\dragfu-%s-%s" % (user, name), log_path, os.path.join(folder, name + ".key")
    return os.path.join(folder, name + ".sock"), log_path, None


def _key(key_path, create):  # pragma: no cover - Windows
    if key_path is None:
        return None
    if create or not os.path.exists(key_path):
        import binascii

        with open(key_path, "wb") as handle:
            handle.write(binascii.hexlify(os.urandom(32)))
    with open(key_path, "rb") as handle:
        return handle.read().strip()


def try_connect(path, log_path=None, key_path=None, hello_timeout=HELLO_TIMEOUT, client_options=None):
    """A started SocketClient, or None when nobody answers there ("stale": missing, refused, or
    no hello). An engine that is busy with another run raises EngineError ``engine_busy``."""
    if key_path is None and not os.path.exists(path):
        return None
    client = SocketClient(path, authkey=_key(key_path, False) if key_path else None, log_path=log_path,
                          startup_timeout=hello_timeout, **(client_options or {}))
    try:
        client._open()
    except EngineError:
        return None
    try:
        client.start()
    except EngineError as error:
        client._disconnect()
        if error.code in ("engine_busy", "bad_version"):
            raise
        return None
    return client


def lock_holder(path):
    """The pid of the live engine holding ``path``'s lock, or None (no engine, or a dead one)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    try:
        handle = open(path + ".lock", "r")
    except (OSError, IOError):
        return None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except (OSError, IOError):
            try:
                return int(handle.read().strip() or 0) or None
            except ValueError:
                return None
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        return None  # we got the lock: its holder is gone
    finally:
        handle.close()


def stop_stuck(path, grace=3.0):
    """Stop the engine that holds ``path`` but does not answer."""
    pid = lock_holder(path)
    if pid is None or pid == os.getpid():
        return False
    from .engine_client import _terminate

    _terminate(pid, grace)
    deadline = time.time() + 5.0
    while lock_holder(path) is not None and time.time() < deadline:
        time.sleep(0.05)
    return True


def start_detached(argv, path, log_path, env, key_path=None):
    """Start ``argv --socket path`` in its own process session (it outlives the plug-in), its
    output going to ``log_path``; returns the Popen."""
    command = list(argv) + ["--socket", path]
    env = dict(env)
    kwargs = {}
    if sys.platform == "win32":  # pragma: no cover - Windows
        _key(key_path, True)
        env["DRAGFU_PIPE_KEY"] = key_path
        kwargs["creationflags"] = DETACHED_PROCESS | CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
    elif frames.PY2:  # pragma: no cover - Python 2.7
        kwargs["preexec_fn"] = os.setsid
    else:
        kwargs["start_new_session"] = True
    log = open(log_path, "wb")
    devnull = open(os.devnull, "rb")
    try:
        return subprocess.Popen(command, stdin=devnull, stdout=log, stderr=log, env=env, close_fds=True,
                                **kwargs)
    except OSError as error:
        raise EngineError(
            "engine_failed",
            "cannot start the engine command %r: %s" % (" ".join(command), error),
            "check the engine command in the plug-in settings (is Drag-Fu's engine installed?)",
        )
    finally:
        log.close()
        devnull.close()


def connect(argv, extra_env, env, startup_timeout=180.0, hello_timeout=HELLO_TIMEOUT, environ=None,
            client_options=None, on_start=None, should_cancel=None):
    """A SocketClient to the user's warm engine for this set-up, started first when needed.

    Returns (client, started): ``started`` is True when this call started the engine.
    ``should_cancel``: polled while a started engine comes up; True raises EngineCancelled (the
    engine goes on starting, for the next run)."""
    path, log_path, key_path = endpoint(argv, extra_env, environ)
    client = try_connect(path, log_path, key_path, hello_timeout, client_options)
    if client is not None:
        return client, False
    stop_stuck(path)  # accepted but silent: a stuck engine (nothing happens for a dead one)
    if on_start is not None:
        on_start()
    proc = start_detached(argv, path, log_path, env, key_path)
    deadline = time.time() + startup_timeout
    while True:
        client = try_connect(path, log_path, key_path, hello_timeout, client_options)
        if client is not None:
            return client, True
        code = proc.poll()
        if code is not None and lock_holder(path) is None:
            # It ended, and nobody else serves this socket (status 0 with a lock held elsewhere is
            # a concurrent run's engine winning the race: go on trying that one).
            tail = _log_tail(log_path)
            raise EngineError(
                "engine_failed",
                "the engine stopped while starting (exit code %s)%s" % (code, (": " + tail) if tail else ""),
                "run the engine command in a terminal to see its full log (%s)" % log_path,
            )
        if time.time() > deadline:
            raise EngineError(
                "engine_failed",
                "the engine did not open %s within %g s" % (path, startup_timeout),
                "its log is %s" % log_path,
            )
        if should_cancel is not None and should_cancel():
            raise EngineCancelled("cancelled", "cancelled while the engine was starting")
        time.sleep(0.1)


def _log_tail(log_path, lines=3):
    try:
        with open(log_path, "rb") as handle:
            text = handle.read()[-4096:].decode("utf-8", "replace")
    except (OSError, IOError):
        return ""
    return " | ".join([line for line in text.splitlines() if line.strip()][-lines:])
