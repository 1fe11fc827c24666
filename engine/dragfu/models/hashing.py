"""The one file-hashing helper of the engine (registry, downloads, `dragfu doctor`).

install/install.py has its own copy: the installer is stdlib-only and runs before the engine exists.
"""

from __future__ import annotations

import hashlib
import os

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file, read in blocks of `chunk` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()
