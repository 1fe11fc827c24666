"""Unit tests of the plug-in's host-independent core (plugin/dragfu/dragfu_core)."""

import array
import os
import random
import sys

import pytest

# append, never insert: the engine package is also called dragfu (plugin/dragfu/dragfu.py)
sys.path.append(os.path.join(os.path.dirname(__file__), "..", "plugin", "dragfu"))

from dragfu_core import composite, config, geometry, mask, strokes  # noqa: E402
from dragfu_core.geometry import Rect  # noqa: E402


def gimp_points(*anchors):
    """GIMP's flat control-point list for a polyline: c_in = anchor = c_out."""
    flat = []
    for x, y in anchors:
        flat += [x, y, x, y, x, y]
    return flat


# ---------------------------------------------------------------- strokes -> drags


def test_two_anchor_stroke_is_handle_to_target():
    drags, notes = strokes.drags_from_strokes([(gimp_points((10, 20), (30.5, 24)), False, "s1")])
    assert notes == []
    assert drags == [strokes.Drag((10, 20), (30.5, 24))]
    assert drags[0].waypoints == []


def test_anchor_is_the_middle_pair_of_each_six_floats():
    # Control handles pulled away from the anchors must not leak into the drag.
    flat = [0, 0, 5, 6, 9, 9, 100, 100, 40, 50, -7, -7]
    drags, _ = strokes.drags_from_strokes([(flat, False, "s")])
    assert drags[0].handle == (5.0, 6.0) and drags[0].target == (40.0, 50.0)


def test_many_anchors_give_waypoints_in_order():
    pts = [(1, 1), (2, 5), (7, 5), (9, 9)]
    drags, _ = strokes.drags_from_strokes([(gimp_points(*pts), False, "s")])
    assert drags[0].handle == (1.0, 1.0)
    assert drags[0].waypoints == [(2.0, 5.0), (7.0, 5.0)]
    assert drags[0].target == (9.0, 9.0)
    assert drags[0].points() == [tuple(map(float, p)) for p in pts]


def test_closed_and_zero_length_strokes_are_ignored_with_a_note_single_anchors_are_pins():
    given = [
        (gimp_points((0, 0), (10, 0), (10, 10)), True, "closed one"),
        (gimp_points((5, 5)), False, "single one"),
        (gimp_points((3, 3), (8, 8), (3, 3)), False, "round trip"),
        (gimp_points((4, 4), (4, 4)), False, "duplicate anchors"),
        (gimp_points((1, 2), (3, 4)), False, "good one"),
    ]
    found, notes = strokes.drags_from_strokes(given)
    drags, pins = strokes.split_pins(found)
    assert [d.source for d in drags] == ["good one"]
    assert [(p.source, p.points()) for p in pins] == [
        ("single one", [(5.0, 5.0)]),
        ("duplicate anchors", [(4.0, 4.0)]),
    ]
    assert all(p.is_pin for p in pins) and not drags[0].is_pin
    assert pins[0].translated(-1, -2).points() == [(4.0, 3.0)]
    assert len(notes) == 2
    for label in ("closed one", "round trip"):
        assert any(label in n for n in notes)
    assert "closed" in notes[0] and "zero-length" in notes[1]


def test_bad_point_count_is_an_error():
    with pytest.raises(ValueError):
        strokes.anchors_from_points([1, 2, 3, 4])


# ---------------------------------------------------------------- geometry


def test_rect_intersection_union_and_fit():
    a, b = Rect(0, 0, 10, 10), Rect(5, 6, 10, 10)
    assert a.intersect(b) == Rect(5, 6, 5, 4)
    assert a.union(b) == Rect(0, 0, 15, 16)
    assert Rect(0, 0, 2, 2).intersect(Rect(5, 5, 2, 2)).is_empty()
    assert geometry.fit_inside(Rect(-5, 90, 20, 20), Rect(0, 0, 100, 100)) == Rect(0, 80, 20, 20)
    assert geometry.fit_inside(Rect(0, 0, 200, 20), Rect(0, 0, 100, 100)) == Rect(0, 0, 100, 20)


def test_region_layer_is_whole_layer_and_auto_is_the_context_square():
    pts = [(10.0, 10.0), (20.0, 12.0)]
    crop, notes = geometry.choose_region("layer", (300, 200), pts, None)
    assert crop == Rect(0, 0, 300, 200) and notes == []
    # auto on a small layer: the largest square that fits, holding the points.
    crop, notes = geometry.choose_region("auto", (300, 200), pts, None)
    assert crop == Rect(0, 0, 200, 200) and notes == []


