"""dragfu.project: W / W+ projection, pivotal tuning, losses, save/load (tiny random generators)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dragfu.errors import BadInputError, CancelledError
from dragfu.project import (
    ProjectSettings,
    apply_delta,
    load_projection,
    model_fingerprint,
    perceptual_kind,
    project,
    save_projection,
)
from dragfu.project.losses import (
    FallbackPerceptualLoss,
    LpipsScriptLoss,
    load_lpips_script,
    make_perceptual_loss,
    noise_autocorrelation,
    psnr,
    ssim,
)
from dragfu.project.projector import prepare_target, to_uint8
from tests.conftest import make_tiny_generator

# NVIDIA's vgg16.pt is TorchScript; making a small one needs torch.jit.script, deprecated in new torch.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning",
    "ignore:`torch.jit.load` is deprecated:DeprecationWarning",
)

FAST = ProjectSettings(w_steps=40, wplus_steps=20, tune_steps=30, w_avg_samples=500)


@pytest.fixture(autouse=True)
def _no_lpips_weights(monkeypatch, tmp_path):
    # Every test sees a machine without LPIPS weights unless it provides them itself.
    monkeypatch.delenv("DRAGFU_LPIPS", raising=False)
    monkeypatch.setenv("DRAGFU_MODELS_DIR", str(tmp_path / "models"))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # These models are tiny: one thread is faster, and far faster when other jobs share the CPU
    # (two busy-waiting threads on a loaded 2-core machine run 10x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def G():
    return make_tiny_generator()


def _render(G, seed: int) -> np.ndarray:
    """An image the generator can draw: the stand-in for a photo in these small tests."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    with torch.no_grad():
        return to_uint8(G.synthesis(G.mapping(z, None), noise_mode="const"))


@pytest.fixture(scope="module")
def target(G):
    return _render(G, 7)


@pytest.fixture(scope="module")
def projection(G, target):
    return project(G, target, settings=FAST)


# ---------------------------------------------------------------------------------------------------
# Metrics and losses


def test_psnr_and_ssim_of_known_images():
    a = np.full((32, 32, 3), 100, np.uint8)
    assert psnr(a, a) == float("inf")
    assert ssim(a, a) == pytest.approx(1.0)
    b = a + 10  # mse 100 -> 10 log10(255^2 / 100)
    assert psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 100))
    noisy = np.clip(a + np.random.default_rng(0).normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    assert ssim(a, noisy) < 0.5 < ssim(a, b)


def test_weighted_psnr_ignores_zero_weight_pixels():
    a = np.full((16, 16, 3), 50, np.uint8)
    b = a.copy()
    b[:, 8:] = 250
    weight = np.zeros((16, 16), np.float32)
    weight[:, :8] = 1
    assert psnr(a, b, weight) == float("inf")
    assert psnr(a, b) < 10


def test_fallback_loss_is_zero_at_the_target_and_grows_with_error():
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    loss = FallbackPerceptualLoss(target)
    assert float(loss(target)) == pytest.approx(0.0, abs=1e-6)
    small = float(loss(target + 0.05 * torch.randn_like(target)))
    large = float(loss(target + 0.5 * torch.randn_like(target)))
    assert 0 < small < large
    image = torch.zeros_like(target, requires_grad=True)
    loss(image).backward()
    assert image.grad is not None and float(image.grad.abs().sum()) > 0


def test_fallback_loss_weight_zero_on_a_half_changes_the_value():
    target = torch.rand(1, 3, 32, 32) * 2 - 1
    changed = target.clone()
    changed[..., 16:] = -target[..., 16:]
    weight = torch.zeros(1, 1, 32, 32)
    weight[..., :16] = 1
    full = float(FallbackPerceptualLoss(target)(changed))
    masked = float(FallbackPerceptualLoss(target, weight)(changed))
    assert masked < 0.5 * full


def test_noise_regulariser_penalises_structure_not_white_noise():
    torch.manual_seed(0)
    white = torch.randn(32, 32)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(1, 1, 36, 36), 5, 1)[0, 0]
    smooth = (smooth - smooth.mean()) / smooth.std()
    assert float(noise_autocorrelation([smooth])) > 20 * float(noise_autocorrelation([white]))


