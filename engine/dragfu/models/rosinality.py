"""Read rosinality's stylegan2-pytorch checkpoints (`.pt` with `g_ema` and `latent_avg`).

That implementation computes the same network as NVIDIA's with other names and layouts; this maps
its `g_ema` state dict onto NVIDIA's keys and infers the config from the tensor shapes:
- mapping `style.{1..n}` -> `mapping.fc{0..n-1}` (both store weight / lr_mul, scale at run time);
- `input.input` [1, C, 4, 4] -> `synthesis.b4.const` [C, 4, 4];
- styled convs: `conv.weight` [1, O, I, k, k] -> `weight` [O, I, k, k] (its 1/sqrt(fan_in) scale
  is applied at run time and cancels under demodulation), `conv.modulation` -> `affine`,
  `noise.weight` [1] -> `noise_strength` [], `activate.bias` -> `bias`;
- `conv1`, `to_rgb1` -> block 4; `convs.{2i}`, `convs.{2i+1}`, `to_rgbs.{i}` -> block 2^(i+3);
- to-RGB: same 1/sqrt(fan_in) style scale as NVIDIA's; `bias` [1, 3, 1, 1] -> [3];
- `noises.noise_{j}` [1, 1, R, R] -> the layer's `noise_const` [R, R]; `latent_avg` -> `w_avg`.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import torch

from dragfu.errors import CheckpointError
from dragfu.models.ops import fir_filter


def _load(path: Path) -> dict:
    try:
        # Training checkpoints also pickle the argparse options; Namespace is plain data.
        with torch.serialization.safe_globals([argparse.Namespace]):
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for corrupt or unsafe files
        first_line = (
            str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        )
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({first_line})") from None
    if not isinstance(content, dict) or "g_ema" not in content:
        raise CheckpointError(f"{path}: a torch file without a 'g_ema' generator")
    return content


def _styled(prefix: str, source: dict, target: str, out: dict) -> None:
    out[f"{target}.weight"] = source[f"{prefix}.conv.weight"][0]
    out[f"{target}.affine.weight"] = source[f"{prefix}.conv.modulation.weight"]
    out[f"{target}.affine.bias"] = source[f"{prefix}.conv.modulation.bias"]
    out[f"{target}.noise_strength"] = source[f"{prefix}.noise.weight"].reshape([])
    out[f"{target}.bias"] = source[f"{prefix}.activate.bias"]
    out[f"{target}.resample_filter"] = fir_filter()


def _to_rgb(prefix: str, source: dict, target: str, out: dict) -> None:
    out[f"{target}.weight"] = source[f"{prefix}.conv.weight"][0]
    out[f"{target}.affine.weight"] = source[f"{prefix}.conv.modulation.weight"]
    out[f"{target}.affine.bias"] = source[f"{prefix}.conv.modulation.bias"]
    out[f"{target}.bias"] = source[f"{prefix}.bias"].reshape(-1)


def convert_state_dict(
    source: dict, latent_avg: torch.Tensor | None, where: str
) -> tuple[dict, dict]:
    """rosinality `g_ema` state dict -> (NVIDIA init_kwargs, NVIDIA state dict)."""
    try:
        mapping_layers = sorted(
            int(m.group(1)) for k in source if (m := re.fullmatch(r"style\.(\d+)\.weight", k))
        )
        w_dim, z_dim = source["style.1.weight"].shape
        const = source["input.input"][0]
        conv_count = len({k.split(".")[1] for k in source if k.startswith("convs.")})
        resolution = 4 * 2 ** (conv_count // 2)
        out: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(mapping_layers):
            out[f"mapping.fc{index}.weight"] = source[f"style.{layer}.weight"]
            out[f"mapping.fc{index}.bias"] = source[f"style.{layer}.bias"]
        out["mapping.w_avg"] = (
            latent_avg if latent_avg is not None else torch.zeros(w_dim)
        ).reshape(-1)
        out["synthesis.b4.const"] = const
        out["synthesis.b4.resample_filter"] = fir_filter()
        _styled("conv1", source, "synthesis.b4.conv1", out)
        out["synthesis.b4.conv1.noise_const"] = source["noises.noise_0"][0, 0]
        _to_rgb("to_rgb1", source, "synthesis.b4.torgb", out)
        channels = {4: const.shape[0]}
        for block in range(conv_count // 2):
            res = 8 * 2**block
            prefix = f"synthesis.b{res}"
            out[f"{prefix}.resample_filter"] = fir_filter()
            _styled(f"convs.{2 * block}", source, f"{prefix}.conv0", out)
            _styled(f"convs.{2 * block + 1}", source, f"{prefix}.conv1", out)
            out[f"{prefix}.conv0.noise_const"] = source[f"noises.noise_{2 * block + 1}"][0, 0]
            out[f"{prefix}.conv1.noise_const"] = source[f"noises.noise_{2 * block + 2}"][0, 0]
            _to_rgb(f"to_rgbs.{block}", source, f"{prefix}.torgb", out)
            channels[res] = out[f"{prefix}.conv1.weight"].shape[0]
    except (KeyError, IndexError, ValueError) as error:
        raise CheckpointError(
            f"{where}: not a rosinality StyleGAN2 generator (missing {error})"
        ) from None
    channel_max = max(channels.values())
    channel_base = channels[resolution] * resolution
    if any(min(channel_base // r, channel_max) != c for r, c in channels.items()):
        raise CheckpointError(
            f"{where}: channel counts {channels} fit no channel_base/channel_max config"
        )
    config = {
        "z_dim": int(z_dim), "c_dim": 0, "w_dim": int(w_dim), "img_resolution": resolution,
        "img_channels": 3, "channel_base": channel_base, "channel_max": channel_max,
        "conv_clamp": None, "mapping_kwargs": {"num_layers": len(mapping_layers)},
    }  # fmt: skip
    if 2 ** int(math.log2(resolution)) != resolution:
        raise CheckpointError(f"{where}: inferred resolution {resolution} is not a power of two")
    return config, out


def read_rosinality(path: Path) -> tuple[dict, dict]:
    content = _load(path)
    latent_avg = content.get("latent_avg")
    return convert_state_dict(content["g_ema"], latent_avg, str(path))
