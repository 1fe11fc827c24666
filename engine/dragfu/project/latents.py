"""Drag results kept on disk, so a later drag on the result layer continues without projecting.

A drag's final state: the W+ latent after the drag, the tuned generator (as its difference from
the model, like a projection's), and the photo frame (the edited crop, the model's image of the
latent, the alignment). Files are safetensors named by a random key in ``<cache dir>/latents/``
(the projection cache's folder and size rules: ``DRAGFU_CACHE_DIR``, ``DRAGFU_CACHE_MAX_MB``,
least recently used first out). The plug-in keeps the key in the result layer's parasite.

Tensors: ``ws`` float32 [1, num_ws, w_dim]; ``delta.<name>`` float16; ``photo`` uint8 [h, w, 3];
``before`` uint8 [H, W, 3]. Metadata: ``format`` "dragfu-latent", ``version``, ``model``,
``model_sha256``, ``alignment`` (JSON), ``size`` (JSON [w, h]).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dragfu.errors import BadInputError
from dragfu.project.cache import ProjectionCache
from dragfu.project.projector import apply_delta, model_fingerprint

FORMAT = "dragfu-latent"
VERSION = "1"
DELTA_PREFIX = "delta."


@dataclass
class StoredLatent:
    model: str
    generator: torch.nn.Module
    ws: torch.Tensor
    photo: np.ndarray
    before: np.ndarray
    alignment: dict[str, Any]
    size: tuple[int, int]


def new_key() -> str:
    return secrets.token_hex(16)


def generator_delta(G: torch.nn.Module, tuned: torch.nn.Module) -> dict[str, torch.Tensor]:
    """tuned - G for the state-dict tensors that differ (empty when tuned is G)."""
    if tuned is G:
        return {}
    base = G.state_dict()
    delta = {}
    for name, value in tuned.state_dict().items():
        original = base.get(name)
        if original is None or not value.is_floating_point() or torch.equal(value, original):
            continue
        delta[name] = (value - original).to("cpu", torch.float16).contiguous()
    return delta


class LatentStore(ProjectionCache):
    """The projection cache's rules over ``<cache dir>/latents``."""

    def __init__(self, directory: str | os.PathLike | None = None, **kwargs: Any) -> None:
        super().__init__(directory, **kwargs)
        self.directory = self.directory.parent / "latents"

    def save(
        self, key: str, G: torch.nn.Module, tuned: torch.nn.Module, ws: torch.Tensor, *,
        model: str, photo: np.ndarray, before: np.ndarray, alignment: dict[str, Any],
        size: tuple[int, int],
    ) -> Path | None:  # fmt: skip
        """Write one drag result; a cache that cannot be written is skipped (never fatal)."""
        from safetensors.torch import save_file

        tensors = {"ws": ws.detach().to("cpu", torch.float32).contiguous()}
        for name, difference in generator_delta(G, tuned).items():
            tensors[DELTA_PREFIX + name] = difference
        tensors["photo"] = torch.from_numpy(np.ascontiguousarray(photo, np.uint8))
        tensors["before"] = torch.from_numpy(np.ascontiguousarray(before, np.uint8))
        metadata = {
            "format": FORMAT, "version": VERSION, "model": model,
            "model_sha256": model_fingerprint(G), "alignment": json.dumps(alignment),
            "size": json.dumps(list(size)),
        }  # fmt: skip
        path = self.path_for(key)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            save_file(tensors, str(temporary), metadata=metadata)
            os.replace(temporary, path)
        except OSError:
            temporary.unlink(missing_ok=True)
            return None
        self.evict(keep=path)
        return path

    def load(self, key: str, G: torch.nn.Module) -> StoredLatent | None:
        """The drag result stored under ``key`` for G; None when it is gone, torn, or another model's."""
        from safetensors import SafetensorError, safe_open

        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
            if metadata.get("format") != FORMAT or metadata.get("version") != VERSION:
                raise BadInputError("not a Drag-Fu latent of this version")
            if metadata.get("model_sha256") != model_fingerprint(G):
                return None
            ws = tensors["ws"].to(torch.float32)
            if tuple(ws.shape) != (1, int(G.num_ws), int(G.w_dim)):
                raise BadInputError("latent of another shape")
            delta = {
                k[len(DELTA_PREFIX) :]: v for k, v in tensors.items() if k.startswith(DELTA_PREFIX)
            }
            generator = apply_delta(G, delta)
            size = json.loads(metadata["size"])
            stored = StoredLatent(
                model=metadata.get("model", ""), generator=generator, ws=ws,
                photo=tensors["photo"].numpy().copy(), before=tensors["before"].numpy().copy(),
                alignment=json.loads(metadata["alignment"]), size=(int(size[0]), int(size[1])),
            )  # fmt: skip
        except (SafetensorError, OSError, ValueError, KeyError, RuntimeError, BadInputError):
            path.unlink(missing_ok=True)  # torn or stale: the caller projects again
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return stored
