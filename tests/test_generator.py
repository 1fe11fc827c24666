"""The generator reproduces NVIDIA's StyleGAN2 numerics block by block (reference data)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dragfu.models import Generator
from tests.conftest import make_tiny_generator

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference(reference_dir):
    config = json.loads((reference_dir / "tiny_generator.json").read_text())
    G = Generator(**config["init_kwargs"])
    G.load_state_dict(load_file(reference_dir / "tiny_generator.safetensors"))
    return G.eval(), load_file(reference_dir / "tiny_expected.safetensors"), config


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


def test_state_dict_keys_and_shapes_equal_nvidia_512_config(reference_dir):
    expected = {}
    for line in (reference_dir / "stylegan2_512_state_dict.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _kind, shape = line.split("\t")
            expected[key] = tuple(int(n) for n in shape.strip("()").split(",") if n.strip())
    G = Generator(
        z_dim=512, c_dim=0, w_dim=512, img_resolution=512, channel_base=32768,
        channel_max=512, mapping_kwargs={"num_layers": 8},
    )  # fmt: skip
    ours = {key: tuple(value.shape) for key, value in G.state_dict().items()}
    assert ours == expected
    assert G.num_ws == 16
    params = {name for name, _ in G.named_parameters()}
    for line in (reference_dir / "stylegan2_512_state_dict.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            key, kind, _ = line.split("\t")
            assert (key in params) == (kind == "param"), key


def test_num_ws_of_tiny_config(reference):
    G, _, config = reference
    assert G.num_ws == config["num_ws"]


@pytest.mark.parametrize(
    "name, psi, cutoff",
    [("ws_psi1", 1.0, None), ("ws_psi07", 0.7, None), ("ws_psi05_cutoff4", 0.5, 4)],
)
def test_mapping_matches_reference(reference, name, psi, cutoff):
    G, expected, _ = reference
    with torch.no_grad():
        ws = G.mapping(expected["z"], None, truncation_psi=psi, truncation_cutoff=cutoff)
    assert max_error(ws, expected[name]) <= TOLERANCE


@pytest.mark.parametrize("fused", [True, False])
def test_synthesis_matches_reference_both_modconv_paths(reference, fused):
    G, expected, _ = reference
    with torch.no_grad():
        img = G.synthesis(expected["ws_psi1"], noise_mode="const", fused_modconv=fused)
    assert max_error(img, expected["img_const_fused1"]) <= TOLERANCE
    assert max_error(img, expected["img_const_fused0"]) <= TOLERANCE


def test_synthesis_without_noise_matches_reference(reference):
    G, expected, _ = reference
    with torch.no_grad():
        img = G.synthesis(expected["ws_psi1"], noise_mode="none")
    assert max_error(img, expected["img_none"]) <= TOLERANCE
    assert max_error(img, expected["img_const_fused1"]) > 1e-3  # the noise term is really there


@pytest.mark.parametrize("resolution", [4, 8, 16, 32])
def test_every_block_matches_reference_and_stops_there(reference, resolution):
    G, expected, _ = reference
    with torch.no_grad():
        features, img = G.synthesis.run(expected["ws_psi1"], noise_mode="const", stop_at=resolution)
    assert max_error(features, expected[f"block{resolution}_x"]) <= TOLERANCE
    assert max_error(img, expected[f"block{resolution}_img"]) <= TOLERANCE


def test_stop_at_does_no_work_beyond_the_block(reference, monkeypatch):
    G, expected, _ = reference
    called = []
    for res in G.synthesis.block_resolutions:
        block = getattr(G.synthesis, f"b{res}")
        block.register_forward_hook(lambda module, inputs, output, res=res: called.append(res))
    with torch.no_grad():
        G.synthesis.run(expected["ws_psi1"], stop_at=8, with_rgb=False)
    assert called == [4, 8]


def test_features_gradient_reaches_ws():
    G = make_tiny_generator()
    ws = G.mapping(torch.randn(1, G.z_dim)).detach().requires_grad_(True)
    features, _ = G.synthesis.run(ws, stop_at=16, with_rgb=False)
    features.square().mean().backward()
    assert ws.grad is not None and ws.grad[:, :5].abs().sum() > 0
    assert ws.grad[:, 5:].abs().sum() == 0  # ws beyond the 16x16 block do not influence it


def test_random_noise_mode_varies_and_is_seedable():
    G = make_tiny_generator()
    for module in G.modules():
        if hasattr(module, "noise_strength"):
            module.noise_strength.fill_(0.5)
    ws = G.mapping(torch.randn(1, G.z_dim))
    a = G.synthesis(ws, "random", generator=torch.Generator().manual_seed(1))
    b = G.synthesis(ws, "random", generator=torch.Generator().manual_seed(1))
    c = G.synthesis(ws, "random", generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_invalid_resolution_is_refused():
    with pytest.raises(ValueError, match="power of two"):
        Generator(z_dim=8, c_dim=0, w_dim=8, img_resolution=48)
