"""The warm engine from the real GIMP 3: the engine a run starts outlives that GIMP process and
serves the next run (the fake engine as `--socket` server, at one fixed place in the chroot, so
the runs have the same engine set-up and hence the same socket); its socket is the user's only;
an engine killed between runs is replaced by the next run."""

import errno
import glob
import os
import pwd
import shutil
import signal
import socket
import stat
import sys
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from test_gimp3_e2e import FAKE_BACKEND, FAKE_ENGINE, run_scene, smooth_pattern  # noqa: E402

pytestmark = pytest.mark.gimp


@pytest.fixture(scope="module")
def gimp_mode():
    try:
        mode = harness.ensure_gimp()
    except harness.Unavailable as reason:
        pytest.skip(str(reason))
    if mode != "chroot":
        pytest.skip("this check places the engine in the chroot's /tmp")
    return mode


def test_two_gimp_runs_share_one_warm_engine(gimp_mode):
    inner = "/tmp/dragfu-warm-" + uuid.uuid4().hex[:8]  # as GIMP (inside the chroot) sees it
    outer = os.path.join(harness.CHROOT, inner.lstrip("/"))
    os.makedirs(outer)
    shutil.copy(FAKE_ENGINE, outer)
    shutil.copy(FAKE_BACKEND, outer)
    shutil.copytree(
        os.path.join(harness.REPO, "engine", "dragfu"), os.path.join(outer, "engine", "dragfu")
    )
    shutil.copytree(
        os.path.join(harness.REPO, "plugin", "dragfu", "dragfu_core"),
        os.path.join(outer, "engine", "dragfu_core"),
    )
    engine = {
        "engine_command": ["python3", inner + "/fake_engine.py", "--log", inner + "/engine.log"],
        "engine_env": {"PYTHONPATH": inner + "/engine"},
        "warm_engine": True,
    }
    pixels = smooth_pattern(120, 160, 3)
    params = {
        "width": 200,
        "height": 160,
        "layer": {"mode": "RGB", "width": 160, "height": 120, "offsets": [10, 20]},
        "strokes": [[(60.5, 60.5), (70.5, 60.5)]],
        "args": {"steps": 3},
    }
    pids = []
    try:
        for _ in range(2):
            report, _source, _new = run_scene(gimp_mode, dict(params), pixels, engine)
            assert report["status"] == "success", report
            log = open(os.path.join(outer, "engine.log")).read().splitlines()
            pids = [int(line.split()[1]) for line in log if line.startswith("pid ")]
            os.kill(pids[0], 0)  # alive after GIMP has quit
        assert len(pids) == 1, log  # one engine for both runs
        assert sum(line.startswith("request hello") for line in log) == 2
        assert sum(line.startswith("request drag") for line in log) == 2

        # Its socket: 0600 in a 0700 folder of the user's (root's, in the chroot: /tmp/dragfu-0),
        # and another user cannot connect.
        sockets = sorted(
            glob.glob(os.path.join(harness.CHROOT, "tmp", "dragfu-0", "engine-*.sock")),
            key=os.path.getmtime,
        )
        assert sockets, "no engine socket in the chroot's /tmp/dragfu-0"
        path = sockets[-1]
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert _connect_as_nobody(path) == errno.EACCES

        # Killed between runs: the next run starts a new one (and is served by it).
        os.kill(pids[0], signal.SIGKILL)
        time.sleep(0.5)
        report, _source, _new = run_scene(gimp_mode, dict(params), pixels, engine)
        assert report["status"] == "success", report
        log = open(os.path.join(outer, "engine.log")).read().splitlines()
        pids = [int(line.split()[1]) for line in log if line.startswith("pid ")]
        assert len(pids) == 2 and pids[1] != pids[0], log
        os.kill(pids[1], 0)
        assert sum(line.startswith("request drag") for line in log) == 3
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        time.sleep(0.5)
        shutil.rmtree(outer, ignore_errors=True)


def _connect_as_nobody(path):
    """errno of a connect to path as the user `nobody`, from a forked child (0: it got in)."""
    if os.geteuid() != 0:
        pytest.skip("checking another user's access needs root (setuid to nobody)")
    nobody = pwd.getpwnam("nobody").pw_uid
    pid = os.fork()
    if pid == 0:  # the child: become nobody, try to connect, exit with the errno
        code = 0
        try:
            os.setgid(nobody)
            os.setuid(nobody)
            with socket.socket(socket.AF_UNIX) as client:
                client.connect(path)
        except OSError as error:
            code = error.errno or 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.WEXITSTATUS(status)
