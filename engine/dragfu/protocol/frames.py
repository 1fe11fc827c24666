"""Frame codec of the stdio protocol (docs/protocol.md): a JSON header line, then a binary payload.

A frame on the wire:

    {"type":"drag","id":"r7","payload_length":1234,"payload":[...]}\\n   <- one UTF-8 JSON object line
    <exactly payload_length bytes>                                        <- optional payload

The payload is one or more named parts laid end to end. The header's ``payload`` is either one
descriptor object (a single part named ``image``) or a list of descriptors, each with ``name``,
``kind`` (``png`` or ``array``) and ``length``; arrays add ``dtype`` and ``shape`` (C order,
little-endian). The reader is incremental over a ``read(n)`` callable (``os.read`` on a pipe),
keeps the stream in sync after every recoverable error (a bad header line is dropped up to its
newline; a payload whose length is known is skipped), and never reads past a frame it reports.

This module is the engine's copy; ``plugin/dragfu/dragfu_core/frames.py`` is the plug-in's copy
(stdlib only, Python 2.7 too). Both are tested against the same files in tests/protocol_vectors/.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOL_VERSIONS = (1,)

MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
MAX_PARTS = 16
MAX_ARRAY_DIMS = 4
MAX_ID_CHARS = 128

# Wire dtype names -> numpy dtypes; always little-endian whatever the machine.
DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("<u1"),
    "uint16": np.dtype("<u2"),
    "int32": np.dtype("<i4"),
    "float32": np.dtype("<f4"),
}
PART_KINDS = ("png", "array")

# Stable codes the codec itself raises (the server adds request-level codes).
FRAME_ERROR_CODES = ("bad_frame", "payload_too_large", "truncated_frame")

_READ_CHUNK = 1 << 16


class FrameError(Exception):
    """A frame that cannot be decoded.

    ``fatal`` means the stream cannot continue (it ended inside a frame); otherwise the reader is
    already positioned at the next frame. ``request_id`` is the header's id when one was readable,
    so the error can be addressed to the request that caused it.
    """

    def __init__(
        self, code: str, message: str, *, request_id: Any = None, fatal: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.fatal = fatal


@dataclass
class Part:
    """One named piece of a payload: PNG bytes, or a raw array (dtype + shape) as bytes."""

    name: str
    kind: str
    data: bytes
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    def descriptor(self) -> dict[str, Any]:
        desc: dict[str, Any] = {"name": self.name, "kind": self.kind, "length": len(self.data)}
        if self.kind == "array":
            desc["dtype"] = self.dtype
            desc["shape"] = list(self.shape or ())
        return desc

    def array(self) -> np.ndarray:
        """The part as a read-only numpy array (only for kind ``array``)."""
        if self.kind != "array" or self.dtype is None or self.shape is None:
            raise ValueError(f"payload part {self.name!r} is {self.kind}, not an array")
        return np.frombuffer(self.data, dtype=DTYPES[self.dtype]).reshape(self.shape)

    @classmethod
    def from_array(cls, name: str, array: np.ndarray) -> Part:
        """A raw-array part; the array's dtype must be one of ``DTYPES``."""
        array = np.asarray(array)
        for wire_name, dtype in DTYPES.items():
            if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
                data = np.ascontiguousarray(array, dtype=dtype).tobytes()
                return cls(name, "array", data, wire_name, tuple(int(s) for s in array.shape))
        raise ValueError(
            f"dtype {array.dtype} cannot travel in a frame (use one of {list(DTYPES)})"
        )

    @classmethod
    def png(cls, name: str, data: bytes) -> Part:
        return cls(name, "png", bytes(data))


@dataclass
class Frame:
    header: dict[str, Any]
    parts: dict[str, Part] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.header.get("type", "")

    @property
    def id(self) -> Any:
        return self.header.get("id")


def encode_header(header: dict[str, Any]) -> bytes:
    """Canonical header line: sorted keys, no spaces, ASCII only, so both codecs agree byte for byte."""
    text = json.dumps(
        header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )
    return text.encode("ascii") + b"\n"


