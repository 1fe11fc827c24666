"""The GIMP 2.10 plug-in (on the gimpfu shim) with the real engine process, `dragfu serve`.

A tiny random generator checks the whole real path quickly (projection, drag, sizes, compositing);
the toy model checks that the drag really moves the mouth corner to its target.
"""

import importlib.util
import json
import math
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gimp2_shim"))

import gimp  # noqa: E402
import gimpfu  # noqa: E402
from gimpfu import pdb  # noqa: E402

from tests.conftest import SERVE_COMMAND  # noqa: E402

ENGINE = SERVE_COMMAND
# Shorter than the engine's defaults (150 + 100 + 100 steps): the test must stay near a minute on
# a 2-core CPU, and the toy world projects well enough with this for a 2 px check.
TOY_PROJECTION = {"w_steps": 60, "wplus_steps": 30, "tune_steps": 30}
TOY_ASSET = os.path.join(HERE, "..", "engine", "dragfu", "assets", "toy.safetensors")


def load_plugin():
    spec = importlib.util.spec_from_file_location(
        "dragfu_gimp2_engine", os.path.join(HERE, "..", "plugin", "gimp2", "dragfu_gimp2.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.PROCEDURE


PROC = load_plugin()


def write_config(tmp_path, monkeypatch, **extra):
    config = {"engine_command": ENGINE, "device": "cpu"}
    config.update(extra)
    path = tmp_path / "dragfu.json"
    path.write_text(json.dumps(config))
    monkeypatch.setenv("DRAGFU_CONFIG", str(path))
    monkeypatch.setenv("DRAGFU_CACHE_DIR", str(tmp_path / "cache"))
    gimp.reset()


def configure_quick_run(tmp_path, monkeypatch, model) -> None:
    """The plug-in's config: this model, 3 drag steps, a 3-step W projection (a smoke run)."""
    write_config(
        tmp_path,
        monkeypatch,
        model=str(model),
        steps=3,
        project_settings={"w_steps": 3, "wplus_steps": 0, "tune_steps": 0, "w_avg_samples": 64},
    )


def image_with(photo, offsets, selection, stroke):
    h, w = photo.shape[:2]
    image = pdb.gimp_image_new(w + offsets[0] + 20, h + offsets[1] + 20, gimp.RGB)
    layer = pdb.gimp_layer_new(image, w, h, gimp.RGB_IMAGE, "photo", 100, 0)
    layer.data = bytearray(np.ascontiguousarray(photo, np.uint8).tobytes())
    pdb.gimp_layer_set_offsets(layer, *offsets)
    pdb.gimp_image_insert_layer(image, layer, None, 0)
    vectors = pdb.gimp_vectors_new(image, "drag")
    pdb.gimp_image_insert_vectors(image, vectors, None, 0)
    flat = [v for x, y in stroke for v in (x, y, x, y, x, y)]
    pdb.gimp_vectors_stroke_new_from_points(vectors, 0, len(flat), flat, False)
    if selection:
        pdb.gimp_image_select_rectangle(image, gimpfu.CHANNEL_OP_REPLACE, *selection)
    return image, layer


def layer_array(layer):
    return np.frombuffer(bytes(layer.data), np.uint8).reshape(layer.height, layer.width, layer.bpp)


@pytest.mark.slow
def test_real_engine_with_a_tiny_random_generator(tmp_path, monkeypatch):
    import torch

    from dragfu.models import Generator, save_generator

    torch.manual_seed(0)
    G = Generator(
        z_dim=32,
        c_dim=0,
        w_dim=32,
        img_resolution=32,
        img_channels=3,
        channel_base=512,
        channel_max=32,
        mapping_kwargs={"num_layers": 2},
    )
    model = save_generator(G, tmp_path / "tiny.safetensors")
    configure_quick_run(tmp_path, monkeypatch, model)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, size=(70, 90, 3)).astype(np.uint8)
    image, layer = image_with(photo, (5, 7), (20, 20, 48, 48), [(40.5, 40.5), (44.5, 41.5)])
    before = bytes(layer.data)

    gimpfu.call(PROC, image, layer, paste=1)  # the model's re-render: it must show

    assert not [m for m in gimp.MESSAGES if "error" in m.lower()], gimp.MESSAGES
    new = image.layers[0]
    assert new is not layer and image.layers[1] is layer and new.name.startswith("Drag-Fu: 1 drag")
    assert new.offsets == layer.offsets and bytes(layer.data) == before
    out, src = layer_array(new), layer_array(layer)
    inside = np.zeros(src.shape[:2], bool)
    inside[20 - 7 : 68 - 7, 20 - 5 : 68 - 5] = True
    assert np.array_equal(out[~inside], src[~inside])
    assert (out[inside] != src[inside]).any()  # the generator's picture went in


@pytest.mark.slow
def test_real_engine_with_a_tiny_rectangular_generator(tmp_path, monkeypatch):
    """StyleGAN-Human's shape (`square=False`: 32 high, 16 wide): the crop takes the model's
    shape, the engine projects and drags it, and the result lands inside the selection."""
    from dragfu.models import save_generator
    from tests.conftest import make_tiny_generator

    model = save_generator(
        make_tiny_generator(square=False, seed=5), tmp_path / "human.safetensors"
    )
    configure_quick_run(tmp_path, monkeypatch, model)
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, size=(150, 90, 3)).astype(np.uint8)  # 90 wide, 150 high
    # A drag whose y (in the 64 x 128 crop) lies beyond the crop's width.
    image, layer = image_with(photo, (5, 7), (20, 40, 40, 60), [(40.5, 90.5), (42.5, 84.5)])
    before = bytes(layer.data)

    gimpfu.call(PROC, image, layer, paste=1)  # the model's re-render: it must show

    assert not [m for m in gimp.MESSAGES if "error" in m.lower()], gimp.MESSAGES
    new = image.layers[0]
    assert new is not layer and new.name.startswith("Drag-Fu: 1 drag")
    assert bytes(layer.data) == before
    out, src = layer_array(new), layer_array(layer)
    inside = np.zeros(src.shape[:2], bool)
    inside[40 - 7 : 100 - 7, 20 - 5 : 60 - 5] = True
    assert np.array_equal(out[~inside], src[~inside])
    assert (out[inside] != src[inside]).any()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(TOY_ASSET), reason="the trained toy model is not there yet")
