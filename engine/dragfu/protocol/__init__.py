"""The stdio protocol between the plug-in and the engine (docs/protocol.md).

The frame codec, the typed events and the client are the plug-in core's (``dragfu_core.frames``,
``dragfu_core.events``, ``dragfu_core.engine_client``: stdlib only, Python 2.7 and 3.x), shipped
in the engine's wheel as a second top-level package; in a source checkout they are found beside
the engine (plugin/dragfu/dragfu_core). This package adds the engine's side:

frames    the numpy adapter over the codec (array parts <-> numpy, images -> parts)
messages  typed requests, validation, event builders, stable error codes
backend   the ``Backend`` protocol the server drives;  torch_backend  the real one (EngineBackend)
runtime   the server: jobs, threads, queue, sending, life cycle
handlers  the requests' work: hello, load_model, project, drag
stdio     claim_stdio, run_server (what `dragfu serve` runs)
server    the names above in one place (compatibility)
"""

from __future__ import annotations

import sys
from pathlib import Path


def _find_plugin_core() -> None:
    """Make ``dragfu_core`` importable from a source checkout (an installed wheel has it)."""
    try:
        import dragfu_core  # noqa: F401
    except ImportError:
        plugin = Path(__file__).resolve().parents[3] / "plugin" / "dragfu"
        if not (plugin / "dragfu_core" / "frames.py").is_file():
            raise
        # Appended: plugin/dragfu also holds dragfu.py, which must never shadow the engine.
        sys.path.append(str(plugin))


_find_plugin_core()

from dragfu.protocol.frames import (  # noqa: E402
    PROTOCOL_VERSION,
    Frame,
    FrameError,
    FrameReader,
    Part,
    encode_frame,
)

__all__ = ["PROTOCOL_VERSION", "Frame", "FrameError", "FrameReader", "Part", "encode_frame"]
