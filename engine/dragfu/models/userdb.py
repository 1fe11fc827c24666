"""The user's model database (`<models dir>/dragfu-models.json`): read once, written safely.

It holds what this machine learned: the sha256 of each verified download, models added by URL,
accepted licences. Reads come from a per-process cache, checked against the file's size and
modification time (one `stat`, no parse) so that another process's writes are seen; this
process's own writes replace the cached copy. Writes take an exclusive lock on a lock file beside
it (`dragfu-models.json.lock`: fcntl.flock on POSIX, msvcrt.locking on Windows), re-read the
file under the lock, apply the change and replace the file atomically (temp file + os.replace),
so two processes adding models at once both keep their entries and a crash never leaves half a
file.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from dragfu import paths

# path -> ((st_mtime_ns, st_size, st_ino), data)
_cache: dict[Path, tuple[tuple[int, int, int] | None, dict]] = {}
_cache_lock = threading.Lock()
# One lock per file within this process too (flock is per open file, not per thread on all OSes).
_thread_locks: dict[Path, threading.Lock] = {}


def registry_path(models_dir: Path | None = None) -> Path:
    if models_dir is None:
        return paths.user_registry_path()
    return Path(models_dir) / paths.USER_REGISTRY_NAME


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return (status.st_mtime_ns, status.st_size, status.st_ino)


def _normalised(data: object) -> dict:
    if not isinstance(data, dict):
        data = {}
    data.setdefault("models", {})
    data.setdefault("accepted_licenses", [])
    return data


def _read(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError):
        # A damaged registry must not stop the engine: it only holds hashes we can record again.
        data = {}
    return _normalised(data)


def load(models_dir: Path | None = None) -> dict:
    """{"models": {name: record}, "accepted_licenses": [...]} (a copy: change it freely);
    empty when there is no file."""
    path = registry_path(models_dir)
    stamp = _stamp(path)
    with _cache_lock:
        cached = _cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, _read(path))
            _cache[path] = cached
        return copy.deepcopy(cached[1])


def _write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with _cache_lock:
        _cache[path] = (_stamp(path), copy.deepcopy(data))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock on `<path>.lock`, across processes and threads."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _cache_lock:
        thread_lock = _thread_locks.setdefault(path, threading.Lock())
    with thread_lock, open(path.with_name(path.name + ".lock"), "a+b") as handle:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            while True:  # LK_LOCK gives up after ~10 s; a writer holds it for milliseconds
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def editing(models_dir: Path | None = None) -> Iterator[dict]:
    """Change the database: `with editing() as data: data["models"][name] = record`.

    Under the lock, the file is read fresh, handed over, and written back (atomically) only if it
    changed; an exception inside leaves the file as it was.
    """
    path = registry_path(models_dir)
    with _locked(path):
        data = _read(path)
        before = copy.deepcopy(data)
        yield data
        if data != before:
            _write(path, _normalised(data))


def save(data: dict, models_dir: Path | None = None) -> Path:
    """Replace the whole database with `data` (under the lock, atomically)."""
    path = registry_path(models_dir)
    with _locked(path):
        _write(path, _normalised(copy.deepcopy(data)))
    return path
