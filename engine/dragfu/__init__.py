"""Drag-Fu engine: StyleGAN2 generator, projection, DragGAN point dragging, stdio server."""

__version__ = "0.1.0"