def encode_frame(header: dict[str, Any], parts: Iterable[Part] | None = None) -> bytes:
    """One frame as bytes. ``payload``/``payload_length`` in ``header`` are set from ``parts``."""
    parts = list(parts or ())
    header = {k: v for k, v in header.items() if k not in ("payload", "payload_length")}
    if parts:
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise ValueError(f"payload part names must be unique, got {names}")
        header["payload"] = [p.descriptor() for p in parts]
        header["payload_length"] = sum(len(p.data) for p in parts)
    return encode_header(header) + b"".join(p.data for p in parts)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def request_id_of(header: Any) -> Any:
    """The header's id if it is a usable one (string or integer), else None."""
    if not isinstance(header, dict):
        return None
    rid = header.get("id")
    if isinstance(rid, str) and len(rid) <= MAX_ID_CHARS:
        return rid
    if _is_int(rid) and abs(rid) < 2**53:
        return rid
    return None


def parse_descriptors(header: dict[str, Any], payload_length: int) -> list[dict[str, Any]]:
    """Validated part descriptors (name, kind, length, dtype, shape) covering the whole payload."""
    payload = header.get("payload")
    if payload_length == 0:
        if payload not in (None, [], {}):
            raise ValueError("'payload' is described but 'payload_length' is 0")
        return []
    if isinstance(payload, dict):
        # Shorthand: one part named "image" spanning the payload.
        payload = [{"name": "image", "length": payload_length, **payload}]
    if not isinstance(payload, list) or not payload:
        raise ValueError("'payload_length' > 0 needs 'payload': a descriptor object or a list")
    if len(payload) > MAX_PARTS:
        raise ValueError(f"at most {MAX_PARTS} payload parts, got {len(payload)}")
    parts: list[dict[str, Any]] = []
    names: set[str] = set()
    total = 0
    for i, desc in enumerate(payload):
        if not isinstance(desc, dict):
            raise ValueError(f"payload part {i} is not an object")
        name, kind, length = desc.get("name"), desc.get("kind"), desc.get("length")
        if not isinstance(name, str) or not name or len(name) > 64:
            raise ValueError(f"payload part {i} needs a 'name' (1-64 characters)")
        if name in names:
            raise ValueError(f"payload part name {name!r} is used twice")
        names.add(name)
        if kind not in PART_KINDS:
            raise ValueError(
                f"payload part {name!r} has kind {kind!r}; expected one of {list(PART_KINDS)}"
            )
        if not _is_int(length) or length < 0:
            raise ValueError(f"payload part {name!r} needs a non-negative integer 'length'")
        dtype = shape = None
        if kind == "array":
            dtype, shape = desc.get("dtype"), desc.get("shape")
            if dtype not in DTYPES:
                raise ValueError(
                    f"payload part {name!r} has dtype {dtype!r}; expected one of {list(DTYPES)}"
                )
            if (
                not isinstance(shape, list)
                or not 1 <= len(shape) <= MAX_ARRAY_DIMS
                or not all(_is_int(s) and s >= 1 for s in shape)
            ):
                raise ValueError(
                    f"payload part {name!r} needs a 'shape' of 1-{MAX_ARRAY_DIMS} positive integers"
                )
            expected = math.prod(shape) * DTYPES[dtype].itemsize
            if expected != length:
                raise ValueError(
                    f"payload part {name!r}: shape {shape} of {dtype} is {expected} bytes, but 'length' is {length}"
                )
            shape = tuple(shape)
        total += length
        parts.append({"name": name, "kind": kind, "length": length, "dtype": dtype, "shape": shape})
    if total != payload_length:
        raise ValueError(
            f"payload parts add up to {total} bytes, but 'payload_length' is {payload_length}"
        )
    return parts


