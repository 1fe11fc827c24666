"""Drag again on a result layer: the layer's parasite names the drag's latent, the next run
continues from it without projecting (the GIMP 2.10 adapter on the gimpfu shim, the core's
job.run, the real toy engine as a warm engine on the CPU with a short projection)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gimp2_shim"))

import gimp  # noqa: E402
from gimpfu import pdb  # noqa: E402

from dragfu_core import job, source, warm  # noqa: E402
from tests.conftest import REPO, SERVE_COMMAND  # noqa: E402

TOY_ASSET = REPO / "engine" / "dragfu" / "assets" / "toy.safetensors"
ENGINE_ENV = {"PYTHONPATH": str(REPO / "engine")}  # this checkout's engine


def load_adapter():
    spec = importlib.util.spec_from_file_location(
        "dragfu_gimp2_resume", os.path.join(HERE, "..", "plugin", "gimp2", "dragfu_gimp2.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ADAPTER = load_adapter()


@pytest.fixture
def config(tmp_path, monkeypatch):
    base = tempfile.mkdtemp(prefix="dragfu-resume-", dir="/tmp")
    monkeypatch.setenv("DRAGFU_RUNTIME_DIR", os.path.join(base, "run"))
    monkeypatch.setenv("DRAGFU_CACHE_DIR", str(tmp_path / "cache"))
    gimp.reset()
    conf = {
        "engine_command": SERVE_COMMAND,  # --idle-timeout 120: a leftover engine goes by itself
        "engine_env": ENGINE_ENV,
        "warm_engine": True,
        "device": "cpu",
        "model": "toy",
        "steps": 4,
        "project_settings": {"w_steps": 4, "wplus_steps": 0, "tune_steps": 2},
    }
    yield conf
    engine_pid = running_engine(conf)
    if engine_pid:
        os.kill(engine_pid, signal.SIGKILL)
    shutil.rmtree(base, ignore_errors=True)


def running_engine(conf):
    """The warm engine's pid (None: none runs), without starting one."""
    argv, extra = list(conf["engine_command"]), dict(conf["engine_env"], DRAGFU_DEVICE="cpu")
    path, log, _key = warm.endpoint(argv, extra)
    client = warm.try_connect(path, log)
    if client is None:
        return None
    pid = client.hello_info["pid"]
    client.close()
    return pid


def wait_for_stored(key, seconds=60):
    """Until the engine's background write of the drag result `key` is on disk (a SIGKILL before
    it would lose it, and the next run would rightly project again)."""
    folder = os.path.join(os.environ["DRAGFU_CACHE_DIR"], "latents")
    deadline = time.time() + seconds
    while time.time() < deadline:
        if os.path.isdir(folder) and any(
            key in name and not name.startswith(".") for name in os.listdir(folder)
        ):
            return
        time.sleep(0.1)
    raise AssertionError(f"the engine never stored the drag result {key}")