def test_toy_model_moves_the_mouth_corner_to_the_target(tmp_path, monkeypatch):
    from dragfu.toy import detect, landmarks, render, sample_params

    write_config(tmp_path, monkeypatch, model="toy", steps=200, project_settings=TOY_PROJECTION)
    rng = np.random.default_rng(3)
    for _ in range(50):
        params = sample_params(rng)
        face = render(params)
        if detect(face).complete:
            break
    size = face.shape[0]
    photo = np.empty((size + 60, size + 80, 3), np.uint8)
    photo[:] = face[0, 0]
    fx, fy, offsets = 40, 30, (12, 9)
    photo[fy : fy + size, fx : fx + size] = face
    points = landmarks(params)
    corner = points["mouth_right"]
    # 8 px outward: along the line from the mouth's centre through its right corner
    out = np.subtract(corner, points["mouth"])
    out = out / np.hypot(*out) * 8.0
    handle = (corner[0] + fx + offsets[0], corner[1] + fy + offsets[1])
    target = (handle[0] + out[0], handle[1] + out[1])
    image, layer = image_with(
        photo, offsets, (fx + offsets[0], fy + offsets[1], size, size), [handle, target]
    )

    gimpfu.call(PROC, image, layer)

    assert not [m for m in gimp.MESSAGES if "error" in m.lower()], gimp.MESSAGES
    new = layer_array(image.layers[0])
    found = detect(np.ascontiguousarray(new[fy : fy + size, fx : fx + size]))
    assert "mouth_right" in found.points, found.missing
    x, y = found.points["mouth_right"]
    got = (x + fx + offsets[0], y + fy + offsets[1])
    assert math.hypot(got[0] - target[0], got[1] - target[1]) <= 2.0, (got, target)