def test_auto_region_never_takes_a_whole_photo():
    # A 2400x1800 photo, a drag around (1200, 1000): the context square, not the layer.
    pts = [(1190.0, 1000.0), (1214.0, 1000.0)]
    crop, _ = geometry.choose_region("auto", (2400, 1800), pts, None)
    assert (crop.width, crop.height) == (geometry.CONTEXT_SIDE, geometry.CONTEXT_SIDE)
    assert crop.contains_point(1190, 1000) and crop.contains_point(1214, 1000)
    assert crop.width * crop.height < 0.6 * 2400 * 1800
    # A selection reaching beyond the square grows it to hold the selection.
    selection = Rect(100, 900, 2000, 200)
    grown, _ = geometry.choose_region("auto", (2400, 1800), pts, selection)
    assert grown.x <= 100 and grown.x2 >= 2100
    # A rectangular model (twice as high as wide) gets a region of its shape.
    tall, _ = geometry.choose_region("auto", (2400, 1800), pts, None, model_size=(256, 512))
    assert tall.height == 2 * tall.width or tall.height == 1800


def test_region_selection_is_squared_inside_the_layer_and_contains_points():
    sel = Rect(100, 50, 60, 40)
    crop, notes = geometry.choose_region(
        "selection", (512, 384), [(120.0, 60.0), (130.0, 70.0)], sel
    )
    assert notes == []
    assert crop.width == crop.height == 64  # max(60, 40, min_side 64)
    assert crop.intersect(sel) == sel  # contains the selection
    # near the layer's corner the square is shifted, never cut
    crop, _ = geometry.choose_region(
        "selection", (512, 384), [(5.0, 5.0), (9.0, 9.0)], Rect(0, 0, 100, 80)
    )
    assert crop == Rect(0, 0, 100, 100)


def test_region_grows_to_include_points_outside_the_selection():
    crop, notes = geometry.choose_region(
        "selection", (400, 400), [(50.0, 50.0), (250.5, 60.0)], Rect(40, 40, 30, 30)
    )
    assert crop.contains_point(50, 50) and crop.contains_point(250.5, 60)
    assert notes and "outside the selection" in notes[0]


def test_region_points_square_with_context_and_narrow_layer():
    crop, notes = geometry.choose_region(
        "points", (1000, 1000), [(500.0, 500.0), (520.0, 500.0)], None
    )
    assert crop.width == crop.height
    assert crop.width >= 64 and crop.contains_point(500, 500) and crop.contains_point(520, 500)
    # the square is centred on the points
    assert abs((crop.x + crop.width / 2.0) - 510) <= 1
    # a layer narrower than the square: width cut to the layer, points still inside
    crop, _ = geometry.choose_region("points", (40, 1000), [(5.0, 500.0), (35.0, 560.0)], None)
    assert crop.x == 0 and crop.width == 40 and crop.contains_point(35, 560)
    # selection mode without a selection falls back to points, with a note
    crop, notes = geometry.choose_region(
        "selection", (1000, 1000), [(500.0, 500.0), (520.0, 500.0)], None
    )
    assert notes and "no selection" in notes[0]


def test_region_takes_the_shape_of_a_rectangular_model():
    human = (256, 512)  # StyleGAN-Human: 256 wide, 512 high
    assert geometry.model_shaped_size(60, 40, 64, None) == (64, 64)
    assert geometry.model_shaped_size(60, 40, 64, human) == (64, 128)
    assert geometry.model_shaped_size(100, 150, 64, human) == (100, 200)
    assert geometry.model_shaped_size(30, 300, 64, human) == (150, 300)
    sel = Rect(100, 50, 60, 40)
    crop, notes = geometry.choose_region(
        "selection", (512, 384), [(120.0, 60.0), (130.0, 70.0)], sel, model_size=human
    )
    assert notes == [] and (crop.width, crop.height) == (64, 128)
    assert crop.intersect(sel) == sel
    # a square model's answer changes nothing
    assert geometry.choose_region(
        "selection", (512, 384), [(120.0, 60.0)], sel, model_size=(64, 64)
    ) == (geometry.choose_region("selection", (512, 384), [(120.0, 60.0)], sel))
    # points: the square with context becomes the shorter side
    square, _ = geometry.choose_region("points", (1000, 1000), [(500.0, 500.0), (520.0, 500.0)])
    tall, notes = geometry.choose_region(
        "selection", (1000, 1000), [(500.0, 500.0), (520.0, 500.0)], None, model_size=human
    )
    assert notes and "no selection" in notes[0] and "model's shape" in notes[0]
    assert tall.width == square.width and tall.height == 2 * square.width
    assert tall.contains_point(500, 500) and tall.contains_point(520, 500)
    assert abs((tall.y + tall.height / 2.0) - 500) <= 1
    # a layer too low for the shape: the height is cut to the layer, the points stay inside
    crop, _ = geometry.choose_region("points", (400, 100), [(200.0, 50.0), (210.0, 60.0)],
                                     model_size=human)  # fmt: skip
    assert crop.y == 0 and crop.height == 100 and crop.contains_point(210, 60)
    # the whole layer is the whole layer, whatever the model
    crop, _ = geometry.choose_region("layer", (300, 200), [(10.0, 10.0)], model_size=human)
    assert crop == Rect(0, 0, 300, 200)


