"""Undo in the real GIMP 3: one Ctrl+Z after a Drag-Fu run gives back the image as it was.

GIMP 3 offers plug-ins and batch scripts no undo call (Gimp.Image has only undo_group_start/end,
enable/disable, freeze/thaw; the PDB has no gimp-image-undo), so this runs the full GIMP 3 UI on
a virtual display (Xvfb, in the same Debian 13 chroot as test_gimp3_e2e.py): a script
(undo_scene.py) opens an image in a display and runs plug-in-dragfu with the fake engine, then
the test presses Ctrl+Z once in the image window through XTEST (xkeys.py): GIMP's own edit-undo.
The plug-in comes from `install/install.py --plugin-only --plugin-dir DIR`, not a hand copy.
"""

import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402

pytestmark = pytest.mark.gimp


SHELL = r"""
for i in $(seq 1 240); do [ -f {work}/after.json ] && break; sleep 0.5; done
sleep 2
ID=""
for W in $(xwininfo -root -tree 2>/dev/null | grep '"\*\?\[Untitled\]' | awk '{{print $1}}'); do
  xwininfo -id "$W" 2>/dev/null | grep -q IsViewable && ID=$W && break
done
echo "image window: $ID"
[ -n "$ID" ] || xwininfo -root -tree 2>/dev/null | grep -v '(has no name)' | head -n 30
[ -n "$ID" ] && [ -f {work}/after.json ] && python3 {work}/xkeys.py "$ID" Control_L z
for i in $(seq 1 240); do [ -f {work}/undone.json ] && break; sleep 0.5; done
[ -n "$ID" ] && [ -f {work}/undone.json ] && python3 {work}/xkeys.py "$ID" Control_L z
for i in $(seq 1 240); do [ -f {work}/undone2.json ] && break; sleep 0.5; done
"""


def test_one_undo_removes_the_result_layer_and_restores_the_image(gimp_mode):
    """...and the live preview (the fake engine's drag is slowed so that it shows) never entered
    the undo history: a second Ctrl+Z finds nothing to undo (it would bring the preview back)."""
    engine = {
        "engine_command": [
            "python3", "{work}/fake_engine.py", "--resolution", "64", "--step-delay", "0.3",
        ]
    }  # fmt: skip
    run = harness.GimpRun(gimp_mode, engine, install=True)
    try:
        installed = run.outside("home", ".config", "GIMP", "3.0", "plug-ins", "dragfu")
        assert os.access(os.path.join(installed, "dragfu.py"), os.X_OK)
        assert os.path.isfile(os.path.join(installed, "dragfu_core", "job.py"))
        assert run.installed_config["engine_command"] == [
            "python3",
            "-m",
            "dragfu.cli.main",
            "serve",
        ]
        batch = run.gui_scene("undo_scene.py", {"stroke": [[100.5, 80.5], [110.5, 84.5]]}, seed=3)
        proc = run.gui(batch, SHELL, display=70 + os.getpid() % 20)
        log_path = run.outside("work", "gimp.log")
        log = open(log_path).read()[-3000:] if os.path.exists(log_path) else ""
        context = f"{proc.stdout}{proc.stderr}\n{log}"
        assert os.path.exists(run.outside("work", "after.json")), context
        ran = json.load(open(run.outside("work", "after.json")))
        before, after = ran["before"], ran["after"]
        assert after["status"] == "success", (after.get("error"), context)
        names = [layer[0] for layer in after["layers"]]
        assert len(names) == len(before["layers"]) + 1 and names[1] == "photo", names
        assert after["layers"][1:] == before["layers"]  # the source untouched, result above it
        assert os.path.exists(run.outside("work", "undone.json")), context
        undone = json.load(open(run.outside("work", "undone.json")))
        # One undo step: the result layer is gone and every layer is bit-identical to before.
        assert undone["layers"] == before["layers"], context
        # The preview was shown during the drag, and is in no undo step: a second Ctrl+Z changes
        # nothing (the undo history was emptied just before the run).
        updates = [line for line in log.splitlines() if "Drag-Fu live preview:" in line]
        assert updates and int(updates[-1].split(":")[1].split()[0]) >= 2, context
        assert os.path.exists(run.outside("work", "undone2.json")), context
        undone2 = json.load(open(run.outside("work", "undone2.json")))
        assert undone2["layers"] == before["layers"], context
    finally:
        run.cleanup()
