"""The engine's numpy adapter over the one frame codec (``dragfu_core.frames``, docs/protocol.md).

Everything about frames on the wire (header line, parts, limits, staying in sync) is the plug-in
core's stdlib codec, re-exported here; the engine only adds the step between an ``array`` part and
a numpy array, and images as parts (PNG or raw).
"""

from __future__ import annotations

import io

import numpy as np

from dragfu_core.frames import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    FRAME_ERROR_CODES,
    MAX_ARRAY_DIMS,
    MAX_HEADER_BYTES,
    MAX_ID_CHARS,
    MAX_PARTS,
    PART_KINDS,
    PROTOCOL_VERSION,
    SUPPORTED_PROTOCOL_VERSIONS,
    Frame,
    FrameError,
    FrameReader,
    Part,
    array_part,
    encode_frame,
    encode_header,
    parse_descriptors,
    png_part,
    read_all,
    request_id_of,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES", "DTYPES", "FRAME_ERROR_CODES", "MAX_ARRAY_DIMS", "MAX_HEADER_BYTES",
    "MAX_ID_CHARS", "MAX_PARTS", "PART_KINDS", "PROTOCOL_VERSION", "SUPPORTED_PROTOCOL_VERSIONS",
    "Frame", "FrameError", "FrameReader", "Part", "array_part", "encode_frame", "encode_header",
    "image_part", "numpy_array", "numpy_part", "parse_descriptors", "png_part", "read_all",
    "request_id_of",
]  # fmt: skip

# Wire dtype names -> numpy dtypes; always little-endian whatever the machine.
DTYPES: dict[str, np.dtype] = {
    "uint8": np.dtype("<u1"),
    "uint16": np.dtype("<u2"),
    "int32": np.dtype("<i4"),
    "float32": np.dtype("<f4"),
}


def numpy_array(part: Part) -> np.ndarray:
    """An ``array`` part as a read-only numpy array (no copy)."""
    if part.kind != "array" or part.dtype is None or part.shape is None:
        raise ValueError(f"payload part {part.name!r} is {part.kind}, not an array")
    return np.frombuffer(part.data, dtype=DTYPES[part.dtype]).reshape(part.shape)


def numpy_part(name: str, array: np.ndarray) -> Part:
    """A numpy array as an ``array`` part; its dtype must be one of ``DTYPES``."""
    array = np.asarray(array)
    for wire_name, dtype in DTYPES.items():
        if array.dtype.kind == dtype.kind and array.dtype.itemsize == dtype.itemsize:
            data = np.ascontiguousarray(array, dtype=dtype).tobytes()
            return Part(name, "array", data, wire_name, tuple(int(s) for s in array.shape))
    raise ValueError(f"dtype {array.dtype} cannot travel in a frame (use one of {list(DTYPES)})")


def image_part(name: str, image: np.ndarray, output: str) -> Part:
    """An RGB uint8 image as a part: raw (``output`` "array") or PNG (fast compression: a pipe)."""
    if output == "array":
        return numpy_part(name, np.ascontiguousarray(image, dtype=np.uint8))
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return png_part(name, buffer.getvalue())
