"""Edge cases of users' machines: Windows command lines, job objects and console windows; the
engine ending with its parent (Linux: parent-death signal and a watcher); the Flatpak wrapping;
`dragfu doctor` with a torch that cannot be imported; timeouts on a clock that never jumps;
`dragfu ... | head`; an installer whose PyTorch index is out of reach.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "plugin" / "dragfu"))  # appended: never shadows the engine's dragfu

from dragfu_core import config, engine_client, session, winjob  # noqa: E402

CHECKOUT_PATH = os.pathsep.join([str(REPO / "engine"), str(REPO / "plugin" / "dragfu")])


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PYTHONPATH"] = CHECKOUT_PATH
    env.update(extra)
    return env


# --- one parser for engine commands ------------------------------------------------------------


@pytest.mark.parametrize(
    "text, windows, argv",
    [
        (r"C:\Users\me\dragfu\engine-venv\Scripts\dragfu.exe serve", True,
         [r"C:\Users\me\dragfu\engine-venv\Scripts\dragfu.exe", "serve"]),
        (r'"C:\Program Files\Drag-Fu\dragfu.exe" serve --device cuda', True,
         [r"C:\Program Files\Drag-Fu\dragfu.exe", "serve", "--device", "cuda"]),
        (r'ssh -T gpu-box "C:\dragfu dir\\" serve', True, ["ssh", "-T", "gpu-box", "C:\\dragfu dir\\", "serve"]),
        (r'say \"hi\" a\\\"b', True, ["say", '"hi"', 'a\\"b']),
        ('ssh -T gpu-box "/opt/drag fu/dragfu" serve', False, ["ssh", "-T", "gpu-box", "/opt/drag fu/dragfu", "serve"]),
        (r"/opt/x\ y/dragfu serve", False, ["/opt/x y/dragfu", "serve"]),
        ("   ", True, None),
    ],
)  # fmt: skip
def test_engine_command_parsed_the_same_in_dialog_and_config(text, windows, argv):
    assert config.parse_command(text, windows=windows) == argv
    # dragfu.json may hold the same command as a string: the same argv; a list stays as it is.
    document = json.dumps({"engine_command": text})
    if argv is not None:
        assert config.parse_config(document, windows=windows)["engine_command"] == argv
        assert config.parse_command(list(argv), windows=windows) == argv


def test_engine_command_parser_refuses_what_it_cannot_split():
    with pytest.raises(ValueError):
        config.parse_command('"C:\\Program Files\\dragfu.exe serve', windows=True)
    with pytest.raises(config.ConfigError):
        config.parse_config('{"engine_command": ["dragfu", 3]}')


def test_dialogs_use_the_shared_parser():
    for adapter in ("plugin/dragfu/dragfu.py", "plugin/gimp2/dragfu_gimp2.py"):
        source = (REPO / adapter).read_text()
        assert "config_mod.parse_command(command)" in source and "shlex" not in source


# --- Flatpak ------------------------------------------------------------------------------------


def test_flatpak_wrapping_watches_the_bus_and_passes_the_environment_once():
    argv = session.flatpak_argv(
        ["dragfu", "serve"], {"DRAGFU_DEVICE": "cpu", "A": "1"}, flatpak=True
    )
    assert argv == ["flatpak-spawn", "--host", "--watch-bus", "--env=A=1", "--env=DRAGFU_DEVICE=cpu",
                    "dragfu", "serve"]  # fmt: skip
    # The client keeps an already wrapped command as it is (no second flatpak-spawn).
    assert engine_client.EngineClient(argv, flatpak=True).argv == argv
    assert session.flatpak_argv(["dragfu", "serve"], {"A": "1"}, flatpak=False) == [
        "dragfu",
        "serve",
    ]
    assert engine_client.EngineClient(["dragfu", "serve"], flatpak=True).argv[:3] == [
        "flatpak-spawn", "--host", "--watch-bus",
    ]  # fmt: skip


# --- Windows: no console window, a kill-on-close job object -------------------------------------


class _FakeProc:
    def __init__(self):
        read_out, write_out = os.pipe()
        read_err, write_err = os.pipe()
        os.close(write_out)  # the "engine" ends at once: start() fails after Popen
        os.close(write_err)
        self.stdout = os.fdopen(read_out, "rb", 0)
        self.stderr = os.fdopen(read_err, "rb", 0)
        self.stdin = open(os.devnull, "wb")
        self.pid = 999999
        self.returncode = 0
        self._handle = 1234

    def poll(self):
        return 0

    def kill(self):
        pass

    def send_signal(self, number):
        pass


def _start_with_fake_popen(monkeypatch, platform):
    calls, jobs = [], []

    def fake_popen(argv, **kwargs):
        calls.append(kwargs)
        return _FakeProc()

    monkeypatch.setattr(engine_client.subprocess, "Popen", fake_popen)
    monkeypatch.setattr(winjob, "kill_on_close", lambda proc: jobs.append(proc) or 77)
    monkeypatch.setattr(engine_client.sys, "platform", platform)
    client = engine_client.EngineClient(["dragfu", "serve"], flatpak=False, startup_timeout=5)
    with pytest.raises(engine_client.EngineError):
        client.start()
    monkeypatch.undo()
    return calls[0], jobs


def test_windows_engine_gets_no_console_window_and_a_job_object(monkeypatch):
    kwargs, jobs = _start_with_fake_popen(monkeypatch, "win32")
    assert kwargs["creationflags"] == engine_client.CREATE_NO_WINDOW == 0x08000000
    assert "start_new_session" not in kwargs
    assert len(jobs) == 1 and jobs[0]._handle == 1234


def test_job_object_and_console_flag_only_on_windows(monkeypatch):
    kwargs, jobs = _start_with_fake_popen(monkeypatch, "linux")
    assert "creationflags" not in kwargs and kwargs["start_new_session"] is True
    assert jobs == []


class _FakeKernel32:
    def __init__(self, assign_ok=True):
        self.calls = []
        self.assign_ok = assign_ok

    def CreateJobObjectW(self, *args):  # noqa: N802  (the Windows names)
        self.calls.append(("create",) + args)
        return 555

    def SetInformationJobObject(self, job, info_class, ref, size):  # noqa: N802
        info = ref._obj
        self.calls.append(("set", job, info_class, info.BasicLimitInformation.LimitFlags, size))
        return 1

    def AssignProcessToJobObject(self, job, handle):  # noqa: N802
        self.calls.append(("assign", job, handle))
        return 1 if self.assign_ok else 0

    def CloseHandle(self, handle):  # noqa: N802
        self.calls.append(("close", handle))
        return 1


def test_job_object_kills_on_close():
    kernel32 = _FakeKernel32()
    proc = _FakeProc()
    assert winjob.kill_on_close(proc, kernel32=kernel32) == 555
    (_, *create), (_, job, info_class, flags, size), assign = kernel32.calls
    assert info_class == 9 and flags == 0x2000 and job == 555
    assert size == ctypes.sizeof(winjob._structures(ctypes)())
    assert assign == ("assign", 555, 1234)
    refused = _FakeKernel32(assign_ok=False)
    assert winjob.kill_on_close(proc, kernel32=refused) is None
    assert refused.calls[-1] == ("close", 555)  # no handle leaks when Windows refuses


# --- Linux: the engine ends with its parent -----------------------------------------------------


def _gone(pid, within):
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return True
        if "\nState:\tZ" in state:  # exited; waiting for init to reap it
            return True
        time.sleep(0.1)
    return False


def _kill_parent_of(script, within, timeout=120):
    """Run script (prints the child's pid, then sleeps), SIGKILL it; is the child gone in time?"""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, env=_env(),
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        line = parent.stdout.readline()
        assert line.strip().isdigit(), line
        child = int(line)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        gone = _gone(child, within)
        if not gone:
            os.kill(child, signal.SIGKILL)
        return gone
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and SIGKILL")
def test_engine_started_by_the_plugin_client_ends_when_the_plugin_is_killed():
    script = """
        import sys, time
        from dragfu_core.engine_client import EngineClient
        client = EngineClient([sys.executable, "-m", "dragfu.cli.main", "serve", "--device", "cpu",
                               "--idle-timeout", "300"], startup_timeout=120)
        client.start()
        print(client.proc.pid, flush=True)
        time.sleep(300)
    """
    assert _kill_parent_of(script, within=10)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_parent_death_signal_ends_a_busy_engine_with_its_input_still_open():
    # The child's input is not the parent's pipe, and the watcher would look only after 1000 s:
    # only the kernel's parent-death signal can end it in time.
    script = """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c",
            "import time; from dragfu.protocol.parent import watch_parent; "
            "watch_parent(interval=1000); print('ready', flush=True); time.sleep(300)"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        child.stdout.readline()
        print(child.pid, flush=True)
        time.sleep(300)
    """
    assert _kill_parent_of(script, within=5)


@pytest.mark.skipif(os.name != "posix", reason="POSIX re-parenting")
def test_parent_watcher_notices_the_new_parent(monkeypatch):
    from dragfu.protocol import parent

    pids = iter([4242] + [4242] * 3 + [1] * 100)
    monkeypatch.setattr(parent.os, "getppid", lambda: next(pids))
    monkeypatch.setattr(parent, "_set_pdeathsig", lambda number: True)
    called = []
    thread = parent.watch_parent(interval=0.01, on_orphaned=lambda: called.append(True))
    thread.join(5)
    assert called == [True]
    monkeypatch.setattr(parent.os, "getppid", lambda: 1)  # started by init: nothing to watch
    assert parent.watch_parent(on_orphaned=lambda: called.append(False)) is None


# --- doctor with a broken torch ------------------------------------------------------------------


@pytest.mark.parametrize(
    "error", ["OSError('[WinError 126] Error loading c10.dll or one of its dependencies')",
              "ImportError('libcudart.so.12: cannot open shared object file')"],
)  # fmt: skip
def test_doctor_runs_and_says_so_when_torch_cannot_be_imported(tmp_path, error):
    fake = tmp_path / "fake" / "torch"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(f"raise {error}\n")
    env = _env(HOME=str(tmp_path / "home"), DRAGFU_HOME=str(tmp_path / "data"))
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "fake"), CHECKOUT_PATH])
    result = subprocess.run(
        [sys.executable, "-m", "dragfu.cli.main", "doctor", "--no-engine", "--quick"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    torch_line = next(line for line in result.stdout.splitlines() if " torch " in line)
    assert torch_line.startswith("[fail]") and error.split("(")[0] in torch_line
    assert "c10.dll" in torch_line or "libcudart" in torch_line
    assert "models folder" in result.stdout and "1 check(s) failed." in result.stdout


# --- timeouts on a monotonic clock -------------------------------------------------------------


def test_timeouts_ignore_wall_clock_jumps(monkeypatch):
    wall = [1e9]

    def jumping_time():  # the wall clock jumps an hour on every reading (NTP, a suspend)
        wall[0] += 3600.0
        return wall[0]

    monkeypatch.setattr(engine_client.time, "time", jumping_time)

    class SlowProc:
        polls = 0
        returncode = 0

        def poll(self):
            self.polls += 1
            return 0 if self.polls > 5 else None

    client = engine_client.EngineClient(["dragfu", "serve"], flatpak=False)
    client.proc = SlowProc()
    assert client._wait_exit(5.0) == 0  # not "timed out" after the first jump
    assert engine_client._clock is getattr(time, "monotonic", time.time)


# --- `dragfu ... | head` -----------------------------------------------------------------------


@pytest.mark.parametrize("command", [["models", "list"], ["models", "list", "--json"]])
def test_output_into_a_closed_pipe_ends_quietly(tmp_path, command):
    read_end, write_end = os.pipe()
    os.close(read_end)  # `head` already gone
    try:
        result = subprocess.run(
            [sys.executable, "-m", "dragfu.cli.main"] + command, stdout=write_end,
            stderr=subprocess.PIPE, env=_env(DRAGFU_HOME=str(tmp_path)), timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.stderr.decode() == ""
    assert result.returncode == 141


# --- the installer when the PyTorch index is out of reach --------------------------------------

FAKE_PYTHON = """#!/bin/sh
echo "$*|${PIP_INDEX_URL-}" >> "$(dirname "$0")/calls.log"
case "$*" in
  "-c pass") exit 0 ;;
  "-c import "*) exit 1 ;;
  *"pip install torch"*) echo "ERROR: Could not fetch URL: connection refused" >&2; exit 1 ;;
esac
exit 0
"""


def _install_with_failing_pip(tmp_path, *args, **env):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    python = venv / "bin" / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    log = venv / "bin" / "calls.log"
    if log.exists():
        log.unlink()
    environment = _env(HOME=str(tmp_path / "home"), DRAGFU_HOME=str(tmp_path / "data"),
                       PIP_CONFIG_FILE=os.devnull, **env)  # fmt: skip
    result = subprocess.run(
        [sys.executable, str(REPO / "install" / "install.py"), "--venv", str(venv), "--torch", "cpu",
         "--no-doctor", "--plugin-dir", str(tmp_path / "plugins")] + list(args),
        capture_output=True, text=True, env=environment, timeout=120,
    )  # fmt: skip
    torch_calls = [line for line in log.read_text().splitlines() if "pip install torch" in line]
    assert result.returncode == 2 and len(torch_calls) == 1, result.stdout + result.stderr
    argv, _, pip_index_env = torch_calls[0].partition("|")
    return argv.split(), pip_index_env, result.stderr


@pytest.mark.skipif(os.name != "posix", reason="the fake pip is a shell script")
def test_installer_names_the_index_it_tried_and_what_to_pass(tmp_path):
    argv, _, err = _install_with_failing_pip(tmp_path)
    cpu = "https://download.pytorch.org/whl/cpu"
    assert argv[argv.index("--index-url") + 1] == cpu and "--extra-index-url" not in argv
    assert f"installing torch from {cpu} failed" in err
    assert "--torch-index URL" in err and "--torch-index pypi" in err


@pytest.mark.skipif(os.name != "posix", reason="the fake pip is a shell script")
def test_installer_keeps_the_users_pip_index(tmp_path):
    proxy = "http://pypi-proxy.invalid/simple"
    argv, pip_index_env, err = _install_with_failing_pip(tmp_path, PIP_INDEX_URL=proxy)
    assert "--index-url" not in argv  # the user's PIP_INDEX_URL stays pip's index
    assert argv[argv.index("--extra-index-url") + 1] == "https://download.pytorch.org/whl/cpu"
    assert pip_index_env == proxy  # and reaches pip unchanged
    assert "your pip configuration's index (PIP_INDEX_URL)" in err


@pytest.mark.skipif(os.name != "posix", reason="the fake pip is a shell script")
def test_installer_torch_index_option(tmp_path):
    mirror = "http://mirror.invalid/whl/cpu"
    argv, _, err = _install_with_failing_pip(tmp_path, "--torch-index", mirror,
                                             PIP_INDEX_URL="http://pypi-proxy.invalid/simple")  # fmt: skip
    assert argv[argv.index("--index-url") + 1] == mirror and "--extra-index-url" not in argv
    assert mirror in err
    argv, _, _ = _install_with_failing_pip(tmp_path, "--torch-index", "pypi")
    assert "--index-url" not in argv and "--extra-index-url" not in argv


def test_a_pip_conf_index_counts_as_the_users_configuration(tmp_path):
    sys.path.insert(0, str(REPO / "install"))
    try:
        import dragfu_install as installer
    finally:
        sys.path.remove(str(REPO / "install"))
    paths = installer.load_paths_module(REPO)
    home = tmp_path / "home"
    conf = home / ".config" / "pip" / "pip.conf"
    conf.parent.mkdir(parents=True)
    host = paths.Host(system="linux", env={"PATH": "/usr/bin"}, home=home)
    conf.write_text("[global]\ntimeout = 60\n")  # a pip.conf naming no index
    assert installer.user_pip_index(host) != str(conf)  # (the machine's /etc/pip.conf may)
    conf.write_text("[install]\nindex-url = http://pypi-proxy.invalid/simple\n")
    assert installer.user_pip_index(host) == str(conf)  # the user's own file comes first
    none = paths.Host(system="linux", env={"PIP_CONFIG_FILE": os.devnull}, home=home)
    assert installer.user_pip_index(none) is None
    machine = installer.Machine(host, runner=None, machine="x86_64", which=lambda n: None)
    choice = installer.choose_torch(machine, "cpu")
    assert choice.pip_args()[2:] == ["--extra-index-url", installer.TORCH_INDEX + "cpu"]
