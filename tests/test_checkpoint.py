"""Checkpoint loading: NVIDIA pickles through the restricted unpickler, our safetensors format."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from dragfu.errors import CheckpointError, UnsafeCheckpointError, UnsupportedModelError
from dragfu.models import convert_checkpoint, load_generator, save_generator
from tests.conftest import make_tiny_generator

PICKLES = ["tiny_network_protocol4.pkl", "tiny_network_protocol2.pkl"]


@pytest.mark.parametrize("name", PICKLES)
def test_reference_pickles_load_to_the_reference_weights(reference_dir, name):
    G = load_generator(reference_dir / name)
    expected = load_file(reference_dir / "tiny_generator.safetensors")
    ours = G.state_dict()
    assert set(ours) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(ours[key], tensor), key
    assert G.init_kwargs["z_dim"] == 32 and G.num_ws == 8


def test_both_pickles_give_the_same_images(reference_dir):
    expected = load_file(reference_dir / "tiny_expected.safetensors")
    for name in PICKLES:
        G = load_generator(reference_dir / name)
        with torch.no_grad():
            img = G.synthesis(expected["ws_psi1"])
        assert (img - expected["img_const_fused1"]).abs().max() <= 1e-4


def test_convert_round_trip_keeps_weights_and_config(reference_dir, tmp_path):
    out = convert_checkpoint(reference_dir / PICKLES[0], tmp_path / "tiny.safetensors")
    assert out.exists() and out.with_suffix(".json").exists()
    G = load_generator(out)
    reference = load_file(reference_dir / "tiny_generator.safetensors")
    for key, tensor in reference.items():
        assert torch.equal(G.state_dict()[key], tensor)
    # The metadata alone also carries the config, so a lone .safetensors file loads too.
    out.with_suffix(".json").unlink()
    assert load_generator(out).init_kwargs == G.init_kwargs


def test_save_and_load_round_trip(tmp_path):
    G = make_tiny_generator(seed=3)
    path = save_generator(G, tmp_path / "g.safetensors")
    H = load_generator(path)
    z = torch.randn(2, G.z_dim)
    with torch.no_grad():
        assert torch.equal(G(z), H(z))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Evil(marker)}, protocol=4))
    assert b"system" in path.read_bytes()
    with pytest.raises(UnsafeCheckpointError, match="system"):
        load_generator(path)
    assert not marker.exists()


def test_malicious_global_inside_a_real_pickle_is_refused(reference_dir, tmp_path):
    """A real NVIDIA-format file with one extra global spliced in (protocol 2 GLOBAL opcode)."""
    marker = tmp_path / "pwned2"
    payload = pickle.dumps({"x": _Evil(marker)}, protocol=2)
    real = (reference_dir / PICKLES[1]).read_bytes()
    path = tmp_path / "spliced.pkl"
    path.write_bytes(payload + real)
    with pytest.raises(UnsafeCheckpointError):
        load_generator(path)
    assert not marker.exists()


def test_cli_refuses_malicious_pickle_with_one_line(tmp_path):
    marker = tmp_path / "pwned3"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _Evil(marker)}))
    result = subprocess.run(
        [sys.executable, "-m", "dragfu.cli.main", "convert", str(path), str(tmp_path / "o.safetensors")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not on the allowlist" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("cut", [10, 1000, 0.5, 0.99])
def test_truncated_pickle_gives_a_clear_error(reference_dir, tmp_path, cut):
    data = (reference_dir / PICKLES[0]).read_bytes()
    length = int(len(data) * cut) if isinstance(cut, float) else cut
    path = tmp_path / "truncated.pkl"
    path.write_bytes(data[:length])
    with pytest.raises(CheckpointError, match="truncated.pkl"):
        load_generator(path)


def test_corrupt_safetensors_gives_a_clear_error(tmp_path):
    path = save_generator(make_tiny_generator(), tmp_path / "g.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="g.safetensors"):
        load_generator(path)
    path.write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_generator(path)


def test_config_weights_mismatch_names_the_key(tmp_path):
    path = save_generator(make_tiny_generator(), tmp_path / "g.safetensors")
    config = path.with_suffix(".json")
    config.write_text(config.read_text().replace('"channel_max": 32', '"channel_max": 16'))
    with pytest.raises(CheckpointError, match="shape"):
        load_generator(path)


def test_wrong_kind_of_pickle(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="not a network pickle"):
        load_generator(path)
    path.write_bytes(pickle.dumps({"something": 1}))
    with pytest.raises(CheckpointError, match="without a G_ema"):
        load_generator(path)


def _persistent_pickle(class_name: str) -> bytes:
    """A minimal pickle with NVIDIA's persistence structure, written opcode by opcode."""
    meta = {"type": "class", "version": 6, "module_src": "# placeholder", "class_name": class_name,
            "state": {"_init_kwargs": {"z_dim": 8}}}  # fmt: skip
    buffer = io.BytesIO()
    buffer.write(b"\x80\x02}q\x00X\x05\x00\x00\x00G_emaq\x01")
    buffer.write(b"ctorch_utils.persistence\n_reconstruct_persistent_obj\n")
    body = pickle.dumps(meta, protocol=2)[2:-1]  # the dict's opcodes without PROTO and STOP
    buffer.write(body + b"\x85R")  # TUPLE1, REDUCE
    buffer.write(b"s.")  # SETITEM, STOP
    return buffer.getvalue()


