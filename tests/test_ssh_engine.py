"""The engine over a real ssh connection, the way docs/install.md's remote-GPU setup runs it.

A throwaway sshd (its own host key, a user key, authorized_keys and pid file in a temp folder)
listens on 127.0.0.1; the plug-in's client (plugin/dragfu/dragfu_core/engine_client.py) runs
`ssh -T -o BatchMode=yes ... 127.0.0.1 env ... python -m dragfu.cli.main serve --device cpu` and
drags the toy model through it. Each remote engine carries a unique DRAGFU_TEST_MARKER in its
environment, so the test finds it in /proc and checks that none is left after the client closes,
after a cancel, and after the local ssh client is killed mid-drag. A second sshd with a
ForceCommand wrapper that prints a login banner on stdout checks the client's error for it.

Skipped, with the reason, where there is no sshd (.ci/run installs openssh-server when it can),
no ssh client, no root (sshd needs its privilege-separation folder) or sshd does not start.
"""

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
ENGINE_PATH = os.path.join(REPO, "engine")
# append, never insert: the engine package is also called dragfu (plugin/dragfu/dragfu.py)
sys.path.append(os.path.join(REPO, "plugin", "dragfu"))

from dragfu_core.engine_client import EngineCancelled, EngineClient, EngineError  # noqa: E402

