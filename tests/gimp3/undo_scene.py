# Runs INSIDE the GIMP 3 GUI (python-fu-eval under Xvfb), exec'd with PARAMS (a JSON file path).
# Builds an RGB image with a photo layer and a drag path, shows it in a display, runs
# plug-in-dragfu non-interactively, then waits while the test presses Ctrl+Z once in the image
# window (GIMP 3 gives plug-ins no undo call; undo is the app's edit-undo action). Writes the
# layer tree and the sha256 of every layer's pixels before, after the run and after the undo.
import hashlib
import json
import os
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

P = json.load(open(PARAMS))  # noqa: F821  (defined by the batch command)
OUT = P["out"]


def state(image):
    layers = []
    for item in image.get_layers():
        w, h = item.get_width(), item.get_height()
        data = bytes(
            item.get_buffer().get(
                Gegl.Rectangle.new(0, 0, w, h), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.CLAMP
            )
        )
        layers.append(
            [
                item.get_name(),
                list(item.get_offsets()[1:]),
                [w, h],
                hashlib.sha256(data).hexdigest(),
            ]
        )
    return {"layers": layers, "dirty": image.is_dirty()}


def write(name, value):
    with open(os.path.join(OUT, name + ".tmp"), "w") as handle:
        json.dump(value, handle)
    os.replace(os.path.join(OUT, name + ".tmp"), os.path.join(OUT, name))


W, H = 200, 160
image = Gimp.Image.new(W, H, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(image, "photo", W, H, Gimp.ImageType.RGB_IMAGE, 100, Gimp.LayerMode.NORMAL)
image.insert_layer(layer, None, 0)
buffer = layer.get_buffer()
buffer.set(Gegl.Rectangle.new(0, 0, W, H), "R'G'B' u8", open(P["pixels"], "rb").read())
buffer.flush()
path = Gimp.Path.new(image, "drag")
image.insert_path(path, None, 0)
flat = [v for x, y in P["stroke"] for v in (x, y, x, y, x, y)]
path.stroke_new_from_points(Gimp.PathStrokeType.BEZIER, flat, False)
image.set_selected_paths([path])
image.undo_disable()  # an empty undo history: every step after this one is the run's
image.undo_enable()
image.clean_all()
Gimp.Display.new(image)
Gimp.displays_flush()
before = state(image)

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
