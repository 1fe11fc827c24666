# Runs INSIDE the GIMP 3 GUI (python-fu-eval under Xvfb), exec'd with PARAMS (a JSON file path),
# followed by a scene of its own (undo_scene.py, window_scene.py): builds an RGB image with a
# photo layer and a drag path and shows it in a display; `state(image)` is the layer tree with
# the sha256 of every layer's pixels, `write(name, value)` a JSON file the test waits for.
import hashlib
import json
import os

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
