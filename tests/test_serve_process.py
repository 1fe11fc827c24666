"""`dragfu serve` as a real process: stdout hygiene, the real engine behind it, the ssh-like wrapper."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dragfu.models import save_generator
from dragfu.protocol.frames import numpy_array, numpy_part, read_all
from dragfu_core.engine_client import EngineClient, EngineError, ProgressEvent, Result

HERE = Path(__file__).resolve().parent
FAKE_ENGINE = HERE / "protocol_vectors" / "serve_fake_engine.py"
WRAPPER = HERE / "protocol_vectors" / "ssh_like_wrapper.sh"
from tests.conftest import SERVE_COMMAND  # noqa: E402

SERVE = SERVE_COMMAND


def open_engine(argv: list[str]) -> EngineClient:
    """The one protocol client, started with this Python's environment (PYTHONPATH included)."""
    return EngineClient(argv, env=dict(os.environ))


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.conftest import make_tiny_generator

    return save_generator(
        make_tiny_generator(), tmp_path_factory.mktemp("models") / "tiny.safetensors"
    )


def test_stray_prints_from_libraries_never_reach_the_frame_stream():
    """The fake engine prints to sys.stdout and writes to fd 1 while loading: both land on stderr."""
    requests = b"".join(
        [
            b'{"type":"hello","id":1}\n',
            b'{"type":"load_model","id":2,"model":"fake"}\n',
        ]  # then end of input: queued work still finishes
    )
    done = subprocess.run(
        [sys.executable, str(FAKE_ENGINE), "--noisy"],
        input=requests,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    frames = read_all(done.stdout)
    assert [(f.type, f.id) for f in frames] == [("result", 1), ("progress", 2), ("result", 2)]
    assert b"a library printing to stdout" in done.stderr
    assert b"C code writing to fd 1" in done.stderr


def test_real_serve_drags_a_real_generator_and_refuses_bad_models(tiny_model, tmp_path):
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(tiny_model.read_bytes()[:500])
    (tmp_path / "corrupt.json").write_text((tiny_model.with_suffix(".json")).read_text())
    with open_engine(SERVE) as engine:
        hello = engine.request("hello", {"protocol": 1}, timeout=120)
        assert hello.header["protocol"] == 1 and hello.header["device"] == "cpu"
        assert "toy" in [m["name"] for m in hello.header["models"]]

        with pytest.raises(EngineError) as info:
            engine.request("load_model", {"model": "no-such-model"})
        assert info.value.code == "unknown_model"
        with pytest.raises(EngineError) as info:
            engine.request("load_model", {"model": str(corrupt)})
        assert info.value.code == "bad_model"

        loaded = engine.request("load_model", {"model": str(tiny_model)})
        assert loaded.header["resolution"] == [32, 32]
        progress = []
        result = engine.request(
            "drag", {"model": str(tiny_model), "seed": 1, "handles": [[10, 10]], "targets": [[16, 12]],
             "max_steps": 3, "preview_every": 2, "output": "array"},
            progress=progress.append,
        )  # fmt: skip
        assert all(isinstance(p, ProgressEvent) for p in progress) and isinstance(result, Result)
        assert [(p.stage, p.step) for p in progress] == [("drag", s) for s in (0, 1, 2, 3)]
        assert [(p.preview is not None) for p in progress] == [True, False, True, False]
        assert result.request == "drag" and result.image is result.parts["image"]
        image = numpy_array(result.parts["image"])
        assert image.shape == (32, 32, 3)
        assert result.header["steps"] == 3 and len(result.header["points"]) == 1
        # Unknown drag options are refused by name.
        with pytest.raises(EngineError) as info:
            engine.request(
                "drag", {"model": str(tiny_model), "seed": 1, "handles": [[10, 10]], "targets": [[16, 12]],
                 "options": {"learning_rate": 1}}
            )  # fmt: skip
        assert info.value.code == "bad_request" and "learning_rate" in info.value.args[0]
        # A real projection of a non-square crop (a few steps), then a drag on it in crop coordinates.
        crop = np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        settings = {
            "w_steps": 2,
            "wplus_steps": 1,
            "tune_steps": 1,
            "w_avg_samples": 100,
            "perceptual": "fallback",
        }
        phases = []
        projected = engine.request(
            "project", {"model": str(tiny_model), "cache": False, "output": "array", "settings": settings},
            [numpy_part("image", crop), numpy_part("weight_mask", np.full((40, 48), 255, np.uint8))],
            progress=lambda f: phases.append(f.header.get("phase")),
        )  # fmt: skip
        assert phases == ["w", "w", "w+", "tune"]
        assert projected.header["size"] == [48, 40] and projected.header["model_size"] == [32, 32]
        assert numpy_array(projected.parts["image"]).shape == (40, 48, 3)
        dragged = engine.request(
            "drag", {"projection_id": projected.header["projection_id"], "handles": [[10, 10]],
             "targets": [[20, 12]], "max_steps": 1, "output": "array"}
        )  # fmt: skip
        # The changed box of the crop comes back, inside the crop.
        x, y, w, h = dragged.header["box"]
        assert numpy_array(dragged.parts["image"]).shape == (h, w, 3)
        assert 0 <= x and 0 <= y and x + w <= 48 and y + h <= 40
        with pytest.raises(EngineError) as info:  # settings are checked by the projection itself
            engine.request("project", {"model": str(tiny_model), "settings": {"w_stepz": 1}},
                           [numpy_part("image", crop)])  # fmt: skip
        assert info.value.code == "bad_request" and "w_stepz" in info.value.args[0]
        # Still serving after all the errors.
        again = engine.request("drag", {"latent_id": result.header["latent_id"], "handles": [[12, 12]],
                                "targets": [[12, 16]], "max_steps": 1})  # fmt: skip
        assert again.type == "result"
    assert engine.proc.returncode == 0


def test_real_serve_payload_limit_and_binary_echo_through_the_wrapper():
    blob = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    with open_engine([str(WRAPPER), *SERVE, "--max-payload-mb", "0.01"]) as engine:
        engine.request("hello", timeout=120)
        echo = engine.request("echo", None, [numpy_part("pixels", blob[:32, :32])])
        assert np.array_equal(numpy_array(echo.parts["pixels"]), blob[:32, :32])
        with pytest.raises(EngineError) as info:
            engine.request("echo", None, [numpy_part("pixels", blob)])  # 12 KiB > 10 KiB
        assert info.value.code == "payload_too_large"
        assert engine.request("hello").type == "result"
    assert engine.proc.returncode == 0


def test_serve_exits_after_idle_timeout_with_its_input_still_open():
    proc = subprocess.Popen(
        [*SERVE[:-2], "--idle-timeout", "0.5"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.wait(timeout=60) == 0  # nothing sent, stdin never closed
        assert b"idle" in proc.stderr.read()
        assert proc.stdout.read() == b""
    finally:
        proc.kill()
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            stream.close()


def test_engine_exits_when_its_client_disappears_mid_request():
    proc = subprocess.Popen(
        [sys.executable, str(FAKE_ENGINE), "--step-seconds", "0.01", "--resolution", "1024"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        drag = b'{"type":"drag","id":"d","seed":0,"handles":[[0,0]],"targets":[[1000,1000]],"max_steps":100000}\n'
        proc.stdin.write(b'{"type":"load_model","id":"m","model":"fake"}\n' + drag)
        proc.stdin.flush()
        # Wait until the drag is streaming progress, then vanish: both pipes closed, no goodbye.
        seen = b""
        while b'"id":"d"' not in seen:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, proc.stderr.read()
            seen += chunk
        proc.stdout.close()
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
        assert b"client went away" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


TOY = Path(__file__).resolve().parents[1] / "engine" / "dragfu" / "assets" / "toy.safetensors"


@pytest.mark.slow  # about 10 s on a 2-core CPU: a toy drag step alone takes over a second
@pytest.mark.skipif(not TOY.exists(), reason="the embedded toy model is not in the checkout yet")
def test_real_serve_with_the_embedded_toy_model():
    with open_engine(SERVE) as engine:
        hello = engine.request("hello", timeout=120)
        toy = [m for m in hello.header["models"] if m["name"] == "toy"]
        assert toy and toy[0]["present"] and toy[0]["resolution"] == [128, 128]
        loaded = engine.request("load_model", {"model": "toy"})  # the default model
        assert loaded.header["resolution"] == [128, 128]
        result = engine.request(
            "drag", {"seed": 3, "handles": [[64, 64]], "targets": [[72, 64]], "max_steps": 1, "output": "png"}
        )  # fmt: skip
        assert result.header["model"] == "toy" and result.header["steps"] == 1
        assert result.parts["image"].kind == "png" and result.parts["image"].data.startswith(
            b"\x89PNG"
        )
