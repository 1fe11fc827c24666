"""Cancel for real: the GIMP 2.10 plug-in (on the gimpfu shim) runs in its own process mid-drag
and gets SIGTERM / SIGINT, as GIMP sends when the user stops it.

The engine is tests/gimp2_shim/fake_engine.py with slow steps and `--log`, which records every
request frame the real protocol server dispatched and every drag step: the test reads there that
the engine got `cancel`, ran at most one more step, and ended the drag cancelled; then that no
engine process is left, and that the image is exactly as before (no new layer, same bytes).
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(HERE, "gimp2_shim")
PLUGIN = os.path.join(HERE, "..", "plugin", "gimp2", "dragfu_gimp2.py")

# Runs the plug-in the way GIMP would: one process, one procedure call; prints the image's state
# before and after as JSON lines.
CHILD = r"""
import hashlib, importlib.util, json, sys
sys.path.insert(0, sys.argv[1])
import gimp, gimpfu
from gimpfu import pdb

spec = importlib.util.spec_from_file_location("dragfu_gimp2", sys.argv[2])
plugin = importlib.util.module_from_spec(spec)
spec.loader.exec_module(plugin)

def state(image):
    return {
        "layers": [[l.ID, l.name, hashlib.sha256(bytes(l.data)).hexdigest(), list(l.offsets)]
                   for l in image.all_layers()],
        "undo": [repr(entry) for entry in image.undo_stack],
    }

image = pdb.gimp_image_new(120, 100, gimp.RGB)
layer = pdb.gimp_layer_new(image, 100, 80, gimp.RGB_IMAGE, "photo", 100, 0)
layer.data = bytearray((i * 7 + i // 300) % 251 for i in range(100 * 80 * 3))
pdb.gimp_layer_set_offsets(layer, 10, 10)
pdb.gimp_image_insert_layer(image, layer, None, 0)
vectors = pdb.gimp_vectors_new(image, "drag")
pdb.gimp_image_insert_vectors(image, vectors, None, 0)
flat = [v for x, y in ((50.5, 50.5), (60.5, 54.5)) for v in (x, y, x, y, x, y)]
pdb.gimp_vectors_stroke_new_from_points(vectors, 0, len(flat), flat, False)
print("before", json.dumps(state(image)), flush=True)
gimpfu.call(plugin.PROCEDURE, image, layer, steps=200)
print("after", json.dumps(state(image)), flush=True)
print("messages", json.dumps(gimp.MESSAGES), flush=True)
"""


def process_gone(pid):
    try:
        with open(f"/proc/{pid}/status") as handle:
            return "\nState:\tZ" in handle.read()
    except OSError:
        return True


def read_log(path):
    try:
        with open(path) as handle:
            return [line.split() for line in handle.read().splitlines()]
    except FileNotFoundError:
        return []


def wait_for(predicate, seconds):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM")]
if os.name == "posix":
    SIGNALS.append(pytest.param(signal.SIGINT, id="SIGINT"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("number", SIGNALS)
def test_signal_mid_drag_cancels_the_engine_and_leaves_the_image_untouched(tmp_path, number):
    log_path = tmp_path / "engine.log"
    config = {
        "engine_command": [
            sys.executable, os.path.join(SHIM, "fake_engine.py"), "--resolution", "32",
            "--step-delay", "0.3", "--log", str(log_path),
        ],
        "model": "toy",
    }  # fmt: skip
    (tmp_path / "dragfu.json").write_text(json.dumps(config))
    env = dict(os.environ, DRAGFU_CONFIG=str(tmp_path / "dragfu.json"))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, SHIM, PLUGIN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        # 200 steps x 0.3 s: a minute if nothing stopped it; wait until two steps have run.
        assert wait_for(lambda: ["step", "2"] in read_log(log_path), 60), read_log(log_path)
        child.send_signal(number)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    lines = dict(line.split(" ", 1) for line in out.splitlines())
    before, after = json.loads(lines["before"]), json.loads(lines["after"])
    assert after == before  # no new layer, no undo entry, the source's bytes identical
    messages = json.loads(lines["messages"])
    assert len(messages) == 1 and "cancelled" in messages[0]

    log = read_log(log_path)
    engine_pid = int(log[0][1])
    assert wait_for(lambda: process_gone(engine_pid), 15), "the engine process is still running"
    requests = [entry[1] for entry in log if entry[0] == "request"]
    assert "drag" in requests and "cancel" in requests
    drag_id = next(entry[2] for entry in log if entry[:2] == ["request", "drag"])
    cancel = next(i for i, entry in enumerate(log) if entry[:2] == ["request", "cancel"])
    assert log[cancel][3] == "target=" + drag_id  # the running drag was the one cancelled
    steps_after_cancel = [entry for entry in log[cancel:] if entry[0] == "step"]
    assert len(steps_after_cancel) <= 1  # stopped within one step of the cancel
    end = next(entry for entry in log if entry[0] == "drag-end")
    assert end[2] == "cancelled" and int(end[1]) < 200
