"""Rectangular generators (StyleGAN-Human's `square=False`: H x H/2 images, a [C, 4, 2] constant):
the generator, NVIDIA-format pickles in its three config forms, our safetensors, the CLI."""

from __future__ import annotations

import collections
import json
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from dragfu.cli.main import main
from dragfu.errors import CheckpointError
from dragfu.models import load_generator, save_generator
from dragfu.models.seeds import to_uint8, ws_from_seed
from tests.conftest import make_tiny_generator


@pytest.fixture(scope="module")
def rect():
    """32 high, 16 wide."""
    G = make_tiny_generator(square=False, seed=5)
    for name, buffer in G.named_buffers():  # NVIDIA's noise_const is random; so is w_avg here
        if name.endswith("noise_const") or name.endswith("w_avg"):
            buffer.normal_()
    for name, param in G.named_parameters():
        if name.endswith("noise_strength") or name.endswith("bias"):
            param.uniform_(-0.5, 0.5)  # no zero term hides a wrong shape or order
    return G


def test_output_and_feature_shapes(rect):
    G = rect
    assert (G.img_height, G.img_width, G.square) == (32, 16, False)
    assert G.init_kwargs["square"] is False and G.img_resolution == 32
    z = torch.randn(2, G.z_dim)
    assert G(z).shape == (2, 3, 32, 16)
    ws = G.mapping(z)
    for res in G.synthesis.block_resolutions:
        features, img = G.synthesis.run(ws, stop_at=res)
        assert features.shape == (2, G.synthesis.channels[res], res, res // 2)
        assert img.shape == (2, 3, res, res // 2)
    features, img = G.synthesis.run(ws, stop_at=32, features_at=8, with_rgb=False)
    assert features.shape[2:] == (8, 4) and img is None
    noisy = G.synthesis(ws, "random", generator=torch.Generator().manual_seed(0))
    assert noisy.shape == (2, 3, 32, 16)
    unfused = G.synthesis(ws, fused_modconv=False)
    assert (unfused - G.synthesis(ws)).abs().max() <= 1e-4


def test_state_dict_keys_equal_the_square_config(rect):
    square = make_tiny_generator().state_dict()
    ours = rect.state_dict()
    assert list(ours) == list(square)
    assert ours["synthesis.b4.const"].shape == (32, 4, 2)
    different = {k for k in ours if ours[k].shape != square[k].shape}
    # Only the constant and the noise inputs change shape: [R, R] -> [R, R/2].
    assert different == {"synthesis.b4.const"} | {k for k in ours if k.endswith("noise_const")}
    for key in different - {"synthesis.b4.const"}:
        height = square[key].shape[0]
        assert ours[key].shape == (height, height // 2), key


def test_square_models_are_unchanged():
    G = make_tiny_generator()
    assert (G.img_height, G.img_width, G.square) == (32, 32, True)
    assert "square" not in G.init_kwargs  # NVIDIA's stock configs have no such key
    explicit = make_tiny_generator(square=True)
    assert all(
        torch.equal(a, b)
        for a, b in zip(G.state_dict().values(), explicit.state_dict().values(), strict=True)
    )


def test_square_must_be_a_bool():
    with pytest.raises(ValueError, match="square"):
        make_tiny_generator(square="no")


# --- NVIDIA-format pickles, written as NVIDIA's training code writes them ------------------------
# Each network is pickled as `torch_utils.persistence._reconstruct_persistent_obj(meta)`, configs
# as `dnnlib.util.EasyDict`; tensors and storages go through torch's own pickling. Stand-in
# modules under those names let the standard pickler write exactly these globals.


class _EasyDict(dict):
    __module__, __qualname__ = "dnnlib.util", "EasyDict"


def _reconstruct_persistent_obj(meta):  # never called: only its name is written
    raise AssertionError


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
_reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"


class _Persistent:
    def __init__(self, meta: dict):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,))


@pytest.fixture
def nvidia_names(monkeypatch):
    """`torch_utils.persistence` and `dnnlib.util` in sys.modules, for the pickler to find."""
    for value in (_reconstruct_persistent_obj, _EasyDict):
        package_name, module_name = value.__module__.split(".")
        package = types.ModuleType(package_name)
        module = types.ModuleType(value.__module__)
        setattr(module, value.__qualname__, value)
        setattr(package, module_name, module)
        monkeypatch.setitem(sys.modules, package_name, package)
        monkeypatch.setitem(sys.modules, value.__module__, module)


def _persistent(module: torch.nn.Module, init_kwargs: dict | None = None) -> _Persistent:
    state = {
        "training": False,
        "_parameters": collections.OrderedDict(module._parameters),
        "_buffers": collections.OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        "_modules": collections.OrderedDict(
            (name, _persistent(child)) for name, child in module._modules.items()
        ),
    }
    if init_kwargs is not None:
        state.update(_init_args=(), _init_kwargs=_EasyDict(init_kwargs))
    class_name = f"training.networks.{type(module).__name__}"
    return _Persistent(
        {
            "type": "class",
            "version": 6,
            "module_src": "# placeholder",
            "class_name": class_name,
            "state": state,
        }  # fmt: skip
    )


def _nvidia_pickle(G: torch.nn.Module, init_kwargs: dict) -> bytes:
    network = _persistent(G, init_kwargs)
    content = {"G": network, "D": None, "G_ema": network, "augment_pipe": None,
               "training_set_kwargs": _EasyDict(resolution=G.img_resolution)}  # fmt: skip
    data = pickle.dumps(content, protocol=4)
    for expected in (b"torch_utils.persistence", b"dnnlib.util", b"_rebuild_tensor_v2"):
        assert expected in data
    return data


SYNTHESIS = {"channel_base": 512, "channel_max": 32, "num_fp16_res": 0, "conv_clamp": 256}
COMMON = {"z_dim": 32, "w_dim": 32, "c_dim": 0, "img_resolution": 32, "img_channels": 3,
          "mapping_kwargs": {"num_layers": 2}}  # fmt: skip
CONFIG_FORMS = {
    # StyleGAN-Human's sg2 code (stylegan2-ada-pytorch): `square` beside nested synthesis_kwargs.
    "nested": {**COMMON, "square": False, "synthesis_kwargs": SYNTHESIS},
    # Its sg3 code (stylegan3 repo's networks_stylegan2): `square` and the synthesis options flat.
    "flat": {**COMMON, "square": False, **SYNTHESIS},
    # The published stylegan_human_v2_512.pkl as DragGAN loads it: no `square` at all.
    "no-square": {**COMMON, "synthesis_kwargs": SYNTHESIS},
}


@pytest.mark.parametrize("form", list(CONFIG_FORMS))
def test_rectangular_pickle_loads_to_the_source_weights(rect, nvidia_names, tmp_path, form):
    path = tmp_path / "stylegan_human_tiny.pkl"
    path.write_bytes(_nvidia_pickle(rect, CONFIG_FORMS[form]))
    G = load_generator(path)
    assert (G.img_height, G.img_width, G.square) == (32, 16, False)
    assert G.init_kwargs["square"] is False
    source, ours = rect.state_dict(), G.state_dict()
    assert list(ours) == list(source)
    for key, tensor in source.items():
        assert torch.equal(ours[key], tensor), key
    z = torch.randn(3, 32)
    with torch.no_grad():
        assert torch.equal(G(z, truncation_psi=0.7), rect(z, truncation_psi=0.7))


def test_pickle_saying_square_with_rectangular_weights_names_the_key(rect, nvidia_names, tmp_path):
    path = tmp_path / "mismatch.pkl"
    path.write_bytes(_nvidia_pickle(rect, {**CONFIG_FORMS["nested"], "square": True}))
    with pytest.raises(
        CheckpointError, match=r"'synthesis\.b4\.const' has shape \(32, 4, 2\)"
    ) as e:
        load_generator(path)
    assert len(str(e.value).splitlines()) == 1


def test_square_pickle_stays_square(nvidia_names, tmp_path):
    G = make_tiny_generator()
    path = tmp_path / "square.pkl"
    path.write_bytes(_nvidia_pickle(G, {**COMMON, "synthesis_kwargs": SYNTHESIS}))
    H = load_generator(path)
    assert H.square and "square" not in H.init_kwargs
    assert all(
        torch.equal(a, b)
        for a, b in zip(G.state_dict().values(), H.state_dict().values(), strict=True)
    )


# --- our format and the CLI --------------------------------------------------------------------


def test_safetensors_round_trip_keeps_square_false(rect, tmp_path):
    path = save_generator(rect, tmp_path / "rect.safetensors")
    assert json.loads(path.with_suffix(".json").read_text())["init_kwargs"]["square"] is False
    for sidecar in (True, False):  # the sidecar JSON, then the file's metadata alone
        if not sidecar:
            path.with_suffix(".json").unlink()
        H = load_generator(path)
        assert H.init_kwargs == rect.init_kwargs and (H.img_height, H.img_width) == (32, 16)
        z = torch.randn(2, 32)
        with torch.no_grad():
            assert torch.equal(H(z), rect(z))


def test_safetensors_config_disagreeing_with_the_weights_is_refused(rect, tmp_path):
    path = save_generator(rect, tmp_path / "rect.safetensors")
    config = path.with_suffix(".json")
    config.write_text(config.read_text().replace('"square": false', '"square": true'))
    with pytest.raises(CheckpointError, match="shape"):
        load_generator(path)
    config.write_text(config.read_text().replace('"square": true', '"square": "yes"'))
    with pytest.raises(CheckpointError, match="invalid generator config"):
        load_generator(path)


def test_cli_convert_and_sample_write_a_wide_by_high_png(rect, nvidia_names, tmp_path, capsys):
    source = tmp_path / "stylegan_human_tiny.pkl"
    source.write_bytes(_nvidia_pickle(rect, CONFIG_FORMS["no-square"]))
    converted = tmp_path / "human.safetensors"
    assert main(["convert", str(source), str(converted)]) == 0
    assert load_generator(converted).init_kwargs["square"] is False
    out = tmp_path / "seed3.png"
    capsys.readouterr()
    assert main(["sample", "--model", str(converted), "--seed", "3", "--out", str(out),
                 "--device", "cpu", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["size"] == [16, 32]  # [W, H]
    image = Image.open(out)
    assert image.size == (16, 32)  # PIL: (width, height)
    with torch.no_grad():
        expected = to_uint8(rect.synthesis(ws_from_seed(rect, 3), noise_mode="const"))
    assert np.array_equal(np.asarray(image), expected)


def test_registry_entry_is_256_wide_512_high():
    from dragfu.models import registry

    info = registry.MODELS["human-512x256"]
    assert info.resolution == (256, 512)  # (width, height)
    assert "stylegan_human_v2_512.pkl" in info.source_names


# --- dragging on a rectangular generator: points are (x, y) in a W x H image ------------------


@pytest.mark.parametrize("method", ["default", "draggan"])
def test_drag_runs_in_the_rectangular_frame(rect, method):
    from dragfu.drag import drag
    from dragfu.models.seeds import ws_from_seed

    G = rect
    handle, target = (12.0, 26.0), (9.0, 22.0)  # y beyond the width: only valid in W x H
    seen = []
    result = drag(G, ws_from_seed(G, 1), [handle], [target], method=method, max_steps=3,
                  callback=lambda p: seen.append(p.points[0]))  # fmt: skip
    assert result.image.shape == (32, 16, 3)
    assert seen[0] == [12.0, 26.0] and result.points[0] == tuple(seen[-1])
    # A drag that cannot move the picture (lr 0): the features stay as they were, so the tracker
    # must find the handle where it was, not a clamped or transposed (x, y) (26 > the width 16).
    # (Whole-pixel tracking: the sub-pixel parabola fit drifts on this random model's coarse
    # features even when nothing moves.)
    still = drag(G, ws_from_seed(G, 1), [handle], [target], method=method, max_steps=3, lr=0.0,
                 subpixel_tracking=False)  # fmt: skip
    assert still.points == [handle]


def test_tracking_follows_a_known_shift_in_the_rectangular_frame():
    """Features that are the image coordinates, shifted by a known amount: the tracker finds the
    handle shifted by just that, beyond the width too; past the bottom it stops at the edge."""
    from dragfu.drag.draggan import sample_features, track_points

    size = (16, 32)  # W x H
    ys, xs = torch.meshgrid(torch.arange(32) + 0.5, torch.arange(16) + 0.5, indexing="ij")

    def coordinates(dx: float, dy: float) -> torch.Tensor:  # the picture moved by (dx, dy)
        return torch.stack([xs - dx, ys - dy])[None].float()

    handles = torch.tensor([[5.5, 24.5], [10.5, 4.5]])
    templates = sample_features(coordinates(0, 0), handles, size)
    for subpixel in (False, True):
        moved = track_points(coordinates(-2, 3), templates, handles, 4, size, subpixel)
        assert torch.allclose(moved, torch.tensor([[3.5, 27.5], [8.5, 7.5]]), atol=1e-4)
        # moved 6 px down from y = 28.5: the picture's bottom row is as far as the point goes
        start = torch.tensor([[5.5, 28.5]])
        template = sample_features(coordinates(0, 0), start, size)
        low = track_points(coordinates(1, 6), template, start, 8, size, subpixel)
        assert low[0, 0] == 6.5 and 31.5 <= low[0, 1] <= 32.0, low


def test_drag_refuses_points_and_masks_of_the_wrong_frame(rect):
    from dragfu.drag import drag
    from dragfu.errors import BadInputError
    from dragfu.models.seeds import ws_from_seed

    ws = ws_from_seed(rect, 1)
    with pytest.raises(BadInputError, match=r"outside the 16x32 image"):
        drag(rect, ws, [(20.0, 5.0)], [(8.0, 5.0)], max_steps=1)  # x = 20 > width 16
    with pytest.raises(BadInputError, match=r"mask is 32x16, the image is 16x32"):
        drag(rect, ws, [(8.0, 5.0)], [(8.0, 9.0)], mask=np.ones((16, 32), bool), max_steps=1)


def test_masked_drag_keeps_the_outside_of_a_rectangular_image(rect):
    from dragfu.drag import drag
    from dragfu.models.seeds import to_uint8, ws_from_seed

    G = rect
    ws = ws_from_seed(G, 2)
    with torch.no_grad():
        before = to_uint8(G.synthesis(ws)).astype(float)
    movable = np.zeros((32, 16), bool)
    movable[18:30, 2:14] = True
    kept = drag(G, ws, [(8.0, 24.0)], [(8.0, 21.0)], mask=movable, max_steps=15, lr=0.02)
    free = drag(G, ws, [(8.0, 24.0)], [(8.0, 21.0)], max_steps=15, lr=0.02)

    def outside_change(image: np.ndarray) -> float:
        return float(np.abs(image.astype(float) - before)[~movable].mean())

    assert outside_change(kept.image) < outside_change(free.image)
