"""Errors the user sees: each has a stable code, a one-line message that says what and where, a hint."""

from __future__ import annotations


class DragfuError(Exception):
    """Base of every error meant for the user (CLI: one line + exit 2; protocol: an `error` frame)."""

    code = "error"
    hint = ""

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None):
        super().__init__(message)
        if hint is not None:
            self.hint = hint
        if code is not None:
            self.code = code


class BadInputError(DragfuError):
    code = "bad_input"


class CheckpointError(DragfuError):
    """A model file that cannot be read: truncated, corrupt, wrong kind, config/weights mismatch."""

    code = "bad_model"


class UnsafeCheckpointError(CheckpointError):
    """A pickle that asks for a global outside the allowlist; nothing in it was executed."""

    code = "unsafe_model"


class UnsupportedModelError(CheckpointError):
    code = "unsupported_model"


class UnknownModelError(DragfuError):
    code = "unknown_model"


class CancelledError(DragfuError):
    code = "cancelled"


class DownloadError(DragfuError):
    """A model download that failed: HTTP error, timeout, no disk space (code says which)."""

    code = "download_failed"


class ChecksumError(DownloadError):
    """A file whose sha256 is not the published or recorded one; the bad file is not kept."""

    code = "bad_checksum"


class LicenseNotAcceptedError(DragfuError):
    code = "license_not_accepted"
