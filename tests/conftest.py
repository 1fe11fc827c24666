"""Shared fixtures: the NVIDIA reference data (tests/data/nvidia_reference), small random generators."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The engine package of this checkout, imported before any test puts plugin/dragfu on sys.path
# (whose dragfu.py, the GIMP 3 plug-in, must never shadow the engine's `dragfu`).
if str(REPO / "engine") not in sys.path:
    sys.path.insert(0, str(REPO / "engine"))
import dragfu  # noqa: E402, F401

# `dragfu serve` on the CPU, as the tests start it.
SERVE_COMMAND = [
    sys.executable,
    "-m",
    "dragfu.cli.main",
    "serve",
    "--device",
    "cpu",
    "--idle-timeout",
    "120",
]
# NVIDIA-generated reference data, carried by the repository (its README says what each file is).
REFERENCE = REPO / "tests" / "data" / "nvidia_reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE / "tiny_generator.safetensors").exists():
        pytest.fail(f"NVIDIA reference data missing at {REFERENCE}: the checkout is incomplete")
    return REFERENCE


def make_tiny_generator(resolution: int = 32, seed: int = 0, **overrides):
    """A small random-weight generator (NVIDIA layout) for fast tests."""
    from dragfu.models import Generator

    torch.manual_seed(seed)
    kwargs = dict(
        z_dim=32, c_dim=0, w_dim=32, img_resolution=resolution, img_channels=3,
        channel_base=resolution * 16, channel_max=32, conv_clamp=256,
        mapping_kwargs={"num_layers": 2},
    )  # fmt: skip
    kwargs.update(overrides)
    return Generator(**kwargs).eval().requires_grad_(False)


@pytest.fixture
def tiny_generator():
    return make_tiny_generator()
