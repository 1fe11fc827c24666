# -*- coding: utf-8 -*-
"""The frame codec of the engine protocol (stdlib only; Python 2.7 and 3.x): the only one.

A frame is one JSON header line (UTF-8, ending in a newline) followed by exactly
``payload_length`` bytes of payload, made of named parts laid end to end and described by the
header's ``payload`` (see docs/protocol.md). The reader is incremental over a ``read(n)``
callable (``os.read`` on a pipe), keeps the stream in sync after every recoverable error (a bad
header line is dropped up to its newline; a payload whose length is known is skipped), and never
reads past a frame it reports.

The plug-in uses it directly; the engine imports it too (the wheel ships this package as the
top-level ``dragfu_core``) and adds only a numpy adapter (engine/dragfu/protocol/frames.py).
Tested against the files in tests/protocol_vectors/.
"""

from __future__ import absolute_import, division, print_function, unicode_literals

import json
import struct
import sys

PY2 = sys.version_info[0] == 2
if PY2:  # pragma: no cover - exercised under Python 2.7 only
    text_type = unicode  # noqa: F821  # novermin
    integer_types = (int, long)  # noqa: F821  # novermin
else:
    text_type = str
    integer_types = (int,)

PROTOCOL_VERSION = 1
SUPPORTED_PROTOCOL_VERSIONS = (1,)
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_PAYLOAD_BYTES = 256 * 1024 * 1024
MAX_PARTS = 16
MAX_ARRAY_DIMS = 4
MAX_ID_CHARS = 128

# Wire dtype -> (bytes per item, struct/array code); always little-endian.
DTYPES = {
    "uint8": (1, "B"),
    "uint16": (2, "H"),
    "int32": (4, "i"),
    "float32": (4, "f"),
}
PART_KINDS = ("png", "array")
# Stable codes the codec itself raises (the engine adds request-level codes).
FRAME_ERROR_CODES = ("bad_frame", "payload_too_large", "truncated_frame")

_READ_CHUNK = 1 << 16


class FrameError(Exception):
    """A frame that cannot be decoded. ``fatal``: the stream ended inside a frame."""

    def __init__(self, code, message, request_id=None, fatal=False):
        Exception.__init__(self, message)
        self.code = code
        self.message = message
        self.request_id = request_id
        self.fatal = fatal


class Part(object):
    """One named payload part: ``kind`` "png" (PNG file bytes) or "array" (raw, with dtype/shape)."""

    def __init__(self, name, kind, data, dtype=None, shape=None):
        self.name = name
        self.kind = kind
        self.data = data
        self.dtype = dtype
        self.shape = tuple(shape) if shape is not None else None

    def __repr__(self):
        return "Part(%r, %r, %d bytes, %r, %r)" % (self.name, self.kind, len(self.data), self.dtype, self.shape)

    def descriptor(self):
        desc = {"name": self.name, "kind": self.kind, "length": len(self.data)}
        if self.kind == "array":
            desc["dtype"] = self.dtype
            desc["shape"] = list(self.shape)
        return desc

    def values(self):
        """The array's items as a flat list of numbers (for small arrays; pixels stay bytes)."""
        if self.kind != "array":
            raise ValueError("payload part %r is %s, not an array" % (self.name, self.kind))
        size, code = DTYPES[self.dtype]
        count = len(self.data) // size
        return list(struct.unpack(str("<%d%s" % (count, code)), bytes(self.data)))


def array_part(name, data, dtype, shape):
    """A raw-array part from bytes already in little-endian C order (e.g. GIMP pixel rows)."""
    if dtype not in DTYPES:
        raise ValueError("dtype %r cannot travel in a frame" % (dtype,))
    expected = DTYPES[dtype][0]
    for side in shape:
        expected *= side
    data = bytes(data)
    if len(data) != expected:
        raise ValueError("array %r: shape %r of %s needs %d bytes, got %d" % (name, list(shape), dtype, expected, len(data)))
    return Part(name, "array", data, dtype, shape)


def png_part(name, data):
    return Part(name, "png", bytes(data))


def encode_header(header):
    """Canonical header line: sorted keys, no spaces, ASCII only (same bytes as the engine's)."""
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    if isinstance(text, text_type):
        text = text.encode("ascii")
    return text + b"\n"


