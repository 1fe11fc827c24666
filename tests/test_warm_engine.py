"""The warm engine: `dragfu serve --socket`, found and reused by the plug-in's next run.

Real engine processes (`dragfu serve` of this checkout on the CPU), started detached by
dragfu_core.warm exactly as a GIMP run starts them, in a private runtime folder per test.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

import pytest

from dragfu_core import engine_client, warm
from dragfu_core.engine_client import EngineError
from tests.conftest import REPO, SERVE_COMMAND

# This checkout's engine (the client strips PYTHONPATH from the engine's environment; this puts
# it back as an engine_env entry would).
EXTRA_ENV = {"PYTHONPATH": str(REPO / "engine")}
ARGV = [*SERVE_COMMAND[:-1], "60"]  # --idle-timeout 60: a leftover engine goes away by itself


@pytest.fixture
def runtime(monkeypatch):
    # Under a folder every user may pass through (pytest's own tmp folders are 0700, which would
    # stop another user before ours does), and short: a socket path has at most 107 bytes.
    base = tempfile.mkdtemp(prefix="dragfu-warm-", dir="/tmp")
    os.chmod(base, 0o755)
    folder = os.path.join(base, "run")
    monkeypatch.setenv("DRAGFU_RUNTIME_DIR", folder)
    started = []
    yield folder, started
    for pid in started:  # never leave an engine behind
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(base, ignore_errors=True)


def connect(started):
    env = engine_client.engine_environment(extra=EXTRA_ENV)
    client, new = warm.connect(ARGV, EXTRA_ENV, env, startup_timeout=120)
    started.append(client.hello_info["pid"])
    return client, new


def wait_gone(pid, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # our detached child: reap it when it ends
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_two_runs_share_one_engine_and_a_killed_one_is_replaced(runtime):
    _folder, started = runtime
    first, new = connect(started)
    assert new is True
    first.load_model("toy")
    first.close()  # a run ends: the engine stays

    second, new = connect(started)
    assert new is False
    assert second.hello_info["pid"] == first.hello_info["pid"]
    assert second.hello_info["loaded_models"] == ["toy"]  # the model load was paid once
    second.close()

    pid = second.hello_info["pid"]
    os.kill(pid, signal.SIGKILL)  # a crashed engine (its socket file stays behind)
    assert wait_gone(pid)
    path, _log, _key = warm.endpoint(ARGV, EXTRA_ENV)
    assert os.path.exists(path)
    third, new = connect(started)
    assert new is True and third.hello_info["pid"] != pid
    assert third.hello_info["loaded_models"] == []
    third.shutdown()
    assert wait_gone(third.hello_info["pid"])
    assert not os.path.exists(path)  # a clean exit takes its socket away


def test_the_socket_is_the_users_only(runtime):
    folder, started = runtime
    client, _ = connect(started)
    path, _log, _key = warm.endpoint(ARGV, EXTRA_ENV)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    client.close()
    if os.getuid() != 0:
        pytest.skip("checking another user's access needs root (setuid to nobody)")
    nobody = pwd.getpwnam("nobody").pw_uid

    def attempt_as_nobody():
        """errno of a connect as `nobody` in a forked child (0: it got in)."""
        pid = os.fork()
        if pid == 0:  # the child: become nobody, try to connect
            code = 0
            try:
                os.setgid(65534)
                os.setuid(nobody)
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(path)
            except OSError as error:
                code = error.errno or 1
            os._exit(code % 256)
        _, status = os.waitpid(pid, 0)
        return os.WEXITSTATUS(status)

    assert attempt_as_nobody() == errno.EACCES  # the 0700 folder stops it
    os.chmod(folder, 0o755)  # the folder opened up: the socket's own 0600 still stops it
    try:
        assert attempt_as_nobody() == errno.EACCES
        os.chmod(path, 0o666)  # the check can fail: a socket open to all lets nobody in
        assert attempt_as_nobody() == 0
    finally:
        os.chmod(folder, 0o700)
        os.chmod(path, 0o600)
    other, new = connect(started)
    assert new is False  # still the same engine
    other.shutdown()


def test_a_silent_engine_is_stopped_and_replaced(runtime):
    """A process that holds the lock and accepts connections but never answers (a stuck engine)."""
    folder, started = runtime
    warm.runtime_dir()
    path, _log, _key = warm.endpoint(ARGV, EXTRA_ENV)
    stuck = subprocess.Popen(
        [sys.executable, "-c", STUCK_ENGINE, path], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert stuck.stdout.readline().strip() == b"ready"
        assert warm.lock_holder(path) == stuck.pid
        client, new = connect(started)
        assert new is True and client.hello_info["pid"] != stuck.pid
        assert stuck.wait(10) is not None  # it was stopped
        client.shutdown()
    finally:
        if stuck.poll() is None:
            stuck.kill()


STUCK_ENGINE = r"""
import fcntl, os, socket, sys, time
path = sys.argv[1]
lock = open(path + ".lock", "a+"); fcntl.flock(lock, fcntl.LOCK_EX)
lock.truncate(0); lock.write("%d\n" % os.getpid()); lock.flush()
s = socket.socket(socket.AF_UNIX); s.bind(path); s.listen(4)
print("ready", flush=True)
held = []
while True:
    held.append(s.accept()[0])  # accepts, says nothing
