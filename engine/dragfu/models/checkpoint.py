"""Loading and saving generators.

Formats read:
- NVIDIA's StyleGAN2 network pickles (`.pkl`), read by the restricted unpickler in
  `nvidia_pickle` (nothing in the file is executed); `G_ema` is taken.
- NVIDIA's TensorFlow-era StyleGAN2 pickles (`stylegan2-*-config-f.pkl`), recognised by their
  `dnnlib.tflib.network.Network` objects and read by `tf_pickle` (same guarantees); Gs is taken.
- rosinality's stylegan2-pytorch `.pt` checkpoints (`rosinality`).
- Ours: `NAME.safetensors` holding NVIDIA's state-dict keys, with the config (NVIDIA's
  `init_kwargs` names) both in the file's metadata and in a sidecar `NAME.json`, so that a file
  maps back to NVIDIA's classes one to one.

Rectangular generators (StyleGAN-Human, H x H/2) carry its `square=False` key in the config. The
published `stylegan_human_v2_512.pkl` does not (DragGAN adds `square=False` by the file's name),
so a config without `square` whose 4x4 constant is [C, 4, 2] is read as `square=False`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dragfu.errors import CheckpointError, UnknownModelError
from dragfu.models.nvidia_pickle import read_generator
from dragfu.models.rosinality import read_rosinality
from dragfu.models.stylegan2 import Generator
from dragfu.models.tf_pickle import is_tf_pickle, read_tf_generator

CONFIG_METADATA_KEY = "dragfu_config"
CONFIG_KEYS = {
    "z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
    "synthesis_kwargs", "channel_base", "channel_max", "num_fp16_res", "conv_clamp", "square",
}  # fmt: skip
# NVIDIA's kwargs that change nothing at inference for a StyleGAN2 'skip' generator.
IGNORED_KEYS = {"architecture", "resample_filter", "use_noise", "fp16_channels_last", "fused_modconv_default"}  # fmt: skip


def generator_from_config(config: dict[str, Any], where: str) -> Generator:
    config = dict(config)
    synthesis = dict(config.pop("synthesis_kwargs", None) or {})
    architecture = synthesis.get("architecture", config.get("architecture", "skip"))
    if architecture != "skip":
        raise CheckpointError(
            f"{where}: synthesis architecture {architecture!r}; only 'skip' is supported"
        )
    for key in IGNORED_KEYS:
        synthesis.pop(key, None)
        config.pop(key, None)
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise CheckpointError(f"{where}: unknown config keys {sorted(unknown)}")
    try:
        return Generator(**config, synthesis_kwargs=synthesis)
    except (TypeError, ValueError, NotImplementedError) as error:
        raise CheckpointError(f"{where}: invalid generator config ({error})") from None


def with_square_from_weights(config: dict, state_dict: dict[str, torch.Tensor]) -> dict:
    """The config, with `square=False` added when it says nothing and the constant is [C, 4, 2]."""
    synthesis = config.get("synthesis_kwargs")
    said = "square" in config or (isinstance(synthesis, dict) and "square" in synthesis)
    const = state_dict.get("synthesis.b4.const")
    if said or const is None:
        return config
    if const.ndim == 3 and tuple(const.shape[1:]) == (4, 2):
        return {**config, "square": False}
    return config


def build_generator(config: dict, state_dict: dict[str, torch.Tensor], where: str) -> Generator:
    G = generator_from_config(with_square_from_weights(config, state_dict), where)
    expected = G.state_dict()
    missing = [key for key in expected if key not in state_dict]
    unexpected = [key for key in state_dict if key not in expected]
    if missing or unexpected:
        first = f"missing '{missing[0]}'" if missing else f"unexpected '{unexpected[0]}'"
        raise CheckpointError(
            f"{where}: weights do not match the config ({len(missing)} missing, "
            f"{len(unexpected)} unexpected keys; {first})"
        )
    for key, tensor in expected.items():
        if tuple(state_dict[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: weights do not match the config: '{key}' has shape "
                f"{tuple(state_dict[key].shape)}, the config needs {tuple(tensor.shape)}"
            )
        if not torch.isfinite(state_dict[key].float()).all():
            raise CheckpointError(f"{where}: '{key}' holds NaN or infinite values")
    G.load_state_dict({key: value.float() for key, value in state_dict.items()})
    return G.eval().requires_grad_(False)


def sidecar_config_path(path: Path) -> Path:
    return path.with_suffix(".json")


def load_safetensors_generator(path: Path) -> Generator:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as file:
            metadata = file.metadata() or {}
        state_dict = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from None
    sidecar = sidecar_config_path(path)
    if sidecar.exists():
        try:
            document = json.loads(sidecar.read_text())
        except (OSError, ValueError) as error:
            raise CheckpointError(f"{sidecar}: not readable JSON ({error})") from None
        config = document.get("init_kwargs", document)
    elif CONFIG_METADATA_KEY in metadata:
        config = json.loads(metadata[CONFIG_METADATA_KEY])
    else:
        raise CheckpointError(f"{path}: no generator config (neither {sidecar.name} nor metadata)")
    return build_generator(config, state_dict, str(path))


def load_pickle_generator(path: Path) -> Generator:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror})") from None
    if is_tf_pickle(data):
        config, state_dict = read_tf_generator(str(path), data)
        return build_generator(config, state_dict, str(path))
    network = read_generator(str(path), data)
    return build_generator(network.init_kwargs, network.state_dict, str(path))


def resolve_model_path(path_or_name: str | os.PathLike) -> Path:
    """A file path as given, or a model name looked up in the registry."""
    path = Path(path_or_name).expanduser()
    if (
        path.suffix in (".pkl", ".safetensors", ".pt")
        or path.exists()
        or os.sep in str(path_or_name)
    ):
        if not path.exists():
            raise CheckpointError(f"{path}: no such model file")
        return path
    try:
        from dragfu.models import registry
    except ImportError:  # registry not installed in this build
        raise UnknownModelError(f"unknown model {str(path_or_name)!r}") from None
    return registry.resolve(str(path_or_name))


def load_generator(
    path_or_name: str | os.PathLike, device: str | torch.device = "cpu"
) -> Generator:
    """Load a generator from an NVIDIA `.pkl` (PyTorch or TensorFlow-era), our `.safetensors`, a
    rosinality `.pt`, or a registry model name."""
    path = resolve_model_path(path_or_name)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a model file")
    if path.suffix == ".pkl":
        G = load_pickle_generator(path)
    elif path.suffix == ".safetensors":
        G = load_safetensors_generator(path)
    elif path.suffix == ".pt":
        config, state_dict = read_rosinality(path)
        G = build_generator(config, state_dict, str(path))
    else:
        raise CheckpointError(f"{path}: unknown model format (expected .pkl, .safetensors or .pt)")
    G.source_path = path
    return G.to(device)


def save_generator(G: Generator, path: str | os.PathLike) -> Path:
    """Write `path` (.safetensors, config in its metadata) and the sidecar JSON config."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    config = G.init_kwargs
    state_dict = {
        key: value.detach().float().contiguous().cpu() for key, value in G.state_dict().items()
    }
    save_file(state_dict, str(path), metadata={CONFIG_METADATA_KEY: json.dumps(config)})
    document = {"format": "dragfu-stylegan2", "num_ws": G.num_ws, "init_kwargs": config}
    sidecar_config_path(path).write_text(json.dumps(document, indent=2) + "\n")
    return path


def convert_checkpoint(source: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """NVIDIA `.pkl` (PyTorch or TensorFlow-era), rosinality `.pt` (or ours) -> our safetensors +
    JSON."""
    return save_generator(load_generator(Path(source)), destination)
