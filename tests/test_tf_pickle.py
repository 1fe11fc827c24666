"""NVIDIA's TensorFlow-era StyleGAN2 pickles (stylegan2-*-config-f.pkl), read without TensorFlow.

No real TF pickle is available offline, so these tests write one in the real format: a protocol-3
pickle of the tuple (G, D, Gs) of `dnnlib.tflib.network.Network` objects (the class global plus
the `__getstate__` dict NVIDIA's stylegan2 `dnnlib/tflib/network.py` writes), numpy values
pickled by numpy itself (with numpy 1.x's `numpy.core.multiarray` names, as in the published
files, or numpy 2.x's), and TF variable names and layouts as `training/networks_stylegan2.py`
creates them, made from a tiny generator by the inverse of the documented conversion.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from dragfu.errors import CheckpointError, UnsafeCheckpointError, UnsupportedModelError
from dragfu.models import load_generator, registry
from dragfu.models.seeds import z_from_seed
from tests.conftest import make_tiny_generator

TF_SOURCE = "# stand-in for training/networks_stylegan2.py: a loader must never run this\n"


class _Network:
    """Written as `dnnlib.tflib.network.Network` (see `_TFPickler`): class global + state dict."""

    def __init__(self, state: dict):
        self.state = state

    def __getstate__(self) -> dict:
        return self.state


class _TFPickler(pickle._Pickler):
    """Protocol 3 (the default of the Python 3.6 that wrote NVIDIA's files), naming `_Network`
    as `dnnlib.tflib.network.Network` and, for `numpy1_names`, numpy's reconstruction functions
    by their numpy 1.x module `numpy.core.multiarray`."""

    def __init__(self, file, numpy1_names: bool = True):
        super().__init__(file, protocol=3)
        self.numpy1_names = numpy1_names

    def save_global(self, obj, name=None):
        if obj is _Network:
            module, qualname = "dnnlib.tflib.network", "Network"
        elif self.numpy1_names and getattr(obj, "__module__", "") == "numpy._core.multiarray":
            module, qualname = "numpy.core.multiarray", obj.__name__
        else:
            return super().save_global(obj, name)
        self.write(pickle.GLOBAL + f"{module}\n{qualname}\n".encode())
        self.memoize(obj)


def _tf_pickle(networks, numpy1_names: bool = True) -> bytes:
    buffer = io.BytesIO()
    _TFPickler(buffer, numpy1_names).dump(networks)
    return buffer.getvalue()


def _network(name, func, static_kwargs, variables, components=None, source=TF_SOURCE, version=4):
    return _Network({
        "version": version, "name": name, "static_kwargs": dict(static_kwargs),
        "components": dict(components or {}), "build_module_src": source,
        "build_func_name": func, "variables": list(variables),
    })  # fmt: skip


def _static_kwargs(G) -> dict:
    """What NVIDIA's training loop passes to G_main (num_channels, resolution, label_size) plus
    the sizes of this tiny network (the published config-f files use TF's defaults instead)."""
    return {
        "num_channels": G.img_channels, "resolution": G.img_resolution, "label_size": 0,
        "latent_size": G.z_dim, "dlatent_size": G.w_dim,
        "mapping_layers": G.mapping.num_layers, "mapping_fmaps": G.w_dim,
        "fmap_base": G.init_kwargs["channel_base"] // 2, "fmap_max": G.init_kwargs["channel_max"],
    }  # fmt: skip


def _quantise_affine_biases(G) -> None:
    """Affine biases with exact float32 `(b - 1) + 1`, so the round trip is bit for bit."""
    for name, param in G.named_parameters():
        if name.endswith("affine.bias"):
            param.copy_(1 + torch.round(torch.randn_like(param) * 256) / 1024)


def _tiny_tf_generator(seed: int):
    G = make_tiny_generator(resolution=32, seed=seed, conv_clamp=None)  # TF has no clamp
    with torch.no_grad():
        G.mapping.w_avg.normal_()
        for name, param in G.named_parameters():
            if name.endswith(("noise_strength", ".bias")) and "affine" not in name:
                param.normal_(0, 0.3)
        _quantise_affine_biases(G)
    return G


def tf_networks(G, source=TF_SOURCE, **kwarg_changes):
    """G_main / G_mapping / G_synthesis_stylegan2 Networks holding G's weights in TF's layout."""
    sd = {key: value.detach().numpy() for key, value in G.state_dict().items()}
    resolutions = G.synthesis.block_resolutions

    # Noise inputs come first (G_synthesis_stylegan2 creates them before any layer).
    noises = [sd["synthesis.b4.conv1.noise_const"]]
    for res in resolutions[1:]:
        noises += [sd[f"synthesis.b{res}.conv0.noise_const"], sd[f"synthesis.b{res}.conv1.noise_const"]]  # fmt: skip
    synthesis = [(f"noise{i}", noise[None, None].copy()) for i, noise in enumerate(noises)]

    def layer(scope, ours, up=False, noise=True):
        # [out, in, kh, kw] -> [kh, kw, in, out]
        weight = sd[f"{ours}.weight"].transpose(2, 3, 1, 0)
        if up:
            weight = weight[::-1, ::-1]
        synthesis.append((f"{scope}/weight", np.ascontiguousarray(weight)))
        synthesis.append((f"{scope}/mod_weight", sd[f"{ours}.affine.weight"].T.copy()))
        synthesis.append((f"{scope}/mod_bias", sd[f"{ours}.affine.bias"] - 1))
        if noise:  # TF's session returns numpy scalars for 0-d variables
            synthesis.append((f"{scope}/noise_strength", np.float32(sd[f"{ours}.noise_strength"])))
        synthesis.append((f"{scope}/bias", sd[f"{ours}.bias"]))

    synthesis.append(("4x4/Const/const", sd["synthesis.b4.const"][None].copy()))
    layer("4x4/Conv", "synthesis.b4.conv1")
    layer("4x4/ToRGB", "synthesis.b4.torgb", noise=False)
    for res in resolutions[1:]:
        layer(f"{res}x{res}/Conv0_up", f"synthesis.b{res}.conv0", up=True)
        layer(f"{res}x{res}/Conv1", f"synthesis.b{res}.conv1")
        layer(f"{res}x{res}/ToRGB", f"synthesis.b{res}.torgb", noise=False)
    mapping = []
    for i in range(G.mapping.num_layers):
        mapping.append((f"Dense{i}/weight", sd[f"mapping.fc{i}.weight"].T.copy()))
        mapping.append((f"Dense{i}/bias", sd[f"mapping.fc{i}.bias"]))

    kwargs = {**_static_kwargs(G), **kwarg_changes}
    kwargs = {key: value for key, value in kwargs.items() if value is not None}
    num_layers = G.num_ws
    return _network(
        "Gs", "G_main", kwargs,
        [("lod", np.float32(0)), ("dlatent_avg", sd["mapping.w_avg"])],
        components={
            "synthesis": _network("G_synthesis", "G_synthesis_stylegan2", kwargs, synthesis, source=source),  # fmt: skip
            "mapping": _network("G_mapping", "G_mapping", {**kwargs, "dlatent_broadcast": num_layers}, mapping, source=source),  # fmt: skip
        },
        source=source,
    )  # fmt: skip


def _discriminator():
    variables = [("lod", np.float32(0)), ("Output/bias", np.zeros(1, np.float32))]
    return _network("D", "D_stylegan2", {"num_channels": 3, "resolution": 32}, variables)


def write_tf_pickle(path, Gs, G=None, numpy1_names=True):
    G = G or tf_networks(_tiny_tf_generator(seed=99))  # the training G differs from Gs
    path.write_bytes(_tf_pickle((G, _discriminator(), Gs), numpy1_names))
    return path


@pytest.fixture(scope="module")
def tiny():
    return _tiny_tf_generator(seed=5)


@pytest.mark.parametrize("numpy1_names", [True, False], ids=["numpy1-names", "numpy2-names"])
def test_tf_pickle_loads_gs_bit_for_bit(tiny, tmp_path, numpy1_names):
    path = write_tf_pickle(tmp_path / "stylegan2-tiny-config-f.pkl", tf_networks(tiny), numpy1_names=numpy1_names)  # fmt: skip
    data = path.read_bytes()
    assert data.startswith(b"\x80\x03cdnnlib.tflib.network\nNetwork\n")
    assert (b"cnumpy.core.multiarray\n_reconstruct\n" in data) == numpy1_names
    G = load_generator(path)
    expected = tiny.state_dict()
    assert set(G.state_dict()) == set(expected)
    for key, tensor in G.state_dict().items():
        assert torch.equal(tensor, expected[key]), key
    assert G.init_kwargs["channel_base"] == 512 and G.init_kwargs["channel_max"] == 32
    assert G.init_kwargs["conv_clamp"] is None and G.init_kwargs["mapping_kwargs"]["num_layers"] == 2  # fmt: skip
    z = torch.cat([z_from_seed(seed, G.z_dim) for seed in (0, 1)])
    with torch.no_grad():
        assert torch.equal(G(z, truncation_psi=0.7), tiny(z, truncation_psi=0.7))


def _lrelu(x):
    return np.where(x < 0, 0.2 * x, x) * np.sqrt(2)


def test_tf_semantics_of_mapping_and_first_block(tiny, tmp_path):
    """Recompute z -> w and the 4x4 block's image from the TF variables with TF's formulas
    (networks_stylegan2.py: get_weight's runtime gain, dense/modulated conv, mod_bias + 1,
    noise * noise_strength, bias + lrelu * sqrt 2, ToRGB without demodulation) and compare."""
    Gs = tf_networks(tiny)
    path = write_tf_pickle(tmp_path / "g.pkl", Gs)
    G = load_generator(path)
    tf = {name: np.asarray(value, np.float64) for name, value in Gs.state["variables"]}
    for role, component in Gs.state["components"].items():
        tf.update((f"{role}/{n}", np.asarray(v, np.float64)) for n, v in component.state["variables"])  # fmt: skip

    z = np.random.RandomState(3).randn(2, G.z_dim)
    x = z / np.sqrt(np.mean(z**2, axis=1, keepdims=True) + 1e-8)
    for i in range(2):
        weight = tf[f"mapping/Dense{i}/weight"]
        x = _lrelu(x @ (weight * 0.01 / np.sqrt(weight.shape[0])) + tf[f"mapping/Dense{i}/bias"] * 0.01)  # fmt: skip
    w = x

    def styles(scope):
        mod = tf[f"{scope}/mod_weight"]
        return w @ (mod / np.sqrt(mod.shape[0])) + tf[f"{scope}/mod_bias"] + 1  # [N, I]

    weight = tf["synthesis/4x4/Conv/weight"]  # [3, 3, I, O]
    ww = weight[None] / np.sqrt(np.prod(weight.shape[:-1])) * styles("synthesis/4x4/Conv")[:, None, None, :, None]  # fmt: skip
    ww = ww / np.sqrt(np.sum(ww**2, axis=(1, 2, 3), keepdims=True) + 1e-8)
    const = np.repeat(tf["synthesis/4x4/Const/const"], 2, axis=0)
    padded = np.pad(const, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h = np.zeros((2, weight.shape[3], 4, 4))
    for dy in range(3):
        for dx in range(3):
            h += np.einsum("nihw,nio->nohw", padded[:, :, dy : dy + 4, dx : dx + 4], ww[:, dy, dx])
    h += tf["synthesis/noise0"][0, 0] * tf["synthesis/4x4/Conv/noise_strength"]
    h = _lrelu(h + tf["synthesis/4x4/Conv/bias"][None, :, None, None])
    rgb_weight = tf["synthesis/4x4/ToRGB/weight"][0, 0] / np.sqrt(h.shape[1])  # [C, 3]
    rgb = np.einsum("nihw,nio->nohw", h, rgb_weight[None] * styles("synthesis/4x4/ToRGB")[:, :, None])  # fmt: skip
    rgb += tf["synthesis/4x4/ToRGB/bias"][None, :, None, None]

    with torch.no_grad():
        ws = G.mapping(torch.from_numpy(z).float())
        _, img = G.synthesis.run(ws, stop_at=4)
    assert np.allclose(ws[:, 0].numpy(), w, atol=1e-5, rtol=1e-4)
    assert np.allclose(img.numpy(), rgb, atol=1e-4, rtol=1e-4)


def test_build_module_src_is_never_executed(tiny, tmp_path):
    marker = tmp_path / "source-ran"
    source = f"open({str(marker)!r}, 'w').close()\nimport os\nos.system('touch {marker}')\n"
    path = write_tf_pickle(tmp_path / "g.pkl", tf_networks(tiny, source=source))
    assert str(marker).encode() in path.read_bytes()
    G = load_generator(path)
    assert not marker.exists()
    assert G.img_resolution == 32


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_forbidden_global_is_refused_and_nothing_runs(tiny, tmp_path):
    marker = tmp_path / "pwned"
    path = write_tf_pickle(tmp_path / "g.pkl", tf_networks(tiny, truncation_psi=_Evil(marker)))
    with pytest.raises(UnsafeCheckpointError, match=r"'posix\.system'|'nt\.system'") as caught:
        load_generator(path)
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_numpy_object_array_is_refused(tiny, tmp_path):
    Gs = tf_networks(tiny)
    Gs.state["variables"].append(("extra", np.array([1, "text"], dtype=object)))
    path = write_tf_pickle(tmp_path / "g.pkl", Gs)
    with pytest.raises(UnsafeCheckpointError, match="object dtype"):
        load_generator(path)


@pytest.mark.parametrize("cut", [10, 300, 0.5, 0.99])
def test_truncated_tf_pickle_gives_one_line(tiny, tmp_path, cut):
    data = write_tf_pickle(tmp_path / "full.pkl", tf_networks(tiny)).read_bytes()
    length = int(len(data) * cut) if isinstance(cut, float) else cut
    path = tmp_path / "truncated-config-f.pkl"
    path.write_bytes(data[:length])
    with pytest.raises(CheckpointError, match="truncated-config-f.pkl") as caught:
        load_generator(path)
    assert "\n" not in str(caught.value)


def _variant(Gs, change):
    if change == "stylegan1":
        Gs.state["build_func_name"] = "G_style"
    elif change == "old-version":
        Gs.state["version"] = 3
    elif change == "progressive":
        Gs.state["components"]["synthesis"].state["variables"].append(
            ("ToRGB_lod0/weight", np.zeros((1, 1, 16, 3), np.float32))
        )
    elif change == "resnet-skip-weights":
        Gs.state["components"]["synthesis"].state["variables"].append(
            ("32x32/Skip/weight", np.zeros((1, 1, 32, 16), np.float32))
        )
    return Gs


@pytest.mark.parametrize(
    ("change", "kwargs", "message"),
    [
        ("stylegan1", {}, r"StyleGAN \(version 1\)"),
        ("old-version", {}, "version 3"),
        ("progressive", {}, "progressive-growing"),
        ("resnet-skip-weights", {}, "no counterpart"),
        (None, {"architecture": "resnet"}, "only the 'skip'"),
        (None, {"label_size": 10}, "class-conditional"),
        (None, {"synthesis_func": "G_synthesis_stylegan_revised"}, "configs E and F"),
        (None, {"some_new_option": 1}, "'some_new_option' is not supported"),
    ],
)
def test_unsupported_variants_give_one_line(tiny, tmp_path, change, kwargs, message):
    path = write_tf_pickle(tmp_path / "g.pkl", _variant(tf_networks(tiny, **kwargs), change))
    with pytest.raises(UnsupportedModelError, match=message) as caught:
        load_generator(path)
    assert "supported" in str(caught.value) and "\n" not in str(caught.value)


def test_missing_variable_is_named(tiny, tmp_path):
    Gs = tf_networks(tiny)
    synthesis = Gs.state["components"]["synthesis"].state
    synthesis["variables"] = [v for v in synthesis["variables"] if v[0] != "16x16/Conv1/mod_bias"]
    with pytest.raises(CheckpointError, match="missing TensorFlow variable 'synthesis/16x16/Conv1/mod_bias'"):  # fmt: skip
        load_generator(write_tf_pickle(tmp_path / "g.pkl", Gs))


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "dragfu.cli.main", *map(str, args)], capture_output=True, text=True
    )


def test_cli_convert_tf_pickle(tiny, tmp_path):
    source = write_tf_pickle(tmp_path / "stylegan2-tiny-config-f.pkl", tf_networks(tiny))
    result = _cli("convert", source, tmp_path / "tiny.safetensors")
    assert result.returncode == 0, result.stderr
    G = load_generator(tmp_path / "tiny.safetensors")
    for key, tensor in tiny.state_dict().items():
        assert torch.equal(G.state_dict()[key], tensor), key

    bad = tmp_path / "bad-config-f.pkl"
    bad.write_bytes(source.read_bytes()[: len(source.read_bytes()) // 2])
    result = _cli("convert", bad, tmp_path / "bad.safetensors")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert "bad-config-f.pkl" in result.stderr
    assert not (tmp_path / "bad.safetensors").exists()


def test_registry_says_the_tf_models_format():
    for name in ("lsun-car", "lsun-cat"):
        info = registry.MODELS[name]
        assert info.source_format == "nvidia-tf-pkl"
        assert info.source_filename.endswith("-config-f.pkl")
        assert "converted" in info.notes and "needs" not in info.notes
    assert registry.MODELS["ffhq-512"].source_format == "nvidia-pkl"
    assert math.prod(registry.MODELS["lsun-cat"].resolution) == 256 * 256