def test_engine_model_size_answer_is_checked():
    from dragfu_core.session import model_size

    assert model_size([256, 512]) == (256, 512) and model_size((32, 32)) == (32, 32)
    for bad in (None, 512, [512], [0, 512], [256.0, 512], [True, 2], "ab", [1, 2, 3]):
        assert model_size(bad) is None, bad


def test_points_map_image_to_layer_to_crop():
    # layer at image offset (30, -12); crop at (100, 40) inside the layer
    p_image = (150.5, 60.25)
    p_layer = geometry.image_to_layer(p_image, (30, -12))
    assert p_layer == (120.5, 72.25)
    crop = Rect(100, 40, 64, 64)
    assert geometry.layer_to_crop(p_layer, crop) == (20.5, 32.25)
    # drags translate the same way
    d = strokes.Drag((150.5, 60.25), (160.0, 60.0), [(155.0, 61.0)]).translated(-30 - 100, 12 - 40)
    assert d.handle == (20.5, 32.25) and d.target == (30.0, 32.0) and d.waypoints == [(25.0, 33.0)]
    # pixel-edge convention: scaling the whole grid scales centres consistently
    assert geometry.scale_point((0.5, 0.5), 2.0, 2.0) == (1.0, 1.0)


# ---------------------------------------------------------------- masks


def test_movable_mask_thresholds_half_selection():
    assert list(mask.movable_mask(bytearray([0, 127, 128, 255]))) == [0, 0, 255, 255]


# ---------------------------------------------------------------- compositing


def random_bytes(n, seed):
    rng = random.Random(seed)
    return bytearray(rng.randrange(256) for _ in range(n))


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_put_rgb_writes_the_box_keeps_alpha_and_everything_else(channels):
    w, h = 7, 5
    base = random_bytes(w * h * channels, 3)
    box = Rect(2, 1, 3, 2)  # inside base_rect = the whole 7 x 5 buffer
    rgb = bytearray([200, 10, 30]) * (box.width * box.height)
    out = composite.put_rgb(base, channels, Rect(0, 0, w, h), box, rgb)
    assert isinstance(out, bytearray) and len(out) == len(base) and out is not base
    for j in range(h):
        for i in range(w):
            p = (j * w + i) * channels
            inside = box.x <= i < box.x2 and box.y <= j < box.y2
            if not inside:
                assert out[p : p + channels] == base[p : p + channels]
                continue
            if channels >= 3:
                assert list(out[p : p + 3]) == [200, 10, 30]
            else:  # grey: Rec. 709 luma of the colour
                assert out[p] == int(0.2126 * 200 + 0.7152 * 10 + 0.0722 * 30 + 0.5)
            if channels in (2, 4):
                assert out[p + channels - 1] == base[p + channels - 1]  # alpha kept


@pytest.mark.parametrize("channels", [1, 2])
def test_put_grey_writes_the_engines_luma_in_the_box_and_keeps_alpha(channels):
    w, h = 7, 5
    base = random_bytes(w * h * channels, 4)
    box = Rect(2, 1, 3, 2)
    grey = bytearray(range(100, 100 + box.width * box.height))
    out = composite.put_grey(base, channels, Rect(0, 0, w, h), box, grey)
    assert isinstance(out, bytearray) and len(out) == len(base)
    for j in range(h):
        for i in range(w):
            p = (j * w + i) * channels
            if box.x <= i < box.x2 and box.y <= j < box.y2:
                assert out[p] == grey[(j - box.y) * box.width + i - box.x]
                if channels == 2:
                    assert out[p + 1] == base[p + 1]
            else:
                assert out[p : p + channels] == base[p : p + channels]
    with pytest.raises(ValueError):
        composite.put_grey(base, 3, Rect(0, 0, w, h), box, grey)


