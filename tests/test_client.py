"""The plug-in's stdlib engine client against the real `dragfu serve`, fakes, and Python 2.7."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dragfu.models import save_generator

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.append(str(REPO / "plugin" / "dragfu"))  # append: the engine package is also named dragfu
from dragfu_core import engine_client  # noqa: E402
from dragfu_core.engine_client import EngineCancelled, EngineClient, EngineError  # noqa: E402

FAKE_ENGINE = [sys.executable, str(HERE / "protocol_vectors" / "serve_fake_engine.py")]
WRAPPER = str(HERE / "protocol_vectors" / "ssh_like_wrapper.sh")
from tests.conftest import SERVE_COMMAND  # noqa: E402

SERVE = SERVE_COMMAND
PY27 = Path("/root/.pyenv/versions/2.7.18/bin/python")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from tests.conftest import make_tiny_generator

    return save_generator(
        make_tiny_generator(), tmp_path_factory.mktemp("models") / "tiny.safetensors"
    )


def test_engine_command_runs_on_the_host_inside_flatpak():
    inside = engine_client.engine_command(["dragfu", "serve"], flatpak=True)
    assert inside == ["flatpak-spawn", "--host", "--watch-bus", "dragfu", "serve"]
    # A command that already goes through flatpak-spawn (with its own --env options) is kept.
    assert engine_client.engine_command(inside, flatpak=True) == inside
    assert engine_client.engine_command(["dragfu", "serve"], flatpak=False) == ["dragfu", "serve"]
    with pytest.raises(ValueError):
        engine_client.engine_command([])


def test_engine_environment_drops_gimps_python_variables():
    env = engine_client.engine_environment(
        {"PYTHONPATH": "/gimp/py", "PYTHONHOME": "/gimp", "PATH": "/bin"}, {"X": "1"}
    )
    assert env == {"PATH": "/bin", "X": "1"}


def test_client_against_real_serve_through_ssh_like_wrapper(tiny_model):
    model = str(tiny_model)
    with EngineClient([WRAPPER, *SERVE]) as client:
        assert client.hello_info["protocol"] == 1
        assert client.load_model(model)["resolution"] == [32, 32]
        # Binary payloads survive the relays byte for byte.
        blob = os.urandom(200_000)
        echo = client.echo([engine_client.array_part("blob", blob, "uint8", [len(blob)])])
        assert echo.parts["blob"].data == blob
        # A drag with a mask and waypoints, progress through the callback.
        mask = bytearray(32 * 32)
        for y in range(32):
            for x in range(4, 28):
                mask[y * 32 + x] = 255
        seen = []
        result = client.drag(
            [(10, 10)], [(16, 12)], seed=2, model=model, max_steps=2, waypoints=[[(13, 11)]],
            mask=engine_client.rgb_part("mask", bytes(mask), 32, 32, channels=1), output="array",
            progress=lambda f: seen.append(f.header["step"]),
        )  # fmt: skip
        assert seen == [0, 1, 2]
        image = result.parts["image"]
        assert image.shape == (32, 32, 3) and len(image.data) == 32 * 32 * 3
        assert len(result.header["points"]) == 1 and result.header["latent_id"]
        # Errors come back typed, with the engine's hint; the engine stays usable.
        with pytest.raises(EngineError) as info:
            client.drag([(100, 10)], [(16, 12)], seed=2, model=model)
        assert info.value.code == "invalid_points" and info.value.hint
        # Cancel from the host's cancel button: should_cancel turns True after two progress events.
        steps = []
        with pytest.raises(EngineCancelled):
            client.drag([(10, 10)], [(20, 20)], seed=2, model=model, max_steps=100000,
                        progress=lambda f: steps.append(f.header["step"]), should_cancel=lambda: len(steps) >= 2)  # fmt: skip
        assert 2 <= len(steps) < 1000  # stopped soon after the cancel, long before max_steps
        assert client.hello()["protocol"] == 1
        code = client.close()
    assert code == 0


def test_engine_ignoring_cancel_is_killed_after_the_grace_period():
    client = EngineClient(FAKE_ENGINE)
    client.start()
    client.load_model("fake")  # so the drag goes straight into the stubborn loop
    started = time.monotonic()
    with pytest.raises(EngineCancelled) as info:
        client.drag(
            [(1, 1)],
            [(5, 5)],
            seed=0,
            model="fake",
            method="stubborn",  # ignores its cancel flag and sends nothing
            should_cancel=lambda: time.monotonic() - started > 0.3,
            cancel_grace=0.5,
        )
    assert "killed" in info.value.message
    assert time.monotonic() - started < 30  # not the fake's 60 s
    assert not client.running()


def test_engine_that_fails_to_start_reports_its_log():
    script = "echo 'ssh: Could not resolve hostname gpu-box' >&2; exit 255"
    client = EngineClient(["sh", "-c", script])
    with pytest.raises(EngineError) as info:
        client.start()
    assert info.value.code == "engine_failed"
    assert "Could not resolve hostname" in info.value.message and "255" in info.value.message


def test_silent_engine_times_out_and_is_killed():
    client = EngineClient(["sh", "-c", "sleep 30"], startup_timeout=0.5)
    with pytest.raises(EngineError) as info:
        client.start()
    assert info.value.code == "timeout"
    assert not client.running()


def test_text_before_the_first_frame_is_named_as_a_login_banner():
    banner = "Welcome to gpu-box, last login: yesterday"
    command = " ".join(f"'{a}'" for a in FAKE_ENGINE)
    client = EngineClient(["sh", "-c", f"echo '{banner}'; exec {command}"], startup_timeout=60)
    with pytest.raises(EngineError) as info:
        client.start()
    assert info.value.code == "bad_frame" and "\n" not in info.value.message
    assert info.value.message.startswith(
        f"the engine command printed '{banner}' before the protocol started (a login banner?)"
    )
    assert not client.running()


def test_missing_engine_command():
    with pytest.raises(EngineError) as info:
        EngineClient(["/nonexistent/dragfu", "serve"]).start()
    assert info.value.code == "engine_failed" and "engine command" in info.value.hint


def test_engine_error_without_request_id_is_raised_to_the_waiting_request():
    # A frame the engine cannot read gets an error addressed to nobody (id null).
    client = EngineClient(FAKE_ENGINE)
    client.start()
    client.proc.stdin.write(b"garbage\n")
    client.proc.stdin.flush()
    with pytest.raises(EngineError) as info:
        client.hello()
    assert info.value.code == "bad_frame"
    assert client.hello()["protocol"] == 1
    assert client.close() == 0


@pytest.mark.skipif(not PY27.exists(), reason="Python 2.7 not installed here")
def test_client_runs_under_python27_against_the_server():
    """GIMP 2.10's Python 2.7 runs the same client: hello, echo, drag with progress, cancel, close."""
    script = r"""
import sys
sys.path.insert(0, sys.argv[1])
from dragfu_core.engine_client import EngineClient, EngineCancelled, array_part
argv = sys.argv[2:]
client = EngineClient(argv)
info = client.start()
assert info["protocol"] == 1, info
blob = bytes(bytearray(range(256))) * 1000
echo = client.echo([array_part("blob", blob, "uint8", [len(blob)])])
assert echo.parts["blob"].data == blob
steps = []
result = client.drag([(2, 2)], [(9, 2)], seed=1, output="array", progress=lambda f: steps.append(f.header["step"]))
assert steps[0] == 0 and result.header["points"][0][0] > 8.4, result.header
try:
    client.drag([(0, 0)], [(1000, 1000)], seed=1, max_steps=100000, progress=lambda f: steps.append(1),
                should_cancel=lambda: len(steps) > 12)
    raise SystemExit("not cancelled")
except EngineCancelled as error:
    assert error.code == "cancelled"
print(client.close())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [str(PY27), "-c", script, str(REPO / "plugin" / "dragfu"), *FAKE_ENGINE, "--step-seconds", "0.02", "--resolution", "1024"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_answers_to_other_requests_are_kept_for_their_own_wait():
    """Two requests in flight: waiting on the second first parks the first one's events."""
    client = EngineClient(FAKE_ENGINE)
    client.start()
    drag_id = client.send(
        "drag", {"seed": 1, "handles": [[2, 2]], "targets": [[9, 2]], "output": "array"}
    )
    hello_id = client.send("hello", {"protocol": 1})
    assert client.wait(hello_id).header["request"] == "hello"
    steps = []
    result = client.wait(
        drag_id, progress=lambda f: steps.append((f.header["stage"], f.header["step"]))
    )
    assert result.header["request"] == "drag"
    assert steps[0] == ("load", 0)  # the model is loaded on first use
    assert [s for _, s in steps[1:]] == list(range(result.header["steps"] + 1))
    assert client.close() == 0
