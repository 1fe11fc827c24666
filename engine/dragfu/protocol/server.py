"""`dragfu serve`: the engine as a long-lived process speaking the stdio protocol.

The server comes in parts (this module names them in one place):
- ``runtime``   jobs, threads, the queue, sending, the life cycle (``Runtime``);
- ``handlers``  what hello, load_model, project and drag do (``Server``);
- ``backend``   the interface the handlers drive (``Backend``, ``DragOutcome``, ``ProjectOutcome``);
- ``torch_backend``  its real implementation (``EngineBackend``);
- ``stdio``     ``claim_stdio``, ``run_server``.
"""

from dragfu.protocol.backend import Backend, DragOutcome, ProjectOutcome
from dragfu.protocol.handlers import DEFAULT_MAX_LATENTS, Latent, Server
from dragfu.protocol.runtime import (
    DEFAULT_IDLE_TIMEOUT,
    INTERNAL_HINT,
    OOM_HINT,
    SHUTDOWN_GRACE_SECONDS,
    Job,
    Runtime,
)
from dragfu.protocol.stdio import claim_stdio, run_server
from dragfu.protocol.torch_backend import EngineBackend, is_out_of_memory

__all__ = [
    "DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_LATENTS", "INTERNAL_HINT", "OOM_HINT",
    "SHUTDOWN_GRACE_SECONDS", "Backend", "DragOutcome", "EngineBackend", "Job", "Latent",
    "ProjectOutcome", "Runtime", "Server", "claim_stdio", "is_out_of_memory", "run_server",
]  # fmt: skip
