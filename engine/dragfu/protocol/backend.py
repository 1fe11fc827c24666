"""The interface the server drives: ``Backend``, and what its slow calls return.

The real one is ``dragfu.protocol.torch_backend.EngineBackend``; the tests' fake
(tests/protocol_vectors/serve_fake_engine.py) implements the same protocol. The server only ever
calls these methods, so everything torch lives behind them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class DragOutcome:
    image: np.ndarray  # uint8 [H, W, 3] at the model's image size
    ws: Any
    points: list[tuple[float, float]]  # model coordinates
    steps: int
    seconds: float
    seconds_per_step: float
    converged: bool
    stopped: bool = False  # ended by `stop`: the state reached
    pins: list[tuple[float, float]] = field(default_factory=list)  # tracked pins, model coords


@dataclass
class ProjectOutcome:
    generator: Any
    ws: Any
    reconstruction: np.ndarray | None  # uint8 [H, W, 3] at the model's image size
    stats: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Backend(Protocol):
    """What `dragfu serve` needs from an engine. ``G`` is whatever ``load_model`` returns."""

    def info(self) -> dict[str, Any]:
        """For ``hello``: ``devices``, ``device``, ``models`` (and e.g. ``torch``)."""
        ...

    def load_model(self, name: str) -> Any:
        """The generator named ``name`` (registry name or path); DragfuError when it cannot be."""
        ...

    def image_size(self, G: Any) -> tuple[int, int]:
        """(width, height) of the model's images."""
        ...

    def seed_ws(self, G: Any, seed: int, psi: float) -> Any:
        """The W+ latent of a seed at truncation ``psi``."""
        ...

    def render(self, G: Any, ws: Any) -> np.ndarray:
        """The model's image of ``ws``: uint8 [H, W, 3]."""
        ...

    def mean_image(self, G: Any) -> np.ndarray | None:
        """The model's average subject (what alignment looks for), or None when it has none."""
        ...

    def project(
        self,
        G: Any,
        image: np.ndarray,
        weight_mask: np.ndarray | None,
        settings: dict[str, Any],
        callback: Callable[[Any], None],
        cancel: threading.Event,
        cache: bool = True,
    ) -> ProjectOutcome:
        """Project a model-sized image; ``callback(progress)`` every step (``stage``, ``step``,
        ``total``, ``loss``, optional ``preview``)."""
        ...

    def drag(
        self, G: Any, ws: Any, handles: list[tuple[float, float]],
        targets: list[tuple[float, float]], *, waypoints: list | None, mask: np.ndarray | None,
        method: str, max_steps: int, preview_every: int, callback: Callable[[Any], None],
        cancel: threading.Event, seed: int, options: dict[str, Any],
        stop: threading.Event | None = None, pins: list[tuple[float, float]] | None = None,
        preview_ready: Callable[[], bool] | None = None,
    ) -> DragOutcome:  # fmt: skip
        """Drag in model coordinates; ``callback(progress)`` every step (``step``, ``max_steps``,
        ``points``, optional ``pins``, ``preview`` and ``preview_seconds``). ``cancel`` set: raise
        CancelledError; ``stop`` set: end at the next step with the state reached
        (``stopped=True``). ``pins``: points that must stay where they are. ``preview_ready``:
        asked before a due preview is rendered; False: none this step."""
        ...
