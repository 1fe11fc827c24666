"""The GIMP 2.10 plug-in end to end on the gimpfu shim (tests/gimp2_shim), with a real engine process.

The engine here is tests/gimp2_shim/fake_engine.py: the real protocol server over a fake backend
that paints a marker at each drag target, so every coordinate change (image -> layer -> crop ->
model and back) is checked in milliseconds. tests/test_plugin_toy.py runs the real engine.
"""

import importlib.util
import json
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SHIM = os.path.join(HERE, "gimp2_shim")
PLUGIN = os.path.join(HERE, "..", "plugin", "gimp2", "dragfu_gimp2.py")
sys.path.insert(0, SHIM)

import gimp  # noqa: E402
import gimpfu  # noqa: E402
from gimpfu import pdb  # noqa: E402

MAGENTA = (255, 0, 255)


def load_plugin():
    spec = importlib.util.spec_from_file_location("dragfu_gimp2", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PLUGIN_MODULE = load_plugin()
PROC = PLUGIN_MODULE.PROCEDURE


@pytest.fixture(autouse=True)
def engine_config(tmp_path, monkeypatch):
    config = {
        "engine_command": [
            sys.executable,
            os.path.join(SHIM, "fake_engine.py"),
            "--resolution",
            "64",
        ],
        "model": "toy",
        "steps": 4,
    }
    path = tmp_path / "dragfu.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("DRAGFU_CONFIG", str(path))
    gimp.reset()
    return path


def pattern(width, height, bpp, seed=0):
    """Smooth but non-constant pixels (no magenta anywhere)."""
    data = bytearray(width * height * bpp)
    for j in range(height):
        for i in range(width):
            p = (j * width + i) * bpp
            values = [(i * 3 + seed) % 200, (j * 2 + 40) % 200, (i + j) % 120 + 20, 255 - (i % 7)]
            if bpp in (1, 2):
                values = [(i + 2 * j + seed) % 200, 200 - (i % 5)]
            data[p : p + bpp] = bytearray(values[:bpp])
    return data


def make_image(layer_type=gimp.RGB_IMAGE, offsets=(30, 20), in_group=False, base=gimp.RGB):
    image = pdb.gimp_image_new(200, 160, base)
    bottom = pdb.gimp_layer_new(image, 200, 160, layer_type, "background", 100, 0)
    bottom.data = pattern(200, 160, bottom.bpp, seed=7)
    pdb.gimp_image_insert_layer(image, bottom, None, 0)
    parent = None
    if in_group:
        parent = pdb.gimp_layer_group_new(image)
        pdb.gimp_image_insert_layer(image, parent, None, 0)
    layer = pdb.gimp_layer_new(image, 150, 120, layer_type, "photo", 100, 0)
    layer.data = pattern(150, 120, layer.bpp)
    pdb.gimp_layer_set_offsets(layer, *offsets)
    pdb.gimp_image_insert_layer(image, layer, parent, 0)
    top = pdb.gimp_layer_new(image, 20, 20, layer_type, "on top", 100, 0)
    pdb.gimp_image_insert_layer(image, top, parent, 0)
    return image, layer


def add_path(image, *strokes, **kw):
    vectors = pdb.gimp_vectors_new(image, kw.get("name", "drag"))
    pdb.gimp_image_insert_vectors(image, vectors, None, 0)
    for anchors in strokes:
        flat = []
        for x, y in anchors:
            flat += [x, y, x, y, x, y]
        pdb.gimp_vectors_stroke_new_from_points(
            vectors, 0, len(flat), flat, kw.get("closed", False)
        )
    return vectors


def snapshot(image):
    return (
        [(item.ID, item.name, bytes(item.data), item.offsets) for item in image.all_layers()],
        list(image.undo_stack),
        image.base_type,
    )


def marker_centroid(layer, rect_image):
    """Centroid (image coordinates, pixel centres) of the magenta marker pixels in the new layer."""
    ox, oy = layer.offsets
    xs, ys = [], []
    for j in range(layer.height):
        for i in range(layer.width):
            p = (j * layer.width + i) * layer.bpp
            r, g, b = layer.data[p], layer.data[p + 1], layer.data[p + 2]
            if r > 200 and g < 80 and b > 200:
                xs.append(i + ox + 0.5)
                ys.append(j + oy + 0.5)
    assert xs, "no marker found in the result layer"
    return sum(xs) / len(xs), sum(ys) / len(ys)


def run(image, layer, **args):
    return gimpfu.call(PROC, image, layer, **args)


def test_registration_matches_gimp_210_conventions():
    proc = gimpfu.PROCEDURES[PROC]
    assert proc.menu == "<Image>/Filters/Distorts"
    assert proc.label == "Drag-Fu (GAN point drag)..."
    names = [p[1] for p in proc.params]
    assert names[:2] == ["image", "drawable"]
    for wanted in (
        "model",
        "steps",
        "paths",
        "use_selection",
        "region",
        "reuse_projection",
        "keep_frames",
        "device",
        "engine_command",
    ):
        assert wanted in names


@pytest.mark.parametrize("in_group", [False, True])
def test_drag_inserts_new_layer_above_source_and_keeps_everything_else(in_group):
    image, layer = make_image(in_group=in_group)
    add_path(image, [(100.5, 80.5), (110.5, 84.5)])
    pdb.gimp_image_select_rectangle(image, gimpfu.CHANNEL_OP_REPLACE, 60, 40, 90, 90)
    before_source = bytes(layer.data)
    before_undo = list(image.undo_stack)
    siblings = image.siblings(layer)
    before_count = len(siblings)

    run(image, layer)

    assert gimp.MESSAGES == []
    assert len(siblings) == before_count + 1
    position = siblings.index(layer)
    new = siblings[position - 1]  # directly above the source
    assert new is not layer and new.name.startswith("Drag-Fu: 1 drag")
    assert new.parent is layer.parent
    assert new.offsets == layer.offsets and (new.width, new.height) == (layer.width, layer.height)
    assert bytes(layer.data) == before_source  # the source is never modified
    # exactly one undo step, a group, holding the insertion
    assert image.undo_stack[:-1] == before_undo and image.undo_stack[-1][0] == "group"
    # outside the selection, the new layer is the source, byte for byte
    ox, oy = layer.offsets
    changed = 0
    for j in range(layer.height):
        for i in range(layer.width):
            p = (j * layer.width + i) * 3
            inside = 60 <= i + ox < 150 and 40 <= j + oy < 130
            if not inside:
                assert new.data[p : p + 3] == layer.data[p : p + 3], (i, j)
            elif new.data[p : p + 3] != layer.data[p : p + 3]:
                changed += 1
    assert changed > 0
    # the target went through image -> layer -> crop -> model coordinates and back
    cx, cy = marker_centroid(new, None)
    assert abs(cx - 110.5) <= 1.5 and abs(cy - 84.5) <= 1.5
    # progress: GIMP's bar moved forward with stage texts
    texts = [t for kind, t in gimp.PROGRESS if kind == "text"]
    assert any("projecting" in t for t in texts) and any("dragging step" in t for t in texts)
    fractions = [f for kind, f in gimp.PROGRESS if kind == "update"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_region_points_without_selection_and_waypoints():
    image, layer = make_image(offsets=(0, 0))
    add_path(image, [(40.5, 50.5), (45.0, 52.0), (48.5, 55.5)])
    run(image, layer, region=2)  # "The area around the points"
    assert gimp.MESSAGES == []
    new = image.layers[image.layers.index(layer) - 1]
    cx, cy = marker_centroid(new, None)
    assert abs(cx - 48.5) <= 1.5 and abs(cy - 55.5) <= 1.5
    # far from the points nothing changed (the crop is a square around them)
    assert new.data[-3 * 10 :] == layer.data[-3 * 10 :]


@pytest.mark.parametrize(
    "layer_type, base",
    [(gimp.RGBA_IMAGE, gimp.RGB), (gimp.GRAY_IMAGE, gimp.GRAY), (gimp.GRAYA_IMAGE, gimp.GRAY)],
)
def test_other_layer_types_keep_their_layout(layer_type, base, monkeypatch):
    image, layer = make_image(layer_type=layer_type, base=base)
    add_path(image, [(100.5, 80.5), (104.5, 80.5)])
    before = bytes(layer.data)
    if base == gimp.GRAY:  # a grey layer gets the engine's luma, written by row slices
        from dragfu_core import composite

        def no_rgb(*args, **kwargs):
            raise AssertionError("a grey layer's result went through put_rgb")

        monkeypatch.setattr(composite, "put_rgb", no_rgb)
    run(image, layer)
    assert gimp.MESSAGES == []
    new = image.siblings(layer)[image.siblings(layer).index(layer) - 1]
    assert new.type == layer.type and len(new.data) == len(layer.data)
    assert bytes(layer.data) == before
    if layer.has_alpha:  # the layer's own alpha is kept everywhere
        assert new.data[layer.bpp - 1 :: layer.bpp] == layer.data[layer.bpp - 1 :: layer.bpp]
    assert new.data != layer.data  # the edit is in


def test_indexed_image_is_converted_in_the_same_undo_step():
    image = pdb.gimp_image_new(64, 64, gimp.INDEXED)
    pdb.gimp_image_set_colormap(image, 9, [10, 20, 30, 200, 100, 50, 0, 90, 0])
    layer = pdb.gimp_layer_new(image, 64, 64, gimp.INDEXED_IMAGE, "idx", 100, 0)
    layer.data = bytearray((i // 64 + i) % 3 for i in range(64 * 64))
    pdb.gimp_image_insert_layer(image, layer, None, 0)
    add_path(image, [(20.5, 20.5), (30.5, 22.5)])
    undo_before = len(image.undo_stack)
    run(image, layer)
    assert gimp.MESSAGES == []
    assert image.base_type == gimp.RGB and len(image.undo_stack) == undo_before + 1
    new = image.layers[0]
    assert new is not layer and new.type == gimp.RGB_IMAGE
    cx, cy = marker_centroid(new, None)
    assert abs(cx - 30.5) <= 1.5 and abs(cy - 22.5) <= 1.5


def test_keep_frames_adds_a_hidden_group_and_result_stays_directly_above():
    image, layer = make_image(offsets=(0, 0))
    add_path(image, [(60.5, 60.5), (70.5, 60.5)])
    run(image, layer, keep_frames=True, steps=4)
    assert gimp.MESSAGES == []
    position = image.layers.index(layer)
    result, group = image.layers[position - 1], image.layers[position - 2]
    assert result.name.startswith("Drag-Fu") and group.is_group and not group.visible
    assert len(group.children) >= 1 and all(len(c.data) == len(layer.data) for c in group.children)


def assert_untouched_with_message(image, before, *needles):
    assert snapshot(image) == before
    assert len(gimp.MESSAGES) == 1
    for needle in needles:
        assert needle in gimp.MESSAGES[0]


def test_broken_engine_command_leaves_image_untouched_with_message():
    image, layer = make_image()
    add_path(image, [(100.5, 80.5), (110.5, 84.5)])
    before = snapshot(image)
    run(image, layer, engine_command="/nonexistent/dragfu serve")
    assert_untouched_with_message(image, before, "cannot start the engine", "engine command")


def test_engine_error_shows_the_engines_message_and_hint():
    image, layer = make_image()
    add_path(image, [(100.5, 80.5), (110.5, 84.5)])
    before = snapshot(image)
    run(image, layer, model="missing")
    assert_untouched_with_message(image, before, "no model named 'missing'", "dragfu models list")


def test_no_usable_path_explains_how_to_draw_one():
    image, layer = make_image()
    add_path(image, [(10, 10), (50, 10), (50, 50)], closed=True)
    before = snapshot(image)
    run(image, layer)
    assert_untouched_with_message(image, before, "no drag found", "closed", "Paths tool")


def test_visible_paths_mode_uses_only_visible_paths():
    image, layer = make_image(offsets=(0, 0))
    hidden = add_path(image, [(30.5, 30.5), (35.5, 30.5)], name="hidden")
    shown = add_path(image, [(90.5, 90.5), (96.5, 92.5)], name="shown")
    pdb.gimp_item_set_visible(shown, True)
    pdb.gimp_image_set_active_vectors(image, hidden)
    run(image, layer, paths=1)
    assert gimp.MESSAGES == []
    new = image.layers[image.layers.index(layer) - 1]
    cx, cy = marker_centroid(new, None)
    assert abs(cx - 96.5) <= 1.5 and abs(cy - 92.5) <= 1.5


def test_target_outside_the_layer_is_refused():
    image, layer = make_image(offsets=(30, 20))
    add_path(image, [(100.5, 80.5), (10.5, 5.5)])  # target left of the layer
    before = snapshot(image)
    run(image, layer)
    assert_untouched_with_message(image, before, "outside the layer")


def test_a_layer_group_or_a_channel_is_refused():
    image, layer = make_image(in_group=True)
    add_path(image, [(100.5, 80.5), (110.5, 84.5)])
    before = snapshot(image)
    run(image, layer.parent)
    assert_untouched_with_message(image, before, "not a layer group")
    gimp.reset()
    run(image, image.selection)
    assert_untouched_with_message(image, before, "select a layer")


@pytest.mark.parametrize(
    "layer_type, base", [(gimp.RGB_IMAGE, gimp.RGB), (gimp.GRAY_IMAGE, gimp.GRAY)]
)
def test_live_preview_layer_above_the_source_outside_undo_and_gone_at_the_end(
    engine_config, layer_type, base
):
    config = json.loads(engine_config.read_text())
    config["engine_command"] += ["--step-delay", "0.1"]
    engine_config.write_text(json.dumps(config))
    image, layer = make_image(layer_type, in_group=True, base=base)
    add_path(image, [(100.5, 80.5), (110.5, 84.5)])
    # A preview left by a run that GIMP killed (its progress Cancel) goes with the next run.
    leftover = pdb.gimp_layer_new(image, 10, 10, layer_type, "Drag-Fu preview", 100, 0)
    pdb.gimp_image_insert_layer(image, leftover, None, 0)
    before_undo = list(image.undo_stack)
    image.dirty_count = 0
    flushes = gimp.FLUSHES[0]

    run(image, layer, steps=12)

    assert gimp.MESSAGES == []
    with_preview = [names for names in image.layer_history if "Drag-Fu preview" in names]
    assert with_preview, "the preview layer never appeared"
    names = with_preview[-1]  # the last insert: the new preview, the leftover went first
    assert names.count("Drag-Fu preview") == 1
    assert names.index("Drag-Fu preview") == names.index("photo") - 1  # directly above the source
    assert all(layer.name != "Drag-Fu preview" for layer in image.all_layers())  # gone at the end
    # Only the result's group is in the undo history: the preview never was.
    assert image.undo_stack[:-1] == before_undo and image.undo_stack[-1][0] == "group"
    assert image.undo_frozen == 0
    assert gimp.FLUSHES[0] > flushes + 1  # the display was refreshed for the preview


def test_a_cancelled_run_leaves_no_preview_and_the_image_clean(engine_config, monkeypatch):
    config = json.loads(engine_config.read_text())
    config["engine_command"] += ["--step-delay", "0.1"]
    engine_config.write_text(json.dumps(config))
    image, layer = make_image()
    add_path(image, [(100.5, 80.5), (110.5, 84.5)])
    image.dirty_count = 0
    before = snapshot(image)
    from dragfu_core import session

    # The host class of the registered procedure (another test file may have loaded the plug-in too).
    host_class = gimpfu.PROCEDURES[PROC].function.__globals__["Gimp2Host"]
    original = host_class.preview_update

    def cancel_after_a_preview(self, area, rect, rgb):
        original(self, area, rect, rgb)
        os.kill(os.getpid(), __import__("signal").SIGINT)  # what GIMP sends: the cancel flag

    monkeypatch.setattr(host_class, "preview_update", cancel_after_a_preview)
    assert session.CancelFlag  # the handler that turns SIGINT into a cancel
    run(image, layer, steps=40)
    assert any("cancelled" in m for m in gimp.MESSAGES), gimp.MESSAGES
    assert any("Drag-Fu preview" in names for names in image.layer_history)
    assert snapshot(image) == before and image.dirty_count == 0
