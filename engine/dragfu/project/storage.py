"""Saving and loading projections as safetensors: the W+ latent, the tuned-weight difference, metadata.

File layout (safetensors; all metadata values are strings):
- tensor `ws` [1, num_ws, w_dim] float32: the latent;
- tensors `delta.<state-dict name>` (float16 by default): tuned minus original, changed tensors only;
- tensor `reconstruction` uint8 [H, W, 3]: the reconstruction (so a cache hit needs no synthesis);
- metadata `format` = "dragfu-projection", `version`, `model_sha256` (see `model_fingerprint`),
  `num_ws`, `w_dim`, `img_resolution` (the image's height), `img_width`, `psnr`, `ssim`, `seconds`,
  `stages` (JSON), `settings` (JSON), `perceptual`.

A file holding only `ws` (a plain latent) loads too, with shape checks only.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from dragfu.errors import BadInputError
from dragfu.project.projector import (
    Projection,
    StageResult,
    apply_delta,
    model_fingerprint,
    to_uint8,
)
from dragfu.project.settings import ProjectSettings

FORMAT = "dragfu-projection"
VERSION = "1"
DELTA_PREFIX = "delta."


def save_projection(projection: Projection, path: str | os.PathLike) -> Path:
    """Write `projection` to `path` (safetensors), atomically (a temporary file, then a rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {
        "ws": projection.ws.detach().to("cpu", torch.float32).contiguous()
    }
    for name, difference in projection.tuned_delta.items():
        tensors[DELTA_PREFIX + name] = difference.detach().to("cpu").contiguous()
    tensors["reconstruction"] = torch.from_numpy(np.ascontiguousarray(projection.reconstruction))
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "model_sha256": projection.model_sha256,
        "num_ws": str(projection.ws.shape[1]),
        "w_dim": str(projection.ws.shape[2]),
        "img_resolution": str(projection.reconstruction.shape[0]),
        "img_width": str(projection.reconstruction.shape[1]),
        "psnr": repr(float(projection.psnr)),
        "ssim": repr(float(projection.ssim)),
        "seconds": repr(float(projection.seconds)),
        "stages": json.dumps({k: v.to_dict() for k, v in projection.stages.items()}),
        "settings": projection.settings.to_json(),
        "perceptual": projection.perceptual,
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(tensors, str(temporary), metadata=metadata)
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise BadInputError(f"cannot write latent file {path}: {error.strerror or error}") from None
    return path


def load_projection(
    path: str | os.PathLike, G: torch.nn.Module, *, fingerprint: str | None = None
) -> Projection:
    """Read a projection for generator G; one-line errors for a bad file or a file of another model.

    `fingerprint` (G's `model_fingerprint`) may be passed when the caller already has it.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"latent file not found: {path}", code="bad_latent")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadInputError(
            f"cannot read latent file {path}: {reason}",
            hint="expected a .safetensors file",
            code="bad_latent",
        ) from None

    if "ws" not in tensors:
        raise BadInputError(f"latent file {path} has no 'ws' tensor", code="bad_latent")
    ws = tensors["ws"]
    if ws.ndim == 2:
        ws = ws[None]
    expected = (1, int(G.num_ws), int(G.w_dim))
    if tuple(ws.shape) != expected:
        raise BadInputError(
            f"latent in {path} has shape {list(ws.shape)}, this model needs {list(expected)}",
            hint="it was made with another model",
            code="wrong_model",
        )
    if not ws.is_floating_point() or not bool(torch.isfinite(ws).all()):
        raise BadInputError(f"latent in {path} contains NaN or infinite values", code="bad_latent")
    if metadata.get("format", FORMAT) != FORMAT:
        raise BadInputError(
            f"{path} is not a Drag-Fu latent (format {metadata.get('format')!r})", code="bad_latent"
        )
    if metadata.get("version", VERSION) != VERSION:
        raise BadInputError(
            f"latent file {path} has version {metadata.get('version')}, this Drag-Fu reads {VERSION}",
            code="bad_latent",
        )
    stored_model = metadata.get("model_sha256", "")
    if stored_model:
        fingerprint = fingerprint or model_fingerprint(G)
        if stored_model != fingerprint:
            raise BadInputError(
                f"latent file {path} was made with another model "
                f"(model {stored_model[:12]}, this one is {fingerprint[:12]})",
                hint="project the image again with this model",
                code="wrong_model",
            )

    delta = {k[len(DELTA_PREFIX) :]: v for k, v in tensors.items() if k.startswith(DELTA_PREFIX)}
    if any(not d.is_floating_point() for d in delta.values()):
        raise BadInputError(f"tuned weights in {path} are not floating point", code="bad_latent")
    # One check over all of them (float32: elementwise float16 maths is slow on CPUs).
    if delta and not bool(
        torch.cat([d.reshape(-1).float() for d in delta.values()]).isfinite().all()
    ):
        bad = next(name for name, d in delta.items() if not bool(d.float().isfinite().all()))
        raise BadInputError(
            f"tuned weights in {path} ({bad}) contain NaN or infinite values", code="bad_latent"
        )
    generator = apply_delta(G, delta)
    ws = ws.to(torch.float32)

    reconstruction = tensors.get("reconstruction")
    width, height = G.image_size
    if (
        reconstruction is not None
        and tuple(reconstruction.shape) == (height, width, 3)
        and reconstruction.dtype == torch.uint8
    ):
        reconstruction_np = reconstruction.numpy().copy()
    else:
        with torch.no_grad():
            device = next(generator.parameters()).device
            reconstruction_np = to_uint8(generator.synthesis(ws.to(device), noise_mode="const"))

    try:
        settings = (
            ProjectSettings.from_dict(json.loads(metadata["settings"]))
            if "settings" in metadata
            else ProjectSettings()
        )
        stages = {
            name: StageResult(**values)
            for name, values in json.loads(metadata.get("stages", "{}")).items()
        }
    except (ValueError, TypeError, BadInputError):
        settings, stages = (
            ProjectSettings(),
            {},
        )  # metadata from a newer version: numbers are optional

    return Projection(
        ws=ws,
        generator=generator,
        tuned_delta=delta,
        reconstruction=reconstruction_np,
        psnr=_float(metadata.get("psnr")),
        ssim=_float(metadata.get("ssim")),
        seconds=_float(metadata.get("seconds")),
        stages=stages,
        model_sha256=stored_model,
        settings=settings,
        perceptual=metadata.get("perceptual", ""),
    )


def _float(text: str | None) -> float:
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        return math.nan
    return value
