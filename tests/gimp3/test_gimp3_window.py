"""The run's own window in the real GIMP 3: "Stop and keep" and Cancel, pressed by a user.

A user's run (from the menu: the parameter dialog, OK'd with Return; or "Repeat", WITH_LAST_VALS)
shows the window "Drag-Fu: dragging" with the progress and two buttons. GIMP 3 runs with its full UI on a virtual
display (Xvfb, the Debian 13 chroot of the other GIMP 3 tests) and the fake engine drags slowly;
once the engine's log shows five drag steps the test presses Alt+S (the Stop button's mnemonic)
in that window through XTEST (xkeys.py), and in a second run Escape (the dialog's cancel).
"""

import json
import os

import pytest

from tests.gimp3 import harness

pytestmark = pytest.mark.gimp

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = harness.WINDOW_SCENE_PARAMS["steps"]

SHELL = r"""
# press ENDED KEYS...: once the run after ENDED finished drags has made 5 steps, press KEYS in
# the window "Drag-Fu: dragging".
press() {{
  ended=$1; shift
  for i in $(seq 1 480); do
    awk -v n="$ended" '/^drag-end/{{e++}} e==n && /^step /{{c++}} END{{exit !(c>=5)}}' \
      {work}/engine.log 2>/dev/null && break
    sleep 0.25
  done
  ID=$(xwininfo -root -tree 2>/dev/null | grep '"Drag-Fu: dragging"' | head -n1 | awk '{{print $1}}')
  echo "window: $ID"
  [ -n "$ID" ] && python3 {work}/xkeys.py "$ID" "$@"
}}
# The menu's run: its parameter dialog ("Drag-Fu") first, OK'd with Return.
for i in $(seq 1 240); do
  DIALOG=$(xwininfo -root -tree 2>/dev/null | grep '"Drag-Fu"' | head -n1 | awk '{{print $1}}')
  [ -n "$DIALOG" ] && break
  sleep 0.5
done
echo "dialog: $DIALOG"
sleep 2
[ -n "$DIALOG" ] && python3 {work}/xkeys.py "$DIALOG" Return
press 0 Alt_L s
for i in $(seq 1 240); do [ -f {work}/stopped.json ] && break; sleep 0.5; done
press 1 Escape
for i in $(seq 1 240); do [ -f {work}/cancelled.json ] && break; sleep 0.5; done
"""


def test_stop_keeps_the_state_reached_and_cancel_leaves_the_image_as_it_was(gimp_mode):
    run = harness.GimpRun(gimp_mode, harness.SLOW_FAKE_ENGINE)
    try:
        batch = run.gui_scene("window_scene.py", harness.WINDOW_SCENE_PARAMS, seed=5)
        proc = run.gui(batch, SHELL, display=50 + os.getpid() % 20)
        log_path = run.outside("work", "gimp.log")
        log = open(log_path).read()[-3000:] if os.path.exists(log_path) else ""
        engine_log = open(run.outside("work", "engine.log")).read().splitlines()
        context = f"{proc.stdout}{proc.stderr}\n{log}\n{engine_log[-8:]}"

        # Stop: the drag ended early, on request, and its state became the result layer.
        assert os.path.exists(run.outside("work", "stopped.json")), context
        stopped = json.load(open(run.outside("work", "stopped.json")))
        assert stopped["after"]["status"] == "success", context
        ends = [line.split() for line in engine_log if line.startswith("drag-end")]
        assert ends and ends[0][2] == "stopped" and 5 <= int(ends[0][1]) < STEPS, context
        names = [layer[0] for layer in stopped["after"]["layers"]]
        assert len(names) == len(stopped["before"]["layers"]) + 1, names
        assert names[0].startswith("Drag-Fu") and "Drag-Fu preview" not in names, names
        assert stopped["after"]["layers"][1:] == stopped["before"]["layers"]

        # Cancel: the engine was cancelled mid-drag; every layer is as it was, no preview left.
        assert os.path.exists(run.outside("work", "cancelled.json")), context
        cancelled = json.load(open(run.outside("work", "cancelled.json")))
        assert cancelled["after"]["status"] == "cancel", context
        assert len(ends) == 2 and ends[1][2] == "cancelled" and int(ends[1][1]) < STEPS, context
        assert cancelled["after"]["layers"] == cancelled["before"]["layers"], context
    finally:
        run.cleanup()