def test_stylegan3_pickle_is_refused_as_unsupported(tmp_path):
    path = tmp_path / "sg3.pkl"
    path.write_bytes(_persistent_pickle("training.networks_stylegan3.Generator"))
    with pytest.raises(UnsupportedModelError, match="StyleGAN3"):
        load_generator(path)


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such model file"):
        load_generator(tmp_path / "nothing.pkl")
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown model format"):
        load_generator(tmp_path / "model.bin")


def _as_rosinality(G) -> dict:
    """A state dict in rosinality's stylegan2-pytorch layout, built from an NVIDIA-layout generator."""
    sd = G.state_dict()
    out = {}
    for i in range(G.mapping.num_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"][None]

    def styled(src, dst):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]

    def to_rgb(src, dst):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)

    styled("synthesis.b4.conv1", "conv1")
    to_rgb("synthesis.b4.torgb", "to_rgb1")
    out["noises.noise_0"] = sd["synthesis.b4.conv1.noise_const"][None, None]
    for block, res in enumerate(G.synthesis.block_resolutions[1:]):
        styled(f"synthesis.b{res}.conv0", f"convs.{2 * block}")
        styled(f"synthesis.b{res}.conv1", f"convs.{2 * block + 1}")
        to_rgb(f"synthesis.b{res}.torgb", f"to_rgbs.{block}")
        out[f"noises.noise_{2 * block + 1}"] = sd[f"synthesis.b{res}.conv0.noise_const"][None, None]
        out[f"noises.noise_{2 * block + 2}"] = sd[f"synthesis.b{res}.conv1.noise_const"][None, None]
    return out


def test_rosinality_checkpoint_loads_with_inferred_config(tmp_path):
    import argparse

    G = make_tiny_generator(resolution=32, conv_clamp=None)
    with torch.no_grad():
        G.mapping.w_avg.normal_()
    path = tmp_path / "550000.pt"
    torch.save({"g_ema": _as_rosinality(G), "latent_avg": G.mapping.w_avg.clone(),
                "args": argparse.Namespace(size=32, n_mlp=2)}, path)  # fmt: skip
    H = load_generator(path)
    assert H.init_kwargs["channel_base"] == 512 and H.init_kwargs["channel_max"] == 32
    assert H.init_kwargs["mapping_kwargs"] == {"num_layers": 2}
    z = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.equal(G(z, truncation_psi=0.7), H(z, truncation_psi=0.7))


def test_rosinality_checkpoint_with_unsafe_global_is_refused(tmp_path):
    marker = tmp_path / "pwned4"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "x": _Evil(marker)}, path)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        load_generator(path)
    assert not marker.exists()
