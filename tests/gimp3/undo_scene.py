# Runs after scene_base.py: plug-in-dragfu non-interactively, then waits while the test presses
# Ctrl+Z once in the image window (GIMP 3 gives plug-ins no undo call; undo is the app's
# edit-undo action). Writes the state before, after the run and after each undo.
# ruff: noqa: F821  (Gimp, image, layer, P, before, state, write: from scene_base.py)
import time

procedure = Gimp.get_pdb().lookup_procedure("plug-in-dragfu")
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", image)
config.set_core_object_array("drawables", [layer])
config.set_property("steps", P.get("steps", 10))
result = procedure.run(config)
after = state(image)
after["status"] = result.index(0).value_nick
if after["status"] != "success":
    after["error"] = str(result.index(1))
write("after.json", {"before": before, "after": after})

# The test presses Ctrl+Z now; wait until the layer count changes back (or give up).
deadline = time.time() + P.get("undo_wait", 60)
while time.time() < deadline and len(image.get_layers()) != len(before["layers"]):
    time.sleep(0.2)
time.sleep(1.0)  # let the undo finish redrawing
write("undone.json", state(image))
# A second Ctrl+Z: nothing should be left to undo (a preview in the history would come back).
layers_now = len(image.get_layers())
deadline = time.time() + 8
while time.time() < deadline and len(image.get_layers()) == layers_now:
    time.sleep(0.2)
time.sleep(1.0)
write("undone2.json", state(image))
