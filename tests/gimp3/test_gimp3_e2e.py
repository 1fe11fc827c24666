"""Drag-Fu in the real GIMP 3, end to end (headless gimp-console-3.0, python-fu-eval).

Uses GIMP 3 from the machine, or from a Debian 13 chroot built on first use (tests/gimp3/harness.py;
skipped, with the reason, only when that cannot be built). The engine runs inside too: the fake
engine (real protocol server, marker-painting backend) for the fast checks, and the real
`dragfu serve` with the toy model (Debian's CPU torch) for the issue's test.
"""

import json
import os
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

pytestmark = pytest.mark.gimp

REPO = harness.REPO
FAKE_ENGINE = os.path.join(REPO, "tests", "gimp2_shim", "fake_engine.py")
FAKE_BACKEND = os.path.join(REPO, "tests", "protocol_vectors", "serve_fake_engine.py")
SCENE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gimp_scene.py")
CHANNELS = {"RGB": 3, "RGBA": 4, "Y": 1, "YA": 2}


def run_scene(mode, params, pixels, engine_config=None, fake_engine=False, timeout=600, files=()):
    """Build the scene in GIMP 3, run the plug-in, return (report, source, new) arrays.
    files: paths copied into the run's work folder ("{work}/NAME" in the engine config)."""
    run = harness.GimpRun(mode, engine_config)
    try:
        if fake_engine:
            shutil.copy(FAKE_ENGINE, run.outside("work", "fake_engine.py"))
            shutil.copy(FAKE_BACKEND, run.outside("work", "serve_fake_engine.py"))  # it imports it
        for path in files:
            shutil.copy(path, run.outside("work", os.path.basename(path)))
        spec = params["layer"]
        h, w = spec["height"], spec["width"]
        c = CHANNELS[spec["mode"]]
        assert pixels.shape == (h, w, c)
        pixels.astype(np.uint8).tofile(run.outside("work", "photo.raw"))
        spec["pixels"] = run.path("work", "photo.raw")
        params["out"] = run.path("work")
        with open(run.outside("work", "params.json"), "w") as handle:
            json.dump(params, handle)
        script = "PARAMS = {!r}\n".format(run.path("work", "params.json")) + open(SCENE).read()
        code, output = run.python(script, timeout=timeout)
        report_path = run.outside("work", "report.json")
        assert os.path.exists(report_path), f"GIMP wrote no report (exit {code}):\n{output[-4000:]}"
        report = json.load(open(report_path))
        report["console"] = output
        source = np.fromfile(run.outside("work", "source.raw"), np.uint8).reshape(h, w, c)
        new = None
        if os.path.exists(run.outside("work", "new.raw")):
            new = np.fromfile(run.outside("work", "new.raw"), np.uint8).reshape(h, w, c)
        return report, source, new
    finally:
        run.cleanup()