SSHD = "/usr/sbin/sshd"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sshd:
    """One sshd on 127.0.0.1 in a temp folder; `command(remote)` is the engine command for it."""

    def __init__(self, folder, force_command=None):
        self.folder = folder
        self.port = free_port()
        self.key = os.path.join(folder, "user_key")
        host_key = os.path.join(folder, "host_key")
        for path in (host_key, self.key):
            if not os.path.exists(path):
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path],
                    check=True,
                    capture_output=True,
                )
        shutil.copy(self.key + ".pub", os.path.join(folder, "authorized_keys"))
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_key}",
            f"AuthorizedKeysFile {os.path.join(folder, 'authorized_keys')}",
            f"PidFile {os.path.join(folder, f'sshd-{self.port}.pid')}",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PrintMotd no",
        ]
        if force_command:
            lines.append(f"ForceCommand {force_command}")
        config = os.path.join(folder, f"sshd-{self.port}.conf")
        with open(config, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        self.log = open(os.path.join(folder, f"sshd-{self.port}.log"), "w+")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", config], stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        self.log.seek(0)
        pytest.skip("sshd did not start: " + " | ".join(self.log.read().strip().splitlines()[-3:]))

    def ssh(self):
        return [
            "ssh", "-T", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
            "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-i", self.key,
            "-p", str(self.port), "127.0.0.1",
        ]  # fmt: skip

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def ssh_folder(tmp_path_factory):
    if not os.path.exists(SSHD):
        pytest.skip(f"no {SSHD} (apt-get install openssh-server; .ci/run does when it can)")
    for tool in ("ssh", "ssh-keygen"):
        if not shutil.which(tool):
            pytest.skip(f"no `{tool}` (the OpenSSH client)")
    if os.geteuid() != 0:
        pytest.skip("sshd needs root here (privilege separation, PermitRootLogin for the test)")
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    return str(tmp_path_factory.mktemp("sshd"))


@pytest.fixture(scope="module")
def sshd(ssh_folder):
    server = Sshd(ssh_folder)
    yield server
    server.stop()


def engine_command(sshd, marker, cache):
    """The plug-in's engine command: ssh, then the real engine of this checkout on the far side."""
    remote = [
        "env", f"DRAGFU_TEST_MARKER={marker}", f"PYTHONPATH={ENGINE_PATH}",
        f"DRAGFU_CACHE_DIR={cache}", sys.executable, "-m", "dragfu.cli.main", "serve",
        "--device", "cpu", "--idle-timeout", "300",
    ]  # fmt: skip
    return sshd.ssh() + remote


def marked_processes(marker):
    """Pids of live processes whose environment holds DRAGFU_TEST_MARKER=marker."""
    needle = f"DRAGFU_TEST_MARKER={marker}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
            with open(f"/proc/{name}/status") as handle:
                zombie = "\nState:\tZ" in handle.read()
        except OSError:
            continue
        if needle in environ and not zombie:
            found.append(int(name))
    return found


@pytest.fixture(autouse=True)
def reap():
    """Kills a remote engine a failing test left behind (found by its marker), after the test."""
    yield
    for marker in STARTED:
        for pid in marked_processes(marker):
            os.kill(pid, 9)
    del STARTED[:]


STARTED = []  # markers of the engines this module started


def gone_within(marker, seconds):
    deadline = time.time() + seconds
    while marked_processes(marker) and time.time() < deadline:
        time.sleep(0.1)
    return marked_processes(marker)


def start(sshd, tmp_path):
    marker = uuid.uuid4().hex
    STARTED.append(marker)
    client = EngineClient(engine_command(sshd, marker, tmp_path / "cache"), startup_timeout=120)
    info = client.start()
    pids = marked_processes(marker)
    assert pids == [info["pid"]], (pids, info["pid"])  # the engine answering is the remote one
    return client, marker


def test_drag_over_ssh_then_close_leaves_no_engine(sshd, tmp_path):
    client, marker = start(sshd, tmp_path)
    try:
        assert client.load_model("toy")["model"] == "toy"
        steps = []
        result = client.drag(
            [(40.5, 40.5)], [(44.5, 42.5)], seed=3, model="toy", max_steps=3, output="array",
            progress=lambda frame: steps.append(frame.header.get("step")),
        )  # fmt: skip
        image = result.parts["image"]
        assert image.kind == "array" and image.dtype == "uint8" and image.shape[2] == 3
        assert len(image.data) == image.shape[0] * image.shape[1] * 3
        assert steps and result.header["steps"] <= 3
    finally:
        code = client.close()
    assert code == 0
    assert not gone_within(marker, 15), "the remote engine is still running after close()"


def long_drag(client):
    """Start a drag that would take many steps; returns its id once a step has been reported."""
    request_id = client.send(
        "drag",
        {"seed": 5, "model": "toy", "handles": [[20.5, 20.5]], "targets": [[100.5, 100.5]],
         "max_steps": 100000, "output": "array", "preview_every": 0},
    )  # fmt: skip
    for frame in client.events(request_id, timeout=120):
        if frame.type == "progress" and frame.header.get("step", 0) >= 1:
            return request_id
    raise AssertionError("the drag ended before a progress step")


def test_cancel_reaches_the_remote_engine(sshd, tmp_path):
    client, marker = start(sshd, tmp_path)
    try:
        client.load_model("toy")
        request_id = long_drag(client)
        client.cancel(request_id)
        with pytest.raises(EngineCancelled):
            client.wait(request_id, timeout=60, cancel_grace=1000)
        assert client.hello()["pid"] in marked_processes(marker)  # cancelled, still serving
    finally:
        client.close()
    assert not gone_within(marker, 15)


def test_killing_the_local_ssh_client_mid_drag_stops_the_remote_engine(sshd, tmp_path):
    client, marker = start(sshd, tmp_path)
    client.load_model("toy")
    long_drag(client)
    ssh_pid = client.proc.pid
    os.kill(ssh_pid, 9)  # the ssh process alone, as when the plug-in and its ssh are killed
    client.proc.wait(10)
    try:
        assert not gone_within(marker, 30), "the remote engine kept running after ssh died"
    finally:
        client.kill()


def test_kill_of_the_client_reaches_the_remote_engine(sshd, tmp_path):
    client, marker = start(sshd, tmp_path)
    client.load_model("toy")
    long_drag(client)
    client.kill()  # SIGTERM to the ssh process group (what the plug-in does after the grace)
    assert not gone_within(marker, 30), "the remote engine kept running after kill()"


def test_login_banner_on_stdout_is_named_in_the_error(ssh_folder, tmp_path):
    wrapper = os.path.join(ssh_folder, "banner.sh")
    with open(wrapper, "w") as handle:
        handle.write(
            '#!/bin/sh\necho "Welcome to the test box"\nexec sh -c "$SSH_ORIGINAL_COMMAND"\n'
        )
    os.chmod(wrapper, 0o755)
    server = Sshd(ssh_folder, force_command=wrapper)
    marker = uuid.uuid4().hex
    STARTED.append(marker)
    try:
        client = EngineClient(
            engine_command(server, marker, tmp_path / "cache"), startup_timeout=120
        )
        with pytest.raises(EngineError) as info:
            client.start()
    finally:
        server.stop()
    message = str(info.value)
    assert "printed 'Welcome to the test box' before the protocol started" in message
    assert "login banner" in message and "\n" not in info.value.message
    assert not client.running()
    assert not gone_within(marker, 15)
