# Runs INSIDE GIMP 3 (python-fu-eval), exec'd with PARAMS (a JSON file path) defined.
# Builds an image from the params, runs plug-in-dragfu non-interactively, and writes what the
# test checks (layer tree, offsets, pixels of the source and of the new layer, the PDB status)
# into the params' out folder. Pixels travel as raw 8-bit files.
import json
import os

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

P = json.load(open(PARAMS))  # noqa: F821  (defined by the batch command)
OUT = P["out"]
FORMATS = {"RGB": "R'G'B' u8", "RGBA": "R'G'B'A u8", "Y": "Y' u8", "YA": "Y'A u8"}
TYPES = {
    "RGB": Gimp.ImageType.RGB_IMAGE,
    "RGBA": Gimp.ImageType.RGBA_IMAGE,
    "Y": Gimp.ImageType.GRAY_IMAGE,
    "YA": Gimp.ImageType.GRAYA_IMAGE,
}


def rect(x, y, w, h):
    return Gegl.Rectangle.new(x, y, w, h)


def read_layer(layer, fmt):
    return bytes(
        layer.get_buffer().get(
            rect(0, 0, layer.get_width(), layer.get_height()), 1.0, fmt, Gegl.AbyssPolicy.CLAMP
        )
    )


base = Gimp.ImageBaseType.GRAY if P["layer"]["mode"] in ("Y", "YA") else Gimp.ImageBaseType.RGB
image = Gimp.Image.new(P["width"], P["height"], base)
if P.get("precision") == "u16":
    image.convert_precision(Gimp.Precision.U16_NON_LINEAR)
background = Gimp.Layer.new(
    image,
    "background",
    P["width"],
    P["height"],
    TYPES[P["layer"]["mode"]],
    100,
    Gimp.LayerMode.NORMAL,
)
image.insert_layer(background, None, 0)
parent = None
if P.get("in_group"):
    parent = Gimp.GroupLayer.new(image, "group")
    image.insert_layer(parent, None, 0)
spec = P["layer"]
fmt = FORMATS[spec["mode"]]
layer = Gimp.Layer.new(
    image, "photo", spec["width"], spec["height"], TYPES[spec["mode"]], 100, Gimp.LayerMode.NORMAL
)
image.insert_layer(layer, parent, 0)
layer.set_offsets(spec["offsets"][0], spec["offsets"][1])
buffer = layer.get_buffer()
buffer.set(rect(0, 0, spec["width"], spec["height"]), fmt, open(spec["pixels"], "rb").read())
buffer.flush()
top = Gimp.Layer.new(image, "on top", 10, 10, TYPES[spec["mode"]], 100, Gimp.LayerMode.NORMAL)
image.insert_layer(top, parent, 0)

if P.get("indexed"):
    image.convert_indexed(
        Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 64, False, False, ""
    )

for index, anchors in enumerate(P.get("strokes", [])):
    path = Gimp.Path.new(image, f"drag {index + 1}")
    image.insert_path(path, None, 0)
    flat = []
    for x, y in anchors:
        flat += [x, y, x, y, x, y]
    path.stroke_new_from_points(Gimp.PathStrokeType.BEZIER, flat, False)
image.set_selected_paths(image.get_paths())
if P.get("selection"):
    x, y, w, h = P["selection"]
    image.select_rectangle(Gimp.ChannelOps.REPLACE, x, y, w, h)
image.undo_enable()
image.clean_all()

source_before = read_layer(layer, fmt)
siblings_before = [
    item.get_name() for item in (parent.get_children() if parent else image.get_layers())
]

procedure = Gimp.get_pdb().lookup_procedure("plug-in-dragfu")
config = procedure.create_config()
config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
config.set_property("image", image)
config.set_core_object_array("drawables", [layer])
for key, value in P.get("args", {}).items():
    config.set_property(key, value)
stopper = None
if P.get("stop_after"):
    # The user's Stop (= keep): after stop_after seconds, the stop file the plug-in polls
    # (its default place: the temp folder both plug-in processes share), made again whenever the
    # plug-in consumed it, until the run returns.
    import tempfile
    import threading

    stop_file = os.environ.get("DRAGFU_STOP_FILE") or os.path.join(
        tempfile.gettempdir(), "dragfu-stop"
    )
    done = threading.Event()

    def press_stop():
        if done.wait(P["stop_after"]):
            return
        while not done.wait(0.3):
            if not os.path.exists(stop_file):
                open(stop_file, "w").close()

    stopper = threading.Thread(target=press_stop, daemon=True)
    stopper.start()
result = procedure.run(config)
if stopper is not None:
    done.set()
    stopper.join()
status = result.index(0)
message = result.index(1) if result.length() > 1 else None

siblings = parent.get_children() if parent else image.get_layers()
names = [item.get_name() for item in siblings]
position = siblings.index(layer) if layer in siblings else -1
report = {
    "status": status.value_nick,
    "message": str(message) if message is not None else None,
    "siblings_before": siblings_before,
    "siblings": names,
    "source_position": position,
    "source_offsets": list(layer.get_offsets()[1:]),
    "source_unchanged": read_layer(layer, fmt) == source_before,
    "image_dirty": image.is_dirty(),
    "base_type": image.get_base_type().value_nick,
    "groups": {
        item.get_name(): [c.get_name() for c in item.get_children()]
        for item in siblings
        if item.is_group()
    },
    "hidden": [item.get_name() for item in siblings if not item.get_visible()],
}
if position > 0 and len(names) > len(siblings_before):
    new = siblings[position - 1]
    report["new_name"] = new.get_name()
    report["new_offsets"] = list(new.get_offsets()[1:])
    report["new_size"] = [new.get_width(), new.get_height()]
    report["new_parent_is_source_parent"] = (
        (new.get_parent() == layer.get_parent()) if parent else new.get_parent() is None
    )
    with open(os.path.join(OUT, "new.raw"), "wb") as handle:
        handle.write(read_layer(new, fmt))
with open(os.path.join(OUT, "source.raw"), "wb") as handle:
    handle.write(read_layer(layer, fmt))
with open(os.path.join(OUT, "report.json"), "w") as handle:
    json.dump(report, handle, indent=1)
image.delete()
