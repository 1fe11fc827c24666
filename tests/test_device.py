"""Device choice (`--device`, `DRAGFU_DEVICE`, auto) and autocast precision (engine/dragfu/device.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dragfu import device as device_module
from dragfu.cli.main import main
from dragfu.device import autocast, choose_device
from dragfu.drag import drag
from dragfu.errors import BadInputError, DragfuError
from dragfu.models.seeds import z_from_seed
from tests.conftest import make_tiny_generator


@pytest.fixture
def machine(monkeypatch):
    """Pretend this machine has CUDA and/or MPS: `machine(cuda=..., mps=...)`."""
    monkeypatch.delenv("DRAGFU_DEVICE", raising=False)

    def set_up(*, cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return set_up


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_auto_takes_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert choose_device().type == expected
    assert choose_device("auto").type == expected
    assert choose_device(" AUTO ").type == expected


def test_dragfu_device_overrides_auto(machine, monkeypatch):
    machine(cuda=True, mps=True)
    monkeypatch.setenv("DRAGFU_DEVICE", "cpu")
    assert choose_device().type == "cpu"
    monkeypatch.setenv("DRAGFU_DEVICE", "mps")
    assert choose_device().type == "mps"
    monkeypatch.setenv("DRAGFU_DEVICE", "cuda:1")
    assert choose_device() == torch.device("cuda:1")


def test_device_option_wins_over_dragfu_device(machine, monkeypatch):
    machine(cuda=True, mps=False)
    monkeypatch.setenv("DRAGFU_DEVICE", "cuda")
    assert choose_device("cpu").type == "cpu"
    # ...including --device auto, which ignores DRAGFU_DEVICE
    monkeypatch.setenv("DRAGFU_DEVICE", "cpu")
    assert choose_device("auto").type == "cuda"


@pytest.mark.parametrize(
    "name, message",
    [
        ("cuda", "device cuda requested, but this torch sees no CUDA GPU"),
        ("cuda:0", "device cuda requested, but this torch sees no CUDA GPU"),
        ("mps", "device mps requested, but Apple MPS is not available"),
        ("tpu", "unknown device 'tpu'"),
    ],
)
def test_an_absent_device_is_one_clear_error(machine, name, message):
    machine(cuda=False, mps=False)
    with pytest.raises(DragfuError, match=message):
        choose_device(name)


def test_absent_device_in_the_cli_is_one_line_and_exit_2(machine, monkeypatch, capsys, tmp_path):
    machine(cuda=False, mps=False)
    out = tmp_path / "s.png"
    assert main(["sample", "--seed", "1", "--device", "cuda", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "dragfu sample: error: device cuda requested, but this torch sees no CUDA GPU"
        " (use --device cpu)"
    ]
    assert not out.exists()
    # the same from DRAGFU_DEVICE, and --device cpu gets past it
    monkeypatch.setenv("DRAGFU_DEVICE", "mps")
    assert main(["sample", "--seed", "1", "--out", str(out), "--quiet"]) == 2
    assert "device mps requested" in capsys.readouterr().err
    assert main(["sample", "--seed", "1", "--device", "cpu", "--out", str(out), "--quiet"]) == 0
    assert out.exists()


def test_unknown_precision_is_refused():
    with pytest.raises(BadInputError, match="unknown precision 'fp8'"):
        autocast(torch.device("cpu"), "fp8")


def test_autocast_on_the_cpu_is_bf16_only():
    cpu = torch.device("cpu")
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with autocast(cpu, "bf16"):
        assert (a @ b).dtype == torch.bfloat16
    for precision in ("fp32", "fp16"):  # fp16 on the CPU: left in fp32
        with autocast(cpu, precision):
            assert (a @ b).dtype == torch.float32
    with autocast(torch.device("mps"), "bf16"):  # a no-op off CUDA and the CPU
        assert (a @ b).dtype == torch.float32


def test_synthesis_under_bf16_on_the_cpu_is_finite_and_close_to_fp32():
    G = make_tiny_generator()
    z = z_from_seed(3, G.z_dim)
    cpu = torch.device("cpu")
    with torch.no_grad():
        ws = G.mapping(z, None, truncation_psi=0.7)
        full = G.synthesis(ws, noise_mode="const")
        with autocast(cpu, "bf16"):
            low = G.synthesis(ws, noise_mode="const").float()
    assert torch.isfinite(low).all()
    error = (low - full).abs()
    assert 0 < error.max() and error.mean() < 0.02 * full.abs().mean()


def test_a_drag_under_bf16_on_the_cpu_runs_and_stays_close_to_fp32():
    G = make_tiny_generator()
    with torch.no_grad():
        ws = G.mapping(z_from_seed(3, G.z_dim), None, truncation_psi=0.7)
    handles, targets = [(12.5, 14.5)], [(16.5, 14.5)]
    runs = {
        precision: drag(G, ws, handles, targets, max_steps=4, precision=precision)
        for precision in ("fp32", "bf16")
    }
    full, low = runs["fp32"], runs["bf16"]
    assert low.steps == full.steps == 4
    assert torch.isfinite(low.ws).all() and np.isfinite(np.asarray(low.points)).all()
    assert not torch.equal(low.ws, full.ws)  # it really ran in bf16...
    assert (low.ws - full.ws).abs().max() < 0.05 * full.ws.abs().max()  # ...and stayed close
    assert np.abs(np.subtract(low.points, full.points)).max() < 0.5
    diff = np.abs(low.image.astype(int) - full.image.astype(int))
    assert diff.mean() < 2.0


def test_device_module_reads_mps_lazily(monkeypatch):
    # a torch without torch.backends.mps (old builds): auto still answers
    monkeypatch.delenv("DRAGFU_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delattr(torch.backends, "mps")
    assert not device_module.mps_available()
    assert choose_device().type == "cpu"