class FrameReader:
    """Reads frames one at a time from ``read(n)`` (returns up to n bytes; b"" at end of stream)."""

    def __init__(
        self,
        read: Callable[[int], bytes],
        *,
        max_header_bytes: int = MAX_HEADER_BYTES,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self._read = read
        self._buffer = bytearray()
        self._eof = False
        self._pending_skip: tuple[int, Any] | None = (
            None  # (bytes, request id) of a refused payload
        )
        self.max_header_bytes = max_header_bytes
        self.max_payload_bytes = max_payload_bytes

    def _fill(self) -> bool:
        """Read more bytes into the buffer; False at end of stream."""
        if self._eof:
            return False
        chunk = self._read(_READ_CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _read_line(self) -> bytes | None:
        """The next header line without its newline; None at a clean end of stream."""
        scanned = 0
        while True:
            newline = self._buffer.find(b"\n", scanned)
            if newline >= 0:
                if newline > self.max_header_bytes:
                    del self._buffer[: newline + 1]
                    raise FrameError(
                        "bad_frame", f"header line longer than {self.max_header_bytes} bytes"
                    )
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            scanned = len(self._buffer)
            if scanned > self.max_header_bytes:
                self._discard_line()
                raise FrameError(
                    "bad_frame", f"header line longer than {self.max_header_bytes} bytes"
                )
            if not self._fill():
                if self._buffer:
                    self._buffer.clear()
                    raise FrameError(
                        "truncated_frame", "stream ended inside a header line", fatal=True
                    )
                return None

    def _discard_line(self) -> None:
        """Drop bytes up to and including the next newline (or to the end of the stream)."""
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                del self._buffer[: newline + 1]
                return
            self._buffer.clear()
            if not self._fill():
                return

    def _take(self, length: int) -> bytes | None:
        """Exactly ``length`` payload bytes; None if the stream ends first."""
        while len(self._buffer) < length:
            if not self._fill():
                self._buffer.clear()
                return None
        data = bytes(self._buffer[:length])
        del self._buffer[:length]
        return data

    def _skip(self, length: int) -> bool:
        """Drop ``length`` bytes without keeping them (an oversized payload); False at end of stream."""
        while length > 0:
            if not self._buffer and not self._fill():
                return False
            step = min(length, len(self._buffer))
            del self._buffer[:step]
            length -= step
        return True

    def read_frame(self) -> Frame | None:
        """The next frame, None at a clean end of stream; raises ``FrameError``."""
        if self._pending_skip is not None:
            length, request_id = self._pending_skip
            self._pending_skip = None
            if not self._skip(length):
                raise FrameError(
                    "truncated_frame",
                    "stream ended inside an oversized payload",
                    request_id=request_id,
                    fatal=True,
                )
        while True:
            line = self._read_line()
            if line is None:
                return None
            if line.strip(b" \t\r"):
                break  # blank lines between frames are allowed (typing frames by hand)
        try:
            header = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as error:
            raise FrameError("bad_frame", f"header is not a UTF-8 JSON line: {error}") from None
        if not isinstance(header, dict):
            raise FrameError("bad_frame", "header is not a JSON object")
        request_id = request_id_of(header)

        payload_length = header.get("payload_length", 0)
        if payload_length is None:
            payload_length = 0
        if not _is_int(payload_length) or payload_length < 0:
            # The length is unknown, so whatever follows cannot be skipped reliably: the next
            # lines will be read as headers (and rejected if they are not).
            raise FrameError(
                "bad_frame",
                "'payload_length' must be a non-negative integer",
                request_id=request_id,
            )
        if payload_length > self.max_payload_bytes:
            # Refuse at once (the client can stop sending), and skip the payload on the next call.
            self._pending_skip = (payload_length, request_id)
            raise FrameError(
                "payload_too_large",
                f"payload of {payload_length} bytes is over the limit of {self.max_payload_bytes} bytes",
                request_id=request_id,
            )
        try:
            descriptors = parse_descriptors(header, payload_length)
            error = None
        except ValueError as exc:
            descriptors, error = [], str(exc)
        data = self._take(payload_length)
        if data is None:
            raise FrameError(
                "truncated_frame",
                f"stream ended inside a payload of {payload_length} bytes",
                request_id=request_id,
                fatal=True,
            )
        if error is not None:
            raise FrameError("bad_frame", error, request_id=request_id)
        if not isinstance(header.get("type"), str) or not header["type"]:
            raise FrameError("bad_frame", "header has no 'type' string", request_id=request_id)
        parts: dict[str, Part] = {}
        offset = 0
        for desc in descriptors:
            chunk = data[offset : offset + desc["length"]]
            offset += desc["length"]
            parts[desc["name"]] = Part(
                desc["name"], desc["kind"], chunk, desc["dtype"], desc["shape"]
            )
        return Frame(header, parts)


def read_all(data: bytes, **limits: int) -> list[Frame | FrameError]:
    """Every frame (or recoverable error) in ``data``; for tests and tools, not the server loop."""
    stream = memoryview(bytes(data))
    position = 0

    def read(n: int) -> bytes:
        nonlocal position
        chunk = stream[position : position + n].tobytes()
        position += len(chunk)
        return chunk

    reader = FrameReader(read, **limits)
    out: list[Frame | FrameError] = []
    while True:
        try:
            frame = reader.read_frame()
        except FrameError as error:
            out.append(error)
            if error.fatal:
                return out
            continue
        if frame is None:
            return out
        out.append(frame)
