"""Choosing the compute device: `--device auto|cuda|mps|cpu` or `DRAGFU_DEVICE`."""

from __future__ import annotations

import contextlib
import logging
import os

import torch

from dragfu.errors import BadInputError

log = logging.getLogger(__name__)
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


def mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def choose_device(name: str | None = None) -> torch.device:
    """`name` (or $DRAGFU_DEVICE, or auto): auto picks CUDA, then Apple MPS, then the CPU."""
    requested = (name or os.environ.get("DRAGFU_DEVICE") or "auto").strip().lower()
    kind = requested.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise BadInputError(
            f"unknown device {requested!r}; choose one of {', '.join(DEVICE_CHOICES)}"
        )
    if kind == "auto":
        kind = "cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu"
        log.info("device auto: using %s", kind)
        return torch.device(kind)
    if kind == "cuda" and not torch.cuda.is_available():
        raise BadInputError(
            "device cuda requested, but this torch sees no CUDA GPU", hint="use --device cpu"
        )
    if kind == "mps" and not mps_available():
        raise BadInputError(
            "device mps requested, but Apple MPS is not available", hint="use --device cpu"
        )
    return torch.device(requested)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


PRECISIONS = ("fp32", "fp16", "bf16")


def autocast(device: torch.device, precision: str = "fp32"):
    """fp16/bf16 autocast on CUDA, bf16 autocast on the CPU (where this torch has CPU autocast);
    a no-op for fp32 and elsewhere (fp16 on the CPU, MPS)."""
    if precision not in PRECISIONS:
        raise BadInputError(
            f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}"
        )
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=dtype)
    if device.type == "cpu" and precision == "bf16" and _cpu_autocast_available():
        return torch.autocast("cpu", dtype=dtype)
    return contextlib.nullcontext()


def _cpu_autocast_available() -> bool:
    check = getattr(getattr(torch, "amp", None), "is_autocast_available", None)
    return bool(check("cpu")) if check is not None else True  # torch < 2.3 has CPU bf16 autocast
