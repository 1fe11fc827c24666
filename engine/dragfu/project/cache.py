"""Projection cache: projecting the same layer with the same model and settings again returns at once.

Key = sha256 of (format version, the model's weight fingerprint, the image's size and pixels, its alpha,
the weight mask, the settings as canonical JSON). Entries are safetensors files named by key in
`<cache dir>/projections/`, where the cache dir is `DRAGFU_CACHE_DIR` or Drag-Fu's user cache folder
(`dragfu.paths.cache_dir()`: platformdirs' user cache dir, or `DRAGFU_HOME/cache`). Size cap (default 512 MiB, `DRAGFU_CACHE_MAX_MB` overrides): after each write, least
recently used entries (by modification time, which a hit refreshes) are deleted until the total fits.
Writes are atomic (temporary file + rename), so concurrent processes never read a half-written entry;
an unreadable entry counts as a miss and is deleted.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import torch

from dragfu.errors import BadInputError
from dragfu.imageio import as_rgb_uint8
from dragfu.project.projector import (
    CancelFlag,
    ProgressCallback,
    Projection,
    model_fingerprint,
    project,
)
from dragfu.project.settings import ProjectSettings, settings_for
from dragfu.project.storage import load_projection, save_projection

KEY_VERSION = b"dragfu-projection-cache-v1"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024


def default_cache_dir() -> Path:
    """`DRAGFU_CACHE_DIR`, else Drag-Fu's user cache folder (`dragfu.paths.cache_dir`)."""
    if os.environ.get("DRAGFU_CACHE_DIR"):
        return Path(os.environ["DRAGFU_CACHE_DIR"]).expanduser()
    from dragfu import paths

    return paths.cache_dir()


def _default_max_bytes() -> int:
    text = os.environ.get("DRAGFU_CACHE_MAX_MB")
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        return max(0, int(float(text) * 1024 * 1024))
    except ValueError:
        raise BadInputError(f"DRAGFU_CACHE_MAX_MB must be a number of MiB, got {text!r}") from None


class ProjectionCache:
    def __init__(self, directory: str | os.PathLike | None = None, *, max_bytes: int | None = None):
        base = Path(directory) if directory is not None else default_cache_dir()
        self.directory = base / "projections"
        self.max_bytes = _default_max_bytes() if max_bytes is None else int(max_bytes)
        self.hits = 0
        self.misses = 0

    # --- keys

    def key(
        self,
        G: torch.nn.Module,
        image: np.ndarray,
        *,
        weight_mask: np.ndarray | None = None,
        settings: ProjectSettings | None = None,
        fingerprint: str | None = None,
    ) -> str:
        settings = settings_for(G, settings)
        rgb, alpha = as_rgb_uint8(image)
        digest = hashlib.sha256(KEY_VERSION)
        digest.update((fingerprint or model_fingerprint(G)).encode())
        digest.update(f"|image {rgb.shape[1]}x{rgb.shape[0]}|".encode())
        digest.update(np.ascontiguousarray(rgb).tobytes())
        # Alpha counts only when the settings use it (otherwise it cannot change the result).
        if alpha is not None and settings.use_alpha:
            digest.update(b"|alpha|" + np.ascontiguousarray(alpha).tobytes())
        if weight_mask is not None:
            mask = np.ascontiguousarray(np.asarray(weight_mask))
            digest.update(f"|mask {mask.dtype} {mask.shape}|".encode() + mask.tobytes())
        digest.update(b"|settings|" + settings.to_json().encode())
        return digest.hexdigest()

    def path_for(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    # --- lookups

    def get(
        self, key: str, G: torch.nn.Module, *, fingerprint: str | None = None
    ) -> Projection | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            projection = load_projection(path, G, fingerprint=fingerprint)
        except BadInputError:
            path.unlink(missing_ok=True)  # torn or stale entry: recompute
            return None
        try:
            os.utime(path)  # most recently used
        except OSError:
            pass
        return projection

    def put(self, key: str, projection: Projection) -> Path | None:
        """Store an entry, then evict; a cache that cannot be written is skipped (never fatal)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = save_projection(projection, self.path_for(key))
        except (OSError, BadInputError):
            return None
        self.evict(keep=path)
        return path

    def get_or_project(
        self,
        G: torch.nn.Module,
        image: np.ndarray,
        *,
        weight_mask: np.ndarray | None = None,
        settings: ProjectSettings | None = None,
        callback: ProgressCallback | None = None,
        cancel: CancelFlag | None = None,
    ) -> Projection:
        """The cached projection of `image` for G and `settings`, or a new one (then cached)."""
        settings = settings_for(G, settings)
        fingerprint = model_fingerprint(G)
        key = self.key(
            G, image, weight_mask=weight_mask, settings=settings, fingerprint=fingerprint
        )
        started = time.perf_counter()
        cached = self.get(key, G, fingerprint=fingerprint)
        if cached is not None:
            self.hits += 1
            cached.seconds = time.perf_counter() - started
            cached.cached = True
            return cached
        self.misses += 1
        projection = project(
            G, image, weight_mask=weight_mask, settings=settings, callback=callback, cancel=cancel
        )
        self.put(key, projection)
        return projection

    # --- housekeeping

    def entries(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return [p for p in self.directory.glob("*.safetensors") if p.is_file()]

    def size_bytes(self) -> int:
        return sum(_size(p) for p in self.entries())

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Delete least recently used entries until the total is within `max_bytes`."""
        entries = []
        for path in self.entries():
            try:
                stat = path.stat()
            except OSError:
                continue
            entries.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in entries)
        removed: list[Path] = []
        for _, size, path in sorted(entries, key=lambda e: (e[0], e[2].name)):
            if total <= self.max_bytes:
                break
            if keep is not None and path == keep:
                continue
            try:
                path.unlink()
            except OSError:
                continue
            total -= size
            removed.append(path)
        # Leftover temporary files from a crashed writer (older than an hour).
        for temporary in self.directory.glob(".*.tmp") if self.directory.is_dir() else []:
            try:
                if time.time() - temporary.stat().st_mtime > 3600:
                    temporary.unlink()
            except OSError:
                pass
        return removed

    def clear(self) -> None:
        for path in self.entries():
            path.unlink(missing_ok=True)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