def smooth_pattern(h, w, c, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack(
        [(xx * 3 + seed) % 200, (yy * 2 + 40) % 200, (xx + yy) % 120 + 20, 255 - (xx % 7)], -1
    )
    base = base + rng.integers(0, 3, size=base.shape)
    if c in (1, 2):
        grey = ((xx + 2 * yy + seed) % 200)[..., None]
        base = np.concatenate([grey, (200 - (xx % 5))[..., None]], -1)
    return base[..., :c].astype(np.uint8)


def magenta_centroid(new, offsets):
    r, g, b = (new[..., i].astype(int) for i in range(3))
    ys, xs = np.nonzero((r > 200) & (g < 80) & (b > 200))
    assert len(xs), "no marker in the new layer"
    return xs.mean() + 0.5 + offsets[0], ys.mean() + 0.5 + offsets[1]


@pytest.mark.parametrize(
    "mode_name, in_group, precision, extra",
    [
        ("RGB", False, "u8", {}),
        ("RGBA", True, "u16", {}),
        ("Y", False, "u8", {"keep-frames": True}),
        ("RGB", True, "u8", {"indexed": True}),
    ],
    ids=["rgb", "rgba-u16-in-group", "grey-with-frames", "indexed-in-group"],
)
def test_fake_engine_layer_above_source_offsets_and_untouched_pixels(
    gimp_mode, mode_name, in_group, precision, extra
):
    h, w, offsets = 300, 400, (40, 30)
    c = CHANNELS[mode_name]
    pixels = smooth_pattern(h, w, c)
    selection = (120, 90, 150, 150)  # image coordinates
    handle, target = (200.5, 160.5), (212.5, 166.5)
    params = {
        "width": 512,
        "height": 384,
        "in_group": in_group,
        "precision": precision,
        "layer": {"mode": mode_name, "width": w, "height": h, "offsets": list(offsets)},
        "strokes": [[handle, target]],
        "selection": selection,
        # The selection's bounds as the region (the fake engine paints whole model pixels, so
        # the marker's position is as fine as the crop's scale) and the re-render put back.
        "args": {"steps": 4, "paste": "render", "region": "selection"},
        "indexed": extra.get("indexed", False),
    }
    if extra.get("keep-frames"):
        params["args"]["keep-frames"] = True
    if extra.get("indexed"):
        pixels = (pixels // 64) * 64 + 20  # few colours: the palette holds them exactly
    engine = {
        "engine_command": ["python3", "{work}/fake_engine.py", "--resolution", "64"],
    }
    report, source, new = _run_with_fake(gimp_mode, params, pixels, engine)
    assert report["status"] == "success", report
    assert report["source_unchanged"] and np.array_equal(source, pixels)
    # directly above the source, in the same parent, same offsets and size
    assert report["source_position"] >= 1
    assert report["siblings"][report["source_position"] - 1] == report["new_name"]
    assert report["new_name"].startswith("Drag-Fu: 1 drag")
    added = 2 if extra.get("keep-frames") else 1
    assert len(report["siblings"]) == len(report["siblings_before"]) + added
    if extra.get("keep-frames"):  # the frames: a hidden layer group above the result
        group = report["siblings"][report["source_position"] - 2]
        assert group in report["groups"] and group in report["hidden"] and report["groups"][group]
    if extra.get("indexed"):
        assert report["base_type"] == "rgb"  # converted in the same undo step
    assert report["new_parent_is_source_parent"]
    assert report["new_offsets"] == list(offsets) and report["new_size"] == [w, h]
    # outside the selection: identical to the source
    x, y, sw, sh = selection
    inside = np.zeros((h, w), bool)
    inside[y - offsets[1] : y - offsets[1] + sh, x - offsets[0] : x - offsets[0] + sw] = True
    assert np.array_equal(new[~inside], source[~inside])
    assert (new[inside] != source[inside]).any()
    if c in (2, 4):
        assert np.array_equal(new[..., -1], source[..., -1])  # the layer's alpha is kept
    if c >= 3:
        cx, cy = magenta_centroid(new, offsets)
        assert abs(cx - target[0]) <= 1.5 and abs(cy - target[1]) <= 1.5
    # The live preview showed (an indexed image's too, in its palette) and went.
    assert "Drag-Fu live preview: 1 updates" in report["console"], report["console"][-2000:]
    assert "Drag-Fu preview" not in report["siblings"]


def test_stop_keeps_the_state_reached_and_the_preview_goes(gimp_mode):
    """Stop (the stop file, made 6 s into the run) mid-drag: a normal result layer whose handle
    lies between start and target (the fake engine moves it linearly and marks where it got),
    and no preview layer left."""
    h, w, offsets = 300, 400, (40, 30)
    pixels = smooth_pattern(h, w, 3)
    handle, target = (150.5, 160.5), (250.5, 160.5)
    params = {
        "width": 512,
        "height": 384,
        "layer": {"mode": "RGB", "width": w, "height": h, "offsets": list(offsets)},
        "strokes": [[handle, target]],
        "selection": (120, 90, 150, 150),
        "args": {"steps": 40, "paste": "render", "region": "selection"},
        "stop_after": 6.0,
    }
    engine = {
        "engine_command": [
            "python3", "{work}/fake_engine.py", "--resolution", "64", "--step-delay", "0.3",
        ],
    }  # fmt: skip
    report, source, new = _run_with_fake(gimp_mode, params, pixels, engine)
    assert report["status"] == "success", report
    assert len(report["siblings"]) == len(report["siblings_before"]) + 1, report["siblings"]
    assert "Drag-Fu preview" not in report["siblings"]
    assert report["siblings"][report["source_position"] - 1] == report["new_name"]
    assert report["source_unchanged"]
    cx, cy = magenta_centroid(new, offsets)
    assert handle[0] + 5 < cx < target[0] - 5 and abs(cy - handle[1]) <= 3, (cx, cy)
    assert "Drag-Fu live preview:" in report["console"]


def _run_with_fake(mode, params, pixels, engine):
    return run_scene(mode, params, pixels, engine, fake_engine=True)


def test_broken_engine_command_leaves_the_image_untouched_with_a_message(gimp_mode):
    pixels = smooth_pattern(120, 160, 3)
    params = {
        "width": 200,
        "height": 160,
        "layer": {"mode": "RGB", "width": 160, "height": 120, "offsets": [10, 20]},
        "strokes": [[(60.5, 60.5), (70.5, 60.5)]],
        "args": {"engine-command": "/nonexistent/dragfu serve"},
    }
    report, source, new = run_scene(gimp_mode, params, pixels)
    assert report["status"] == "execution-error"
    assert "cannot start the engine" in report["message"]
    assert report["siblings"] == report["siblings_before"]
    assert report["source_unchanged"] and not report["image_dirty"]
    assert "Drag-Fu" in report["console"]  # Gimp.message reached GIMP's console


@pytest.mark.slow
def test_real_engine_with_a_tiny_generator_in_gimp3(gimp_mode, tmp_path):
    """`dragfu serve` itself (Debian's torch, inside GIMP's world), on a tiny random generator."""
    import torch

    from dragfu.models import Generator, save_generator

    torch.manual_seed(0)
    G = Generator(
        z_dim=32, c_dim=0, w_dim=32, img_resolution=32, img_channels=3, channel_base=512,
        channel_max=32, mapping_kwargs={"num_layers": 2},
    )  # fmt: skip
    model = save_generator(G, tmp_path / "tiny.safetensors")
    files = [str(model), str(model.with_suffix(".json"))]
    pixels = smooth_pattern(96, 128, 3)
    params = {
        "width": 160, "height": 120,
        "layer": {"mode": "RGB", "width": 128, "height": 96, "offsets": [8, 6]},
        "strokes": [[(60.5, 50.5), (64.5, 51.5)]],
        "selection": [30, 20, 64, 64],
        "args": {"steps": 3, "paste": "render"},  # the generator's picture must go in
    }  # fmt: skip
    engine = {
        "model": "{work}/tiny.safetensors",
        "project_settings": {"w_steps": 3, "wplus_steps": 0, "tune_steps": 0, "w_avg_samples": 64},
    }
    report, source, new = run_scene(gimp_mode, params, pixels, engine, files=files)
    assert report["status"] == "success", report["message"]
    assert report["source_unchanged"] and report["new_offsets"] == [8, 6]
    inside = np.zeros((96, 128), bool)
    inside[20 - 6 : 84 - 6, 30 - 8 : 94 - 8] = True
    assert np.array_equal(new[~inside], source[~inside])
    assert (new[inside] != source[inside]).any()


def toy_model_present():
    return os.path.exists(os.path.join(REPO, "engine", "dragfu", "assets", "toy.safetensors"))


@pytest.mark.slow
def test_toy_face_mouth_corner_drag_in_real_gimp(gimp_mode):
    """The issue's test: the real engine with the toy model, on CPU, inside GIMP 3."""
    if not toy_model_present():
        pytest.skip("the trained toy model (engine/dragfu/assets/toy.safetensors) is not there yet")
    from dragfu.toy import detect, landmarks, render, sample_params

    rng = np.random.default_rng(3)
    for _ in range(50):
        params_face = sample_params(rng)
        face = render(params_face)
        if detect(face).complete:
            break
    size = face.shape[0]  # 128: the model's resolution, so the crop is not resampled
    h, w, offsets = 352, 480, (16, 12)
    photo = np.empty((h, w, 3), np.uint8)
    photo[:] = face[0, 0]  # the face's own background colour around it
    fx, fy = 200, 100  # the face's corner in layer coordinates
    photo[fy : fy + size, fx : fx + size] = face
    points = landmarks(params_face)
    mark = points["mouth_right"]
    # 8 px outward: along the line from the mouth's centre through its right corner
    out = np.subtract(mark, points["mouth"])
    out = out / np.hypot(*out) * 8.0
    handle = (mark[0] + fx + offsets[0], mark[1] + fy + offsets[1])
    target = (float(handle[0] + out[0]), float(handle[1] + out[1]))
    selection = (fx + offsets[0], fy + offsets[1], size, size)
    params = {
        "width": 512,
        "height": 384,
        "layer": {"mode": "RGB", "width": w, "height": h, "offsets": list(offsets)},
        "strokes": [[handle, target]],
        "selection": list(selection),
        "args": {"steps": 200},
    }
    # Shorter projection than the engine's defaults, as in tests/test_plugin_engine.py.
    engine = {"project_settings": {"w_steps": 60, "wplus_steps": 30, "tune_steps": 30}}
    report, source, new = run_scene(gimp_mode, params, photo, engine, timeout=900)
    assert report["status"] == "success", report["message"] or report["console"][-3000:]
    assert report["source_unchanged"] and np.array_equal(source, photo)
    assert report["siblings"][report["source_position"] - 1] == report["new_name"]
    assert report["new_offsets"] == list(offsets)
    inside = np.zeros((h, w), bool)
    inside[fy : fy + size, fx : fx + size] = True
    assert np.array_equal(new[~inside], source[~inside])
    found = detect(np.ascontiguousarray(new[fy : fy + size, fx : fx + size]))
    assert "mouth_right" in found.points, found.missing
    x, y = found.points["mouth_right"]
    got = (x + fx + offsets[0], y + fy + offsets[1])
    assert np.hypot(got[0] - target[0], got[1] - target[1]) <= 2.0, (got, target)


@pytest.mark.slow
def test_grainy_photo_keeps_its_grain_and_the_drag_lands_in_real_gimp(gimp_mode):
    """A 2400x1800 photo with film grain, the face 4x the model's scale and turned: the engine
    finds and aligns the face, and the edit moves the photo's own pixels (the grain survives
    inside the selection, outside it nothing changes), landing within 2 model px."""
    from dragfu.photo import Similarity
    from dragfu.photo.alignment import sample_model_frame
    from dragfu.toy import detect, params_from_unit
    from dragfu.toy.photo import PhotoSpec, build_photo, high_frequency_energy

    spec = PhotoSpec(
        params_from_unit(np.full(30, 0.5)), (2400, 1800), 4.0, 15.0, (1250.0, 900.0), grain=6.0
    )
    photo = build_photo(spec)
    world = Similarity(4.0, 15.0, (1250.0, 900.0), (128, 128))
    corner = photo.to_world([photo.landmarks["mouth_right"]])[0]
    target_world = (corner[0] + 6.0, corner[1])
    handle = tuple(float(v) for v in photo.landmarks["mouth_right"])
    target = tuple(float(v) for v in photo.to_photo([target_world])[0])
    x0, y0, x1, y1 = (int(v) for v in photo.face_box)
    selection = [x0 - 40, y0 - 40, x1 - x0 + 80, y1 - y0 + 80]
    params = {
        "width": 2400, "height": 1800,
        "layer": {"mode": "RGB", "width": 2400, "height": 1800, "offsets": [0, 0]},
        "strokes": [[handle, target]],
        "selection": selection,
        "args": {"steps": 200},
    }  # fmt: skip
    engine = {"project_settings": {"w_steps": 60, "wplus_steps": 30, "tune_steps": 30}}
    report, source, new = run_scene(gimp_mode, params, photo.image, engine, timeout=900)
    assert report["status"] == "success", report["message"] or report["console"][-3000:]
    assert report["source_unchanged"] and np.array_equal(source, photo.image)
    sx, sy, sw, sh = selection
    inside = np.zeros((1800, 2400), bool)
    inside[sy : sy + sh, sx : sx + sw] = True
    assert np.array_equal(new[~inside], source[~inside])
    assert (new[inside] != source[inside]).any()
    box = (sx, sy, sx + sw, sy + sh)
    # The grain inside the selection survives (a re-render keeps about 1 % of it).
    assert high_frequency_energy(new, box) >= 0.9 * high_frequency_energy(source, box)
    found = detect(sample_model_frame(new, world))
    assert "mouth_right" in found.points, found.missing
    assert np.hypot(*np.subtract(found.points["mouth_right"], target_world)) <= 2.0