def encode_frame(header, parts=None):
    """One frame as bytes; ``payload``/``payload_length`` are set from ``parts``."""
    parts = list(parts or ())
    header = dict((k, v) for k, v in header.items() if k not in ("payload", "payload_length"))
    if parts:
        names = [p.name for p in parts]
        if len(set(names)) != len(names):
            raise ValueError("payload part names must be unique, got %r" % (names,))
        header["payload"] = [p.descriptor() for p in parts]
        header["payload_length"] = sum(len(p.data) for p in parts)
    return encode_header(header) + b"".join(bytes(p.data) for p in parts)


def _is_int(value):
    return isinstance(value, integer_types) and not isinstance(value, bool)


def request_id_of(header):
    """The header's id if it is a usable one (string or integer), else None."""
    if not isinstance(header, dict):
        return None
    rid = header.get("id")
    if isinstance(rid, text_type) and len(rid) <= MAX_ID_CHARS:
        return rid
    if _is_int(rid) and abs(rid) < 2 ** 53:
        return rid
    return None


def _reject_constant(name):
    raise ValueError("%s is not valid JSON" % name)


def parse_descriptors(header, payload_length):
    """Validated descriptors (dicts with name, kind, length, dtype, shape); raises ValueError."""
    payload = header.get("payload")
    if payload_length == 0:
        if payload not in (None, [], {}):
            raise ValueError("'payload' is described but 'payload_length' is 0")
        return []
    if isinstance(payload, dict):
        one = {"name": "image", "length": payload_length}
        one.update(payload)
        payload = [one]
    if not isinstance(payload, list) or not payload:
        raise ValueError("'payload_length' > 0 needs 'payload': a descriptor object or a list")
    if len(payload) > MAX_PARTS:
        raise ValueError("at most %d payload parts, got %d" % (MAX_PARTS, len(payload)))
    out = []
    names = set()
    total = 0
    for i, desc in enumerate(payload):
        if not isinstance(desc, dict):
            raise ValueError("payload part %d is not an object" % i)
        name, kind, length = desc.get("name"), desc.get("kind"), desc.get("length")
        if not isinstance(name, text_type) or not name or len(name) > 64:
            raise ValueError("payload part %d needs a 'name' (1-64 characters)" % i)
        if name in names:
            raise ValueError("payload part name %r is used twice" % name)
        names.add(name)
        if kind not in PART_KINDS:
            raise ValueError("payload part %r has kind %r" % (name, kind))
        if not _is_int(length) or length < 0:
            raise ValueError("payload part %r needs a non-negative integer 'length'" % name)
        dtype = shape = None
        if kind == "array":
            dtype, shape = desc.get("dtype"), desc.get("shape")
            if dtype not in DTYPES:
                raise ValueError("payload part %r has dtype %r" % (name, dtype))
            if (
                not isinstance(shape, list)
                or not 1 <= len(shape) <= MAX_ARRAY_DIMS
                or not all(_is_int(s) and s >= 1 for s in shape)
            ):
                raise ValueError("payload part %r needs a 'shape' of 1-%d positive integers" % (name, MAX_ARRAY_DIMS))
            expected = DTYPES[dtype][0]
            for side in shape:
                expected *= side
            if expected != length:
                raise ValueError("payload part %r: shape and dtype make %d bytes, 'length' is %d" % (name, expected, length))
            shape = tuple(shape)
        total += length
        out.append({"name": name, "kind": kind, "length": length, "dtype": dtype, "shape": shape})
    if total != payload_length:
        raise ValueError("payload parts add up to %d bytes, but 'payload_length' is %d" % (total, payload_length))
    return out


class Frame(object):
    def __init__(self, header, parts=None):
        self.header = header
        self.parts = parts or {}

    @property
    def type(self):
        return self.header.get("type", "")

    @property
    def id(self):
        return self.header.get("id")

    def __repr__(self):
        return "Frame(%r, parts=%r)" % (self.header, sorted(self.parts))