"""


def test_a_second_connection_while_one_is_served_is_told_busy(runtime):
    _folder, started = runtime
    first, _ = connect(started)
    path, log, _key = warm.endpoint(ARGV, EXTRA_ENV)
    with pytest.raises(EngineError) as caught:
        warm.try_connect(path, log)
    assert caught.value.code == "engine_busy"
    first.close()
    again = warm.try_connect(path, log)  # free again once the first run has gone
    assert again is not None and again.hello_info["pid"] == first.hello_info["pid"]
    again.shutdown()


def test_which_commands_get_the_warm_engine():
    assert warm.wanted(["/venv/bin/dragfu", "serve"], {})
    assert warm.wanted(["dragfu", "serve", "--device", "cpu"], {})
    assert not warm.wanted(["ssh", "-T", "gpu-box", "dragfu", "serve"], {})  # remote: stdio
    assert not warm.wanted(["/venv/bin/dragfu", "serve"], {"warm_engine": False})
    assert not warm.wanted(["/venv/bin/dragfu", "serve"], {}, flatpak=True)
    assert not warm.wanted(["python", "fake_engine.py"], {})
    assert warm.wanted(["python", "-m", "dragfu.cli.main", "serve"], {"warm_engine": True})
    assert not warm.wanted(["dragfu", "serve", "--socket", "/x"], {"warm_engine": True})


def test_runtime_dir_rules(tmp_path, monkeypatch):
    monkeypatch.delenv("DRAGFU_RUNTIME_DIR", raising=False)
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    assert warm.runtime_dir({"XDG_RUNTIME_DIR": str(xdg)}) == str(xdg / "dragfu")
    assert stat.S_IMODE(os.stat(xdg / "dragfu").st_mode) == 0o700
    monkeypatch.setattr(warm.tempfile, "gettempdir", lambda: str(tmp_path))
    folder = warm.runtime_dir({})
    assert folder == str(tmp_path / f"dragfu-{os.getuid()}")
    os.chmod(folder, 0o777)
    warm.runtime_dir({})
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700  # opened up: closed again
    # Another set-up (device, models folder) is another engine; the same one the same socket.
    assert warm.engine_id(["dragfu", "serve"], {}) == warm.engine_id(["dragfu", "serve"], {})
    assert warm.engine_id(["dragfu", "serve"], {}) != warm.engine_id(
        ["dragfu", "serve"], {"DRAGFU_DEVICE": "cpu"}
    )


FAKE_ENGINE = [sys.executable, str(REPO / "tests" / "gimp2_shim" / "fake_engine.py")]


def test_a_cancelled_run_leaves_the_engine_serving_the_next(runtime):
    """Cancel mid-drag (the protocol's cancel over the socket): the run ends `cancelled`, the
    connection closes, and the same engine answers the next run's drag."""
    _folder, started = runtime
    argv = [*FAKE_ENGINE, "--step-delay", "0.05"]
    env = engine_client.engine_environment(extra=EXTRA_ENV)
    client, _ = warm.connect(argv, EXTRA_ENV, env, startup_timeout=60)
    started.append(client.hello_info["pid"])
    steps = []

    def progress(event):
        steps.append(event.header.get("step"))

    with pytest.raises(engine_client.EngineCancelled):
        client.drag([(10, 10)], [(40, 40)], seed=1, max_steps=400, progress=progress,
                    should_cancel=lambda: len(steps) >= 3)  # fmt: skip
    assert 3 <= len(steps) < 400
    client.close()
    again, new = warm.connect(argv, EXTRA_ENV, env, startup_timeout=60)
    assert new is False and again.hello_info["pid"] == client.hello_info["pid"]
    result = again.drag([(10, 10)], [(14, 10)], seed=1, max_steps=3)
    assert result.header["steps"] >= 1
    again.shutdown()


def test_a_cancel_while_the_warm_engine_starts_ends_the_wait(runtime, monkeypatch):
    """The user cancels while a warm engine is still coming up (torch importing): the run ends at
    once; the engine goes on starting, for the next run."""
    folder, started = runtime
    slow = [sys.executable, "-c", "import time; time.sleep(30)"]
    spawned = []
    real_start = warm.start_detached

    def start_detached(*args, **kwargs):
        proc = real_start(*args, **kwargs)
        spawned.append(proc)
        started.append(proc.pid)
        return proc

    monkeypatch.setattr(warm, "start_detached", start_detached)
    polls = []

    def should_cancel():
        polls.append(time.monotonic())
        return len(polls) >= 3  # the user presses Cancel a moment after the start

    began = time.monotonic()
    with pytest.raises(engine_client.EngineCancelled):
        warm.connect(slow, {}, dict(os.environ), startup_timeout=60, should_cancel=should_cancel)
    assert time.monotonic() - began < 5 and len(polls) == 3
    assert spawned and spawned[0].poll() is None  # still starting, left for the next run
