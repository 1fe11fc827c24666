"""The stdio protocol between the plug-in and the engine (docs/protocol.md).

frames    the frame codec: JSON header line + binary payload parts
messages  typed requests, validation, event builders, stable error codes
server    `dragfu serve`: the engine as a long-lived process
client    a small Python 3 client for engine-side tools (doctor, benchmarks, tests)
"""

from dragfu.protocol.frames import (
    PROTOCOL_VERSION,
    Frame,
    FrameError,
    FrameReader,
    Part,
    encode_frame,
)

__all__ = ["PROTOCOL_VERSION", "Frame", "FrameError", "FrameReader", "Part", "encode_frame"]