class FrameReader(object):
    """Reads frames from ``read(n)`` (up to n bytes; empty at end of stream), e.g. os.read on a pipe."""

    def __init__(self, read, max_header_bytes=MAX_HEADER_BYTES, max_payload_bytes=DEFAULT_MAX_PAYLOAD_BYTES):
        self._read = read
        self._buffer = bytearray()
        self._eof = False
        self._pending_skip = None  # (bytes, request id) of a refused payload still to skip
        self.max_header_bytes = max_header_bytes
        self.max_payload_bytes = max_payload_bytes

    def _fill(self):
        if self._eof:
            return False
        chunk = self._read(_READ_CHUNK)
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _read_line(self):
        scanned = 0
        while True:
            newline = self._buffer.find(b"\n", scanned)
            if newline >= 0:
                if newline > self.max_header_bytes:
                    del self._buffer[: newline + 1]
                    raise FrameError("bad_frame", "header line longer than %d bytes" % self.max_header_bytes)
                line = bytes(self._buffer[:newline])
                del self._buffer[: newline + 1]
                return line
            scanned = len(self._buffer)
            if scanned > self.max_header_bytes:
                self._discard_line()
                raise FrameError("bad_frame", "header line longer than %d bytes" % self.max_header_bytes)
            if not self._fill():
                if self._buffer:
                    del self._buffer[:]
                    raise FrameError("truncated_frame", "stream ended inside a header line", fatal=True)
                return None

    def _discard_line(self):
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                del self._buffer[: newline + 1]
                return
            del self._buffer[:]
            if not self._fill():
                return

    def _take(self, length):
        while len(self._buffer) < length:
            if not self._fill():
                del self._buffer[:]
                return None
        data = bytes(self._buffer[:length])
        del self._buffer[:length]
        return data

    def _skip(self, length):
        while length > 0:
            if not self._buffer and not self._fill():
                return False
            step = min(length, len(self._buffer))
            del self._buffer[:step]
            length -= step
        return True

    def read_frame(self):
        """The next Frame, or None at a clean end of stream; raises FrameError."""
        if self._pending_skip is not None:
            length, request_id = self._pending_skip
            self._pending_skip = None
            if not self._skip(length):
                raise FrameError("truncated_frame", "stream ended inside an oversized payload", request_id, True)
        while True:
            line = self._read_line()
            if line is None:
                return None
            if line.strip(b" \t\r"):
                break
        try:
            header = json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RuntimeError) as error:  # RuntimeError: deep nesting on 2.7
            raise FrameError("bad_frame", "header is not a UTF-8 JSON line: %s" % error)
        if not isinstance(header, dict):
            raise FrameError("bad_frame", "header is not a JSON object")
        request_id = request_id_of(header)
        payload_length = header.get("payload_length", 0)
        if payload_length is None:
            payload_length = 0
        if not _is_int(payload_length) or payload_length < 0:
            raise FrameError("bad_frame", "'payload_length' must be a non-negative integer", request_id)
        if payload_length > self.max_payload_bytes:
            # Refuse at once, and skip the payload on the next call.
            self._pending_skip = (payload_length, request_id)
            raise FrameError(
                "payload_too_large",
                "payload of %d bytes is over the limit of %d bytes" % (payload_length, self.max_payload_bytes),
                request_id,
            )
        try:
            descriptors = parse_descriptors(header, payload_length)
            problem = None
        except ValueError as exc:
            descriptors, problem = [], str(exc)
        data = self._take(payload_length)
        if data is None:
            raise FrameError(
                "truncated_frame", "stream ended inside a payload of %d bytes" % payload_length, request_id, True
            )
        if problem is not None:
            raise FrameError("bad_frame", problem, request_id)
        if not isinstance(header.get("type"), text_type) or not header["type"]:
            raise FrameError("bad_frame", "header has no 'type' string", request_id)
        parts = {}
        offset = 0
        for desc in descriptors:
            chunk = data[offset : offset + desc["length"]]
            offset += desc["length"]
            parts[desc["name"]] = Part(desc["name"], desc["kind"], chunk, desc["dtype"], desc["shape"])
        return Frame(header, parts)


def read_all(data, **limits):
    """Every frame (or FrameError) in a bytes string; for tests and tools."""
    data = bytes(data)
    state = {"pos": 0}

    def read(n):
        chunk = data[state["pos"] : state["pos"] + n]
        state["pos"] += len(chunk)
        return chunk

    reader = FrameReader(read, **limits)
    out = []
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
