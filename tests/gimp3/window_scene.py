# Runs after scene_base.py: plug-in-dragfu twice as a user runs it: from the menu (INTERACTIVE:
# the parameter dialog, which the test OKs with Return, then the run's own window), and as
# "Repeat" (WITH_LAST_VALS: no dialog, the window). During the first drag the test presses "Stop
# and keep" (Alt+S) in the window "Drag-Fu: dragging", during the second Escape (cancel). Writes
# the state and the procedure's status after each run.
# ruff: noqa: F821  (Gimp, image, layer, P, before, state, write: from scene_base.py)
procedure = Gimp.get_pdb().lookup_procedure("plug-in-dragfu")
for name, mode in (
    ("stopped.json", Gimp.RunMode.INTERACTIVE),
    ("cancelled.json", Gimp.RunMode.WITH_LAST_VALS),
):
    before = state(image)
    config = procedure.create_config()
    config.set_property("run-mode", mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    config.set_property("steps", P["steps"])
    result = procedure.run(config)
    after = state(image)
    after["status"] = result.index(0).value_nick
    write(name, {"before": before, "after": after})
    # The second run drags the source again, not the first run's result layer.
    image.set_selected_layers([layer])
