"""StyleGAN2 generator and checkpoint loading.

The names below are imported on first use: the registry, downloads and hashes (`dragfu models`,
`dragfu doctor`) work without importing torch, even where torch itself fails to import.
"""

from __future__ import annotations

import importlib

__all__ = ["Generator", "convert_checkpoint", "load_generator", "save_generator"]
_HOMES = {
    "Generator": "dragfu.models.stylegan2",
    "convert_checkpoint": "dragfu.models.checkpoint",
    "load_generator": "dragfu.models.checkpoint",
    "save_generator": "dragfu.models.checkpoint",
}


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'dragfu.models' has no attribute {name!r}")
