"""Projection cache (key, hit, LRU eviction, torn entries) and `dragfu project` on the command line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import dragfu.project.cache as cache_module
from dragfu.cli.main import main
from dragfu.models import save_generator
from dragfu.project import (
    ProjectionCache,
    ProjectSettings,
    default_cache_dir,
    load_projection,
    model_fingerprint,
)
from dragfu.project.projector import to_uint8
from dragfu.project.settings import WPLUS_STEPS_WITHOUT_TUNING
from tests.conftest import make_tiny_generator

SETTINGS = ProjectSettings(w_steps=6, wplus_steps=3, tune_steps=3, w_avg_samples=200)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()  # tiny models: one thread is faster (see test_project.py)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("DRAGFU_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DRAGFU_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.delenv("DRAGFU_LPIPS", raising=False)
    monkeypatch.delenv("DRAGFU_CACHE_MAX_MB", raising=False)


@pytest.fixture(scope="module")
def G():
    return make_tiny_generator()


def _image(G, seed=3):
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return to_uint8(G.synthesis(G.mapping(z, None), noise_mode="const"))


def test_default_cache_dir_follows_the_environment(tmp_path):
    assert default_cache_dir() == tmp_path / "cache"
    assert ProjectionCache().directory == tmp_path / "cache" / "projections"


def test_second_projection_of_the_same_layer_comes_from_the_cache(G, monkeypatch):
    cache = ProjectionCache()
    image = _image(G)
    first = cache.get_or_project(G, image, settings=SETTINGS)
    assert not first.cached and cache.misses == 1 and len(cache.entries()) == 1

    def must_not_project(*args, **kwargs):
        raise AssertionError("projected again instead of using the cache")

    monkeypatch.setattr(cache_module, "project", must_not_project)
    second = ProjectionCache().get_or_project(G, image.copy(), settings=SETTINGS)
    assert second.cached
    torch.testing.assert_close(second.ws, first.ws)
    np.testing.assert_array_equal(second.reconstruction, first.reconstruction)
    # the tuned generator comes back too: dragging a cached projection uses it
    with torch.no_grad():
        drawn = to_uint8(second.generator.synthesis(second.ws, noise_mode="const"))
    np.testing.assert_array_equal(drawn, first.reconstruction)
    assert second.generator is not G


def test_key_depends_on_model_pixels_size_mask_and_settings(G):
    cache = ProjectionCache()
    image = _image(G)
    key = cache.key(G, image, settings=SETTINGS)
    assert key == cache.key(G, image.copy(), settings=SETTINGS)
    changed = image.copy()
    changed[0, 0, 0] ^= 1
    mask = np.ones(image.shape[:2], np.float32)
    others = {
        cache.key(G, changed, settings=SETTINGS),
        cache.key(G, image[:, :-1], settings=SETTINGS),
        cache.key(G, image, settings=SETTINGS.replace(tune_steps=4)),
        cache.key(G, image, weight_mask=mask, settings=SETTINGS),
        cache.key(make_tiny_generator(seed=5), image, settings=SETTINGS),
        cache.key(G, np.dstack([image, np.full(image.shape[:2], 9, np.uint8)]), settings=SETTINGS),
    }
    assert key not in others and len(others) == 6


def test_least_recently_used_entries_are_evicted_over_the_cap(G):
    cache = ProjectionCache()
    images = [_image(G, seed) for seed in range(4)]
    paths = []
    for index, image in enumerate(images[:3]):
        cache.get_or_project(G, image, settings=SETTINGS)
        path = cache.path_for(cache.key(G, image, settings=SETTINGS))
        os.utime(path, (1000 + index, 1000 + index))  # deterministic ages: 0 oldest
        paths.append(path)
    entry_size = max(p.stat().st_size for p in paths)
    cache.get(cache.key(G, images[0], settings=SETTINGS), G)  # a hit makes entry 0 the newest
    assert paths[0].stat().st_mtime > paths[2].stat().st_mtime
    cache.max_bytes = int(entry_size * 2.5)  # room for two
    cache.get_or_project(G, images[3], settings=SETTINGS)
    remaining = set(cache.entries())
    assert paths[0] in remaining  # recently used: kept
    assert paths[1] not in remaining and paths[2] not in remaining  # least recently used: gone
    assert len(remaining) == 2 and cache.size_bytes() <= cache.max_bytes


def test_a_torn_entry_is_recomputed(G):
    cache = ProjectionCache()
    image = _image(G)
    cache.get_or_project(G, image, settings=SETTINGS)
    path = cache.path_for(cache.key(G, image, settings=SETTINGS))
    path.write_bytes(path.read_bytes()[:100])
    again = cache.get_or_project(G, image, settings=SETTINGS)
    assert not again.cached and cache.misses == 2
    assert load_projection(path, G).ws.shape == again.ws.shape  # rewritten whole


def test_an_unwritable_cache_does_not_stop_the_projection(G, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    cache = ProjectionCache(blocker)
    result = cache.get_or_project(G, _image(G), settings=SETTINGS)
    assert result.ws.shape == (1, G.num_ws, G.w_dim) and cache.entries() == []


# ---------------------------------------------------------------------------------------------------
# dragfu project


@pytest.fixture(scope="module")
def model_file(G, tmp_path_factory):
    return save_generator(G, tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _cli(*args: str) -> list[str]:
    return ["project", *args, "--steps", "6", "--wplus-steps", "3", "--tune-steps", "3"]


def test_cli_projects_an_image_and_writes_latent_and_preview(G, model_file, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(_image(G)).resize((45, 45)).convert("P").save(photo)  # palette, other size
    out, preview = tmp_path / "p.safetensors", tmp_path / "recon.png"
    code = main(
        _cli(
            str(photo),
            "--model",
            str(model_file),
            "--out",
            str(out),
            "--preview",
            str(preview),
            "--json",
        )
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert {"psnr", "ssim", "seconds", "stages"} <= set(report)
    assert set(report["stages"]) == {"w", "w+", "tune"}
    assert all({"psnr", "ssim", "seconds"} <= set(stage) for stage in report["stages"].values())
    assert report["perceptual"] == "fallback" and report["cached"] is False
    loaded = load_projection(out, G)
    assert loaded.psnr == pytest.approx(report["psnr"], abs=1e-3)
    assert np.asarray(Image.open(preview)).shape == (32, 32, 3)
    # the same again: from the cache
    assert main(_cli(str(photo), "--model", str(model_file), "--out", str(out), "--json")) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True


def test_cli_no_tune_keeps_the_model_weights(G, model_file, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(_image(G)).save(photo)
    out = tmp_path / "p.safetensors"
    assert (
        main(
            _cli(
                str(photo),
                "--model",
                str(model_file),
                "--out",
                str(out),
                "--no-tune",
                "--no-cache",
                "--json",
            )
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert set(report["stages"]) == {"w", "w+"}
    assert load_projection(out, G).tuned_delta == {}


@pytest.mark.parametrize(
    ("flags", "stages"),
    [((), {"w": 4, "tune": 2}), (("--no-tune",), {"w": 4, "w+": WPLUS_STEPS_WITHOUT_TUNING})],
)
def test_cli_pivot_is_w_with_tuning_and_w_plus_without(model_file, tmp_path, capsys, flags, stages):
    # PTI's recipe by default (tuning around the W result); without tuning the W+ refinement runs
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(photo)
    argv = ["project", str(photo), "--model", str(model_file), "--out", str(tmp_path / "p.st")]
    argv += ["--steps", "4", "--tune-steps", "2", "--no-cache", "--json", *flags]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert {name: stage["steps"] for name, stage in report["stages"].items()} == stages


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: p.write_bytes(b""), "empty"),
        (lambda p: Image.new("RGB", (1, 1)).save(p), "too small"),
        (lambda p: p.write_text("not an image"), "cannot read"),
    ],
    ids=["empty", "1x1", "garbage"],
)
def test_cli_bad_images_are_one_line_errors(model_file, tmp_path, capsys, make, fragment):
    photo = tmp_path / "bad.png"
    make(photo)
    code = main(
        _cli(str(photo), "--model", str(model_file), "--out", str(tmp_path / "o.safetensors"))
    )
    err = capsys.readouterr().err
    assert code == 2 and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_refuses_an_output_in_a_missing_folder(G, model_file, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(_image(G)).save(photo)
    code = main(
        _cli(
            str(photo), "--model", str(model_file), "--out", str(tmp_path / "no" / "p.safetensors")
        )
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_fingerprint_ignores_how_the_model_was_loaded(G, model_file):
    from dragfu.models import load_generator

    assert model_fingerprint(load_generator(model_file)) == model_fingerprint(G)


def test_benchmark_runs_end_to_end_on_a_tiny_model(model_file):
    import argparse

    from bench import project as bench

    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(
        ["--model", str(model_file), "--images", "2", "--w-steps", "3", "--wplus-steps", "2",
         "--tune-steps", "2", "--no-drag"]
    )  # fmt: skip
    result = bench.run(args)
    configurations = ("W", "W + W+", "W + W+ + tuning")
    assert set(result["quality"]) == {*configurations, "W + W+ (--no-tune)"}
    for row in result["quality"].values():
        assert row["psnr"]["n"] == 2 and row["seconds"]["mean"] > 0
    assert len(result["per_image"]) == 2 and "targets" in result


def test_benchmark_seconds_of_a_configuration_are_its_stages_and_the_ones_before(monkeypatch):
    """One projection timed once: each shorter configuration's seconds are the total minus the
    later stages; a cache hit's seconds are not a projection's (NaN); every row is per stage."""
    from types import SimpleNamespace

    from bench import project as bench

    def stage(psnr, seconds):
        return SimpleNamespace(psnr=psnr, ssim=psnr / 100, seconds=seconds)

    def fake_projection(seconds, cached=False):
        stages = {"w": stage(20.0, 1.0), "w+": stage(25.0, 2.0), "tune": stage(30.0, 3.0)}
        return SimpleNamespace(stages=stages, seconds=seconds, cached=cached, quality=dict)

    made = iter([fake_projection(6.5), fake_projection(9.5)])
    monkeypatch.setattr(bench, "project", lambda G, photo, settings: next(made))
    photos = [(np.zeros((4, 4, 3), np.uint8), None)] * 2
    table, _, _ = bench.quality(None, photos, ProjectSettings(wplus_steps=5), no_tune_row=False)
    # 6.5 s and 9.5 s in all: W is the total less W+ (2 s) and tuning (3 s), W + W+ less tuning.
    assert table["W"]["seconds"]["mean"] == pytest.approx((1.5 + 4.5) / 2)
    assert table["W + W+"]["seconds"]["mean"] == pytest.approx((3.5 + 6.5) / 2)
    assert table["W + W+ + tuning"]["seconds"]["mean"] == pytest.approx(8.0)
    assert table["W"]["psnr"]["mean"] == 20.0 and table["W + W+ + tuning"]["psnr"]["mean"] == 30.0

    class HitCache:
        def get_or_project(self, G, photo, settings):
            return fake_projection(0.01, cached=True)

    table, _, _ = bench.quality(
        None, photos[:1], ProjectSettings(), cache=HitCache(), no_tune_row=False
    )
    # a cache hit: no seconds counted (summarise keeps finite values only), PSNR still reported
    assert table["W"]["seconds"] == {"n": 0} and table["W + tuning"]["psnr"]["n"] == 1
    assert "cpu_seconds" not in table["W + tuning"]