def test_without_lpips_weights_auto_uses_the_fallback_and_lpips_is_an_error():
    assert perceptual_kind("auto") == "fallback"
    assert perceptual_kind("fallback") == "fallback"
    with pytest.raises(BadInputError, match="LPIPS weights not found"):
        perceptual_kind("lpips")


class _TinyLpips(torch.nn.Module):
    """Stands in for NVIDIA's vgg16.pt: same call signature, normalised conv features."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x: torch.Tensor, resize_images: bool = True, return_lpips: bool = False):
        features = torch.relu(self.conv(x / 127.5 - 1)).flatten(1)
        return features / features.square().sum(dim=1, keepdim=True).sqrt().clamp_min(1e-8)


@pytest.fixture
def lpips_file(tmp_path, monkeypatch):
    path = tmp_path / "vgg16.pt"
    torch.jit.script(_TinyLpips()).save(str(path))
    monkeypatch.setenv("DRAGFU_LPIPS", str(path))
    return path


def test_lpips_weight_file_is_found_and_used(lpips_file, G, target):
    assert perceptual_kind("auto") == "lpips-script"
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    goal = torch.rand(1, 3, 32, 32) * 2 - 1
    loss, kind = make_perceptual_loss("auto", goal)
    assert kind == "lpips-script" and isinstance(loss, LpipsScriptLoss)
    net = load_lpips_script(lpips_file, torch.device("cpu"))
    expected = (net((image + 1) * 127.5) - net((goal + 1) * 127.5)).square().sum()
    assert float(loss(image).detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    result = project(
        G,
        target,
        settings=ProjectSettings(w_steps=5, wplus_steps=0, tune_steps=3, w_avg_samples=100),
    )
    assert result.perceptual == "lpips-script"


def test_lpips_models_folder_is_searched(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir(exist_ok=True)
    torch.jit.script(_TinyLpips()).save(str(folder / "vgg16.pt"))
    assert perceptual_kind("auto") == "lpips-script"


def test_bad_lpips_files_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("DRAGFU_LPIPS", str(tmp_path / "missing.pt"))
    with pytest.raises(BadInputError, match="does not exist"):
        perceptual_kind("auto")
    garbage = tmp_path / "garbage.pt"
    garbage.write_text("<html>not a model</html>")
    monkeypatch.setenv("DRAGFU_LPIPS", str(garbage))
    with pytest.raises(BadInputError, match="cannot load LPIPS") as error:
        make_perceptual_loss("auto", torch.zeros(1, 3, 8, 8))
    assert "\n" not in str(error.value)


# ---------------------------------------------------------------------------------------------------
# Projection


def test_each_stage_improves_the_reconstruction(G, target, projection):
    w_avg_image = _render_ws(G, G.mapping(torch.zeros(1, G.z_dim), None))
    start_psnr = psnr(w_avg_image, target)
    stages = projection.stages
    assert list(stages) == ["w", "w+", "tune"]
    assert stages["w"].psnr > start_psnr + 3
    assert stages["w+"].psnr > stages["w"].psnr
    assert stages["tune"].psnr > stages["w+"].psnr + 1
    assert projection.psnr == pytest.approx(stages["tune"].psnr, abs=0.05)
    assert projection.ssim > stages["w"].ssim
    assert projection.reconstruction.shape == (32, 32, 3)
    assert projection.reconstruction.dtype == np.uint8
    assert projection.psnr == pytest.approx(psnr(projection.reconstruction, target))
    assert projection.ws.shape == (1, G.num_ws, G.w_dim)
    assert torch.isfinite(projection.ws).all()


def _render_ws(G, ws):
    with torch.no_grad():
        return to_uint8(G.synthesis(ws, noise_mode="const"))


def test_the_tuned_generator_draws_the_reconstruction_and_G_is_untouched(G, target):
    before = model_fingerprint(G)
    result = project(G, target, settings=FAST)
    assert model_fingerprint(G) == before
    assert result.generator is not G
    np.testing.assert_array_equal(_render_ws(result.generator, result.ws), result.reconstruction)
    # The compact difference reproduces the tuned generator exactly.
    assert result.tuned_delta and all(d.dtype == torch.float16 for d in result.tuned_delta.values())
    rebuilt = apply_delta(G, result.tuned_delta)
    np.testing.assert_array_equal(_render_ws(rebuilt, result.ws), result.reconstruction)
    # Only changed tensors are stored: the mapping network is never tuned.
    assert not any(name.startswith("mapping.") for name in result.tuned_delta)
    assert result.model_sha256 == before


def test_without_tuning_the_generator_is_G_itself(G, target):
    settings = FAST.replace(tune_steps=0)
    result = project(G, target, settings=settings)
    assert result.generator is G and result.tuned_delta == {}
    assert list(result.stages) == ["w", "w+"]
    np.testing.assert_array_equal(_render_ws(G, result.ws), result.reconstruction)


def test_kept_noise_maps_are_part_of_the_delta(G, target):
    result = project(G, target, settings=FAST.replace(tune_steps=0, keep_noise=True, wplus_steps=5))
    assert result.tuned_delta and all(k.endswith("noise_const") for k in result.tuned_delta)
    np.testing.assert_array_equal(_render_ws(result.generator, result.ws), result.reconstruction)


def test_projection_is_deterministic(G, target):
    settings = ProjectSettings(w_steps=10, wplus_steps=5, tune_steps=5, w_avg_samples=200)
    a = project(G, target, settings=settings)
    b = project(G, target, settings=settings)
    torch.testing.assert_close(a.ws, b.ws)
    np.testing.assert_array_equal(a.reconstruction, b.reconstruction)


def test_progress_reports_every_step_of_every_stage(G, target):
    seen = []
    settings = ProjectSettings(w_steps=4, wplus_steps=3, tune_steps=2, w_avg_samples=100)
    project(G, target, settings=settings, callback=seen.append)
    assert [(p.stage, p.step, p.total) for p in seen] == (
        [("w", i, 4) for i in range(1, 5)]
        + [("w+", i, 3) for i in range(1, 4)]
        + [("tune", 1, 2), ("tune", 2, 2)]
    )
    assert all(np.isfinite(p.loss) for p in seen)


def test_cancel_stops_within_a_step_and_leaves_G_alone(G, target):
    cancel = threading.Event()
    seen = []

    def callback(progress):
        seen.append(progress)
        if progress.stage == "tune" and progress.step == 2:
            cancel.set()

    before = model_fingerprint(G)
    settings = ProjectSettings(w_steps=3, wplus_steps=2, tune_steps=50, w_avg_samples=100)
    with pytest.raises(CancelledError):
        project(G, target, settings=settings, callback=callback, cancel=cancel)
    assert seen[-1].stage == "tune" and seen[-1].step == 2
    assert model_fingerprint(G) == before


def test_any_size_and_mode_is_resampled_to_the_model_resolution(G, target):
    from dragfu.imageio import resize_image

    big = resize_image(target, (90, 70))  # not square, not the model size
    grey = target.mean(axis=2).astype(np.uint8)
    settings = ProjectSettings(w_steps=3, wplus_steps=0, tune_steps=0, w_avg_samples=100)
    for image in (big, grey, np.dstack([target, np.full(target.shape[:2], 255, np.uint8)])):
        result = project(G, image, settings=settings)
        assert result.reconstruction.shape == (32, 32, 3)
        assert result.target.shape == (32, 32, 3)


def test_alpha_and_mask_become_the_weight(G, target):
    alpha = np.full(target.shape[:2], 255, np.uint8)
    alpha[:, :16] = 0
    rgba = np.dstack([target, alpha])
    mask = np.ones(target.shape[:2], np.float32)
    mask[:16] = 0.5
    _, weight = prepare_target(G, rgba, mask, use_alpha=True)
    assert weight.shape == (32, 32)
    assert (weight[:, :16] == 0).all() and (weight[16:, 16:] == 1).all()
    assert weight[0, 20] == pytest.approx(0.5)
    _, weight = prepare_target(G, rgba, None, use_alpha=False)
    assert weight is None


def test_a_weight_that_is_zero_everywhere_is_an_error(G, target):
    with pytest.raises(BadInputError, match="zero everywhere"):
        project(G, target, weight_mask=np.zeros(target.shape[:2], np.float32), settings=FAST)
    with pytest.raises(BadInputError, match="weight mask is"):
        project(G, target, weight_mask=np.ones((5, 5), np.float32), settings=FAST)


def test_masked_out_pixels_have_no_influence():
    # A weight of 0 removes a pixel from every term; only pixels within reach of a kept pixel's
    # windows (SSIM box, pyramid pooling: < 32 px at 64 px) can still matter. So spoiling the far
    # side of a masked-out region must leave the projection bit-for-bit unchanged.
    G64 = make_tiny_generator(resolution=64)
    clean = _render(G64, 5)
    spoiled = clean.copy()
    spoiled[:, 48:] = np.random.default_rng(1).integers(0, 256, spoiled[:, 48:].shape)
    mask = np.zeros(clean.shape[:2], np.float32)
    mask[:, :16] = 1
    settings = ProjectSettings(w_steps=8, wplus_steps=4, tune_steps=4, w_avg_samples=200)
    a = project(G64, clean, weight_mask=mask, settings=settings)
    b = project(G64, spoiled, weight_mask=mask, settings=settings)
    torch.testing.assert_close(a.ws, b.ws, rtol=0, atol=0)
    np.testing.assert_array_equal(a.reconstruction, b.reconstruction)
    assert a.psnr == b.psnr  # the reported quality is over the kept pixels too
    c = project(G64, spoiled, settings=settings)  # without the mask the spoiled pixels count
    assert not torch.equal(a.ws, c.ws)


@pytest.mark.parametrize(
    "changes",
    [
        {"w_steps": -1},
        {"tune_lr": 0.0},
        {"perceptual": "vgg"},
        {"delta_dtype": "int8"},
        {"w_avg_samples": 1},
        {"locality_weight": "30"},
        {"tune_lr": True},
    ],
)
def test_bad_settings_are_rejected(changes):
    with pytest.raises(BadInputError):
        ProjectSettings(**changes)


def test_settings_round_trip_through_json():
    settings = ProjectSettings(w_steps=7, perceptual="fallback")
    import json

    assert ProjectSettings.from_dict(json.loads(settings.to_json())) == settings
    with pytest.raises(BadInputError, match="unknown projection settings"):
        ProjectSettings.from_dict({"w_step": 3})


def test_whole_numbers_for_float_settings_give_the_same_cache_key(G):
    # 30 (as JSON or a command line gives it) and 30.0 are one setting, so one cache entry
    from dragfu.project import ProjectionCache

    as_int, as_float = ProjectSettings(locality_weight=30), ProjectSettings(locality_weight=30.0)
    assert as_int == as_float and as_int.to_json() == as_float.to_json()
    assert isinstance(as_int.locality_weight, float)
    image = np.zeros((8, 8, 3), np.uint8)
    cache = ProjectionCache("unused")
    key = cache.key(G, image, settings=as_int, fingerprint="m")
    assert key == cache.key(G, image, settings=as_float, fingerprint="m")
    assert key != cache.key(G, image, settings=as_int.replace(locality_weight=31), fingerprint="m")


# ---------------------------------------------------------------------------------------------------
# Saving and loading


def test_save_and_load_round_trip(G, projection, tmp_path):
    path = save_projection(projection, tmp_path / "p.safetensors")
    loaded = load_projection(path, G)
    torch.testing.assert_close(loaded.ws, projection.ws)
    np.testing.assert_array_equal(loaded.reconstruction, projection.reconstruction)
    np.testing.assert_array_equal(
        _render_ws(loaded.generator, loaded.ws), projection.reconstruction
    )
    assert loaded.psnr == pytest.approx(projection.psnr)
    assert loaded.stages["tune"].steps == projection.stages["tune"].steps
    assert loaded.settings == projection.settings
    assert set(loaded.tuned_delta) == set(projection.tuned_delta)
    # compact: float16 differences, smaller than the synthesis weights they change
    stored = load_file(str(path))
    assert all(v.dtype == torch.float16 for k, v in stored.items() if k.startswith("delta."))


def test_loading_into_another_model_is_a_clear_error(projection, tmp_path):
    path = save_projection(projection, tmp_path / "p.safetensors")
    other = make_tiny_generator(seed=1)  # same shapes, other weights
    with pytest.raises(BadInputError, match="another model") as error:
        load_projection(path, other)
    assert error.value.code == "wrong_model"
    bigger = make_tiny_generator(resolution=64)  # other shapes
    with pytest.raises(BadInputError, match="this model needs") as error:
        load_projection(path, bigger)
    assert error.value.code == "wrong_model"


def test_nan_in_a_latent_file_is_a_clear_error(G, projection, tmp_path):
    path = save_projection(projection, tmp_path / "p.safetensors")
    tensors = load_file(str(path))
    tensors["ws"][0, 0, 0] = float("nan")
    save_file(tensors, str(tmp_path / "nan.safetensors"))
    with pytest.raises(BadInputError, match="NaN") as error:
        load_projection(tmp_path / "nan.safetensors", G)
    assert error.value.code == "bad_latent"
    name = next(k for k in tensors if k.startswith("delta."))
    tensors = load_file(str(path))
    tensors[name].view(-1)[0] = float("inf")
    save_file(tensors, str(tmp_path / "inf.safetensors"))
    with pytest.raises(BadInputError, match="NaN or infinite"):
        load_projection(tmp_path / "inf.safetensors", G)


def test_unreadable_latent_files_are_clear_errors(G, tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x00\x01 not safetensors")
    for path in (tmp_path / "junk.safetensors", tmp_path / "missing.safetensors"):
        with pytest.raises(BadInputError) as error:
            load_projection(path, G)
        assert "\n" not in str(error.value)
    save_file({"other": torch.zeros(3)}, str(tmp_path / "no_ws.safetensors"))
    with pytest.raises(BadInputError, match="no 'ws'"):
        load_projection(tmp_path / "no_ws.safetensors", G)


def test_a_plain_latent_file_loads_with_the_untuned_generator(G, tmp_path):
    ws = G.mapping(torch.randn(1, G.z_dim), None)
    save_file({"ws": ws.contiguous()}, str(tmp_path / "plain.safetensors"))
    loaded = load_projection(tmp_path / "plain.safetensors", G)
    assert loaded.generator is G
    np.testing.assert_array_equal(loaded.reconstruction, _render_ws(G, ws))


def test_fingerprint_follows_in_place_changes(G):
    G2 = make_tiny_generator()
    first = model_fingerprint(G2)
    assert model_fingerprint(G2) == first == model_fingerprint(G)
    with torch.no_grad():
        G2.synthesis.b4.conv1.weight[0, 0, 0, 0] += 1
    assert model_fingerprint(G2) != first


def test_locality_regulariser_keeps_the_model_elsewhere(G, target):
    # Far from the pivot, the tuned generator should draw what the original drew; the regulariser
    # pulls towards that (PTI's locality regularisation).
    probe = G.mapping(torch.from_numpy(np.random.RandomState(99).randn(4, G.z_dim)).float(), None)
    base = ProjectSettings(
        w_steps=10, wplus_steps=0, tune_steps=30, w_avg_samples=200,
        tune_lr=3e-4, tune_lr_rampdown=0.0, tune_l2_weight=1.0,  # PTI's values
        locality_weight=0.0,  # the plain arm: PTI without its regulariser
    )  # fmt: skip
    # Step from the pivot as far as a random w typically lies from it: the regulariser then looks
    # at the same kind of codes as the probes.
    pivot = project(G, target, settings=base.replace(tune_steps=0)).ws
    distance = float((probe - pivot).flatten(1).norm(dim=1).mean())
    plain = project(G, target, settings=base)
    local = project(G, target, settings=base.replace(locality_weight=10.0, locality_alpha=distance))
    with torch.no_grad():
        original = G.synthesis(probe, noise_mode="const")
        drift_plain = (
            (plain.generator.synthesis(probe, noise_mode="const") - original).square().mean()
        )
        drift_local = (
            (local.generator.synthesis(probe, noise_mode="const") - original).square().mean()
        )
    assert float(drift_local) < 0.7 * float(drift_plain)
    assert local.psnr > local.stages["w"].psnr  # it still fits the image