def test_put_rgb_float_keeps_full_precision_where_the_engine_changed_nothing():
    w, h = 4, 2
    base = array.array("f", [0.1234, 0.5678, 0.9, 1.0] * (w * h))  # RGBA float, 0..1
    given = composite.to_rgb8(base, 4, w, h, 1.0)
    edited = bytearray(given)
    edited[0:3] = bytearray([255, 0, 0])  # the engine changed pixel (0, 0) only
    out = composite.put_rgb(base, 4, Rect(0, 0, w, h), Rect(0, 0, w, h), edited, 1.0)
    assert list(out[0:4]) == pytest.approx([1.0, 0.0, 0.0, 1.0])
    assert list(out[4:]) == list(base[4:])  # bit for bit, not rounded through 8 bits


def test_sub_rect_takes_the_rows_of_a_rect():
    w, h, c = 5, 4, 2
    base = bytearray(range(w * h * c))
    part = composite.sub_rect(base, c, w, Rect(1, 2, 3, 2))
    assert list(part) == list(base[(2 * w + 1) * c : (2 * w + 4) * c]) + list(
        base[(3 * w + 1) * c : (3 * w + 4) * c]
    )


def test_to_rgb8_from_every_layout():
    grey_alpha = bytearray([10, 200, 20, 100])
    assert list(composite.to_rgb8(grey_alpha, 2, 2, 1)) == [10, 10, 10, 20, 20, 20]
    rgba = bytearray([1, 2, 3, 4, 5, 6, 7, 8])
    assert list(composite.to_rgb8(rgba, 4, 2, 1)) == [1, 2, 3, 5, 6, 7]
    floats = array.array("f", [0.0, 0.5, 1.0, 1.0])
    assert list(composite.to_rgb8(floats, 4, 1, 1, max_value=1.0)) == [0, 128, 255]


def test_config_defaults_and_validation(tmp_path):
    cfg = config.parse_config('{"engine_command": ["/x/dragfu", "serve"], "device": "cpu"}')
    assert cfg["engine_command"] == ["/x/dragfu", "serve"]
    assert cfg["device"] == "cpu" and cfg["model"] == "toy" and cfg["steps"] == 200
    for bad in (
        "[1]",
        "{nope",
        '{"engine_command": [1]}',
        '{"steps": "many"}',
        '{"engine_env": {"A": 1}}',
    ):
        with pytest.raises(config.ConfigError):
            config.parse_config(bad)


def test_config_search_order(tmp_path):
    plugin_dir = tmp_path / "plugin"
    gimp_dir = tmp_path / "gimp"
    plugin_dir.mkdir()
    gimp_dir.mkdir()
    (gimp_dir / "dragfu.json").write_text('{"engine_command": ["g"], "model": "from-gimp"}')
    env = {"PATH": ""}
    cfg, path = config.load_config(str(plugin_dir), str(gimp_dir), env)
    assert cfg["model"] == "from-gimp" and path.endswith(os.path.join("gimp", "dragfu.json"))
    (plugin_dir / "dragfu.json").write_text('{"engine_command": ["p"], "model": "from-plugin"}')
    cfg, _ = config.load_config(str(plugin_dir), str(gimp_dir), env)
    assert cfg["model"] == "from-plugin"
    explicit = tmp_path / "x.json"
    explicit.write_text('{"engine_command": "solo"}')
    cfg, _ = config.load_config(
        str(plugin_dir), str(gimp_dir), dict(env, DRAGFU_CONFIG=str(explicit))
    )
    assert cfg["engine_command"] == ["solo"]


def test_config_falls_back_to_dragfu_on_path(tmp_path):
    exe = tmp_path / "dragfu"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    cfg, path = config.load_config(None, None, {"PATH": str(tmp_path)})
    assert path is None and cfg["engine_command"] == [str(exe), "serve"]
    cfg, _ = config.load_config(None, None, {"PATH": ""})
    assert cfg["engine_command"] is None