def kill_engine(conf):
    pid = running_engine(conf)
    assert pid
    os.kill(pid, signal.SIGKILL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
            os.kill(pid, 0)
        except (OSError, ChildProcessError):
            return
        time.sleep(0.05)


def toy_image():
    from dragfu.toy import render, sample_params

    face = render(sample_params(np.random.default_rng(3)))
    size = face.shape[0]
    photo = np.empty((size + 40, size + 40, 3), np.uint8)
    photo[:] = face[0, 0]
    photo[20 : 20 + size, 20 : 20 + size] = face
    image = pdb.gimp_image_new(photo.shape[1], photo.shape[0], gimp.RGB)
    layer = pdb.gimp_layer_new(
        image, photo.shape[1], photo.shape[0], gimp.RGB_IMAGE, "photo", 100, 0
    )
    layer.data = bytearray(photo.tobytes())
    pdb.gimp_image_insert_layer(image, layer, None, 0)
    return image, layer


def drag(image, layer, conf, handle, target):
    """One run on `layer` through the adapter's host and the core: the Result, the new layer,
    and how many undo steps the run left."""
    vectors = pdb.gimp_vectors_new(image, "drag")
    pdb.gimp_image_insert_vectors(image, vectors, None, 0)  # the active path from now
    flat = [v for x, y in (handle, target) for v in (x, y, x, y, x, y)]
    pdb.gimp_vectors_stroke_new_from_points(vectors, 0, len(flat), flat, False)
    options = job.Options(region="points", use_selection=False)
    undo = len(image.undo_stack)
    result = job.run(ADAPTER.Gimp2Host(image, layer), options, dict(conf))
    new = pdb.gimp_image_get_active_layer(image)
    assert new is not layer
    return result, new, len(image.undo_stack) - undo


def parasite_of(layer):
    found = layer.parasite_find(source.PARASITE_NAME)
    assert found is not None and found.is_persistent()
    return json.loads(found.data.decode("ascii"))


@pytest.mark.slow
@pytest.mark.skipif(not TOY_ASSET.exists(), reason="the toy model is not there")
def test_a_second_drag_on_the_result_layer_does_not_project(config):
    image, photo = toy_image()
    first, layer1, _ = drag(image, photo, config, (70.5, 90.5), (74.5, 90.5))
    assert first.resumed is False
    assert photo.parasite_find(source.PARASITE_NAME) is None  # the source is never touched
    mark1 = parasite_of(layer1)
    assert mark1["model"] == "toy" and len(mark1["latent_key"]) == 32
    assert mark1["crop"] == list(first.crop.as_tuple())

    # Same GIMP session, warm engine: the latent is still in the engine's memory.
    second, layer2, undo_steps = drag(image, layer1, config, (74.5, 90.5), (78.5, 88.5))
    assert second.resumed is True
    assert second.crop.as_tuple() == first.crop.as_tuple()  # the earlier drag's crop again
    mark2 = parasite_of(layer2)
    assert mark2["latent_key"] != mark1["latent_key"]
    assert undo_steps == 1  # the layer and its parasite: one undo step
    assert not [n for n in second.notes if "projected again" in n], second.notes

    # A new GIMP session (the engine gone): the latent comes from the engine's disk cache.
    wait_for_stored(mark2["latent_key"])  # the engine writes it in the background
    kill_engine(config)
    third, layer3, _ = drag(image, layer2, config, (78.5, 88.5), (80.5, 84.5))
    assert third.resumed is True, third.notes

    # The layer painted on since: its pixels are not the latent's any more, so it is projected.
    x, y, w, h = parasite_of(layer3)["crop"]
    data = (
        np.frombuffer(bytes(layer3.data), np.uint8).reshape(layer3.height, layer3.width, 3).copy()
    )
    data[y + h // 2 - 3 : y + h // 2 + 3, x + w // 2 - 3 : x + w // 2 + 3] = [0, 255, 0]
    layer3.data = bytearray(data.tobytes())
    fourth, _layer4, _ = drag(image, layer3, config, (80.5, 84.5), (82.5, 84.5))
    assert fourth.resumed is False
    assert [n for n in fourth.notes if "changed since" in n], fourth.notes


def test_the_parasite_round_trips_and_rejects_what_is_not_ours():
    from dragfu_core.geometry import Rect

    data = source.encode("toy", "ab" * 16, Rect(3, 4, 50, 60), {"scale": 1.0})
    fields = source.decode(data)
    assert fields["crop"] == [3, 4, 50, 60] and fields["latent_key"] == "ab" * 16
    assert source.decode(list(bytearray(data)))["model"] == "toy"  # GIMP 3 hands back ints
    assert source.decode(b"not json") is None
    assert source.decode(b'{"v": 2, "latent_key": "x", "crop": [0, 0, 1, 1]}') is None
    assert source.decode(b'{"v": 1, "latent_key": "x", "crop": [0, 0, 1]}') is None
    assert source.decode(None) is None

    class Info:
        width, height = 100, 100

    class Drag:
        def __init__(self, *points):
            self._points = points

        def points(self):
            return self._points

    inside = [Drag((10.0, 10.0), (20.0, 20.0))]
    crop, key, note = source.resume(fields, "toy", inside, Info)
    assert crop.as_tuple() == (3, 4, 50, 60) and key == "ab" * 16 and note is None
    assert source.resume(fields, "ffhq-512", inside, Info)[0] is None  # another model
    outside = [Drag((10.0, 10.0), (90.0, 90.0))]
    crop, key, note = source.resume(fields, "toy", outside, Info)
    assert crop is None and key is None and "outside" in note
    assert source.resume(None, "toy", inside, Info) == (None, None, None)
