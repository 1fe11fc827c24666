"""DragGAN point dragging: motion supervision + point tracking, and our faster default method."""

from dragfu.drag.engine import (
    METHODS,
    DragProgress,
    DragResult,
    DragSettings,
    drag,
    point_distance,
)

__all__ = ["METHODS", "DragProgress", "DragResult", "DragSettings", "drag", "point_distance"]
