"""StyleGAN2 generator ("config F", skip architecture), our own implementation.

Its state dict has exactly the keys, shapes and numerics of NVIDIA's `Generator`
(stylegan2-ada-pytorch `training/networks.py`, stylegan3 `training/networks_stylegan2.py`) for the
same `init_kwargs`, so their checkpoints load here and ours load there.

Rectangular generators as StyleGAN-Human trains them (its stylegan2-ada-pytorch fork): the extra
option `square=False` makes every block R high and R/2 wide (the 4x4 constant becomes [C, 4, 2],
each noise input [R, R/2]), so the image is img_resolution x img_resolution/2 (H x W). No other
tensor changes shape; `square` (default True) keeps NVIDIA's square generator.

Reading order: equalised-lr dense layer -> mapping network (z -> w) -> modulated convolution
-> synthesis layer / to-RGB layer -> synthesis block -> synthesis network -> generator.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from dragfu.models.ops import bias_act, conv2d_up2, fir_filter, upsample2d


def normalize_2nd_moment(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=1, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Dense layer with equalised learning rate: weights stored unscaled, scaled at run time."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: str = "linear",
        lr_multiplier: float = 1.0,
        bias_init: float = 0.0,
    ):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear":
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, activation=self.activation)


class MappingNetwork(nn.Module):
    """z -> w: normalise z, then `num_layers` lrelu dense layers with lr multiplier 0.01."""

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        num_ws: int,
        num_layers: int = 8,
        layer_features: int | None = None,
        lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.998,
        **_unused: Any,
    ):
        super().__init__()
        if c_dim:
            raise NotImplementedError("class-conditional generators (c_dim > 0) are not supported")
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        layer_features = layer_features or w_dim
        features = [z_dim] + [layer_features] * (num_layers - 1) + [w_dim]
        for index in range(num_layers):
            layer = FullyConnectedLayer(
                features[index], features[index + 1], "lrelu", lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{index}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> torch.Tensor:
        """[N, z_dim] -> ws [N, num_ws, w_dim], truncated towards w_avg by psi (first `cutoff` ws)."""
        x = normalize_2nd_moment(z.to(torch.float32))
        for index in range(self.num_layers):
            x = getattr(self, f"fc{index}")(x)
        ws = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            cutoff = self.num_ws if truncation_cutoff is None else truncation_cutoff
            truncated = self.w_avg.lerp(ws[:, :cutoff], truncation_psi)
            ws = torch.cat([truncated, ws[:, cutoff:]], dim=1)
        return ws


def modulate(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """Scale each input channel of the kernel by the sample's style.  -> [N, O, I, k, k]"""
    return weight.unsqueeze(0) * styles.reshape(styles.shape[0], 1, -1, 1, 1)


def demodulate(modulated_weight: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Per-sample, per-output-channel factor that restores unit expected output variance.  [N, O]"""
    return (modulated_weight.square().sum(dim=[2, 3, 4]) + eps).rsqrt()


def modulated_conv2d(
    x: torch.Tensor,  # [N, I, H, W]
    weight: torch.Tensor,  # [O, I, k, k]
    styles: torch.Tensor,  # [N, I]
    up: bool = False,
    resample_filter: torch.Tensor | None = None,
    demodulate_weights: bool = True,
    noise: torch.Tensor | None = None,
    fused: bool = True,
) -> torch.Tensor:
    """StyleGAN2's weight (de)modulation, as one grouped convolution per batch (`fused`) or as
    input scaling + a shared convolution + output scaling; both give the same result."""
    batch, in_channels, height, width = x.shape
    out_channels, _, kh, kw = weight.shape
    w = modulate(weight.to(x.dtype), styles)
    dcoefs = demodulate(w) if demodulate_weights else None  # [N, O]

    if fused:
        if dcoefs is not None:
            w = w * dcoefs.reshape(batch, -1, 1, 1, 1)
        w = w.reshape(batch * out_channels, in_channels, kh, kw)
        x = x.reshape(1, batch * in_channels, height, width)
        x = _conv(x, w, up, resample_filter, groups=batch)
        x = x.reshape(batch, out_channels, *x.shape[2:])
        if noise is not None:
            x = x + noise
        return x

    x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
    x = _conv(x, weight.to(x.dtype), up, resample_filter, groups=1)
    if dcoefs is not None:
        x = x * dcoefs.reshape(batch, -1, 1, 1)
    if noise is not None:
        x = x + noise
    return x


def _conv(x, w, up: bool, resample_filter, groups: int):
    if up:
        return conv2d_up2(x, w, resample_filter, groups=groups)
    return nn.functional.conv2d(x, w, padding=w.shape[-1] // 2, groups=groups)


def block_size(resolution: int, square: bool = True) -> tuple[int, int]:
    """(H, W) of a block's feature maps: R x R, or R x R/2 for a rectangular generator."""
    return (resolution, resolution) if square else (resolution, resolution // 2)


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x up), per-pixel noise, bias, lrelu, clamp."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        up: bool = False,
        conv_clamp: float | None = None,
        kernel_size: int = 3,
        square: bool = True,
    ):
        super().__init__()
        self.up, self.resolution, self.conv_clamp = up, resolution, conv_clamp
        self.size = block_size(resolution, square)  # (H, W) of the output
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        )
        self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", fir_filter())
        self.register_buffer("noise_const", torch.randn(list(self.size)))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        fused: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if noise_mode == "random":
            size = (x.shape[0], 1, *self.size)
            noise = torch.randn(size, device=x.device, generator=generator) * self.noise_strength
        elif noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        x = modulated_conv2d(
            x, self.weight, styles, self.up, self.resample_filter, True, noise, fused
        )
        clamp = self.conv_clamp  # NVIDIA scales it by the layer gain, which is 1 here
        return bias_act(x, self.bias, activation="lrelu", clamp=clamp)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv to RGB, no demodulation; styles scaled by 1/sqrt(fan_in)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, conv_clamp=None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, 1, 1]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate_weights=False, fused=fused)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: (const | conv0 up x2) -> conv1 -> torgb added to the up-sampled RGB skip."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        w_dim: int,
        resolution: int,
        img_channels: int,
        conv_clamp: float | None = None,
        square: bool = True,
    ):
        super().__init__()
        self.in_channels, self.resolution = in_channels, resolution
        self.size = block_size(resolution, square)  # (H, W)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, *self.size]))  # [C, H, W]
        self.register_buffer("resample_filter", fir_filter())
        if in_channels != 0:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim, resolution, up=True, conv_clamp=conv_clamp,
                square=square,
            )  # fmt: skip
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp, square=square
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(
        self,
        x: torch.Tensor | None,
        img: torch.Tensor | None,
        ws: torch.Tensor,  # [N, num_conv + 1, w_dim]: the last one is shared with the next conv0
        noise_mode: str = "const",
        fused: bool = True,
        generator: torch.Generator | None = None,
        with_rgb: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat(ws.shape[0], 1, 1, 1)
            x = self.conv1(x, ws[:, 0], noise_mode, fused, generator)
        else:
            x = self.conv0(x, ws[:, 0], noise_mode, fused, generator)
            x = self.conv1(x, ws[:, 1], noise_mode, fused, generator)
        if not with_rgb:
            return x, None
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, ws[:, self.num_conv], fused).to(torch.float32)
        img = y if img is None else img + y
        return x, img


class SynthesisNetwork(nn.Module):
    """W+ -> image: blocks from 4x4 (4x2 if not `square`) up to img_resolution, RGB accumulated
    through skips."""

    def __init__(
        self,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        num_fp16_res: int = 0,
        conv_clamp: float | None = None,
        square: bool = True,  # StyleGAN-Human's option: False = H x H/2 images
        **_unused: Any,
    ):
        super().__init__()
        log2 = int(np.log2(img_resolution))
        if img_resolution < 4 or 2**log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        if not isinstance(square, bool):
            raise ValueError(f"square must be true or false, got {square!r}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.square = square
        self.img_height, self.img_width = block_size(img_resolution, square)
        self.num_fp16_res = num_fp16_res  # kept for the config; we compute in fp32 or autocast
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.channels = channels
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(
                in_channels, channels[res], w_dim, res, img_channels,
                conv_clamp=conv_clamp, square=square,
            )  # fmt: skip
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last block's torgb

    def block_ws(self, ws: torch.Tensor) -> dict[int, torch.Tensor]:
        """Each block's slice of W+: its convs' ws plus the next one (its torgb's)."""
        slices, index = {}, 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            slices[res] = ws.narrow(1, index, block.num_conv + block.num_torgb)
            index += block.num_conv
        return slices

    def run(
        self,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        noise_mode: str = "const",
        stop_at: int | None = None,
        fused_modconv: bool = True,
        generator: torch.Generator | None = None,
        with_rgb: bool = True,
        features_at: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Run the blocks up to resolution `stop_at` (default: all), nothing beyond.

        Returns the features [N, C, R, R] of block `features_at` (default: the last block run)
        and the RGB image accumulated so far [N, 3, R, R] (None with `with_rgb=False`, which also
        skips every to-RGB layer). Blocks are named by their height R; in a rectangular generator
        both are R/2 wide: [N, C, R, R/2], [N, 3, R, R/2].
        """
        stop_at = stop_at or self.img_resolution
        features_at = features_at or stop_at
        for res in (stop_at, features_at):
            if res not in self.block_resolutions:
                raise ValueError(
                    f"block resolution must be one of {self.block_resolutions}, got {res}"
                )
        x = img = features = None
        for res, block_ws in self.block_ws(ws).items():
            block = getattr(self, f"b{res}")
            x, img = block(x, img, block_ws, noise_mode, fused_modconv, generator, with_rgb)
            if res == features_at:
                features = x
            if res == stop_at:
                break
        return features, img

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", **kwargs) -> torch.Tensor:
        return self.run(ws, noise_mode, **kwargs)[1]


class Generator(nn.Module):
    """z -> w (mapping) -> W+ -> image (synthesis).  Constructor arguments are NVIDIA's init_kwargs.

    The image is `img_height` x `img_width`: img_resolution square, or img_resolution x
    img_resolution/2 with StyleGAN-Human's `square=False` (a top-level key in its init_kwargs,
    taken here with the synthesis options and kept in `init_kwargs` only when given).
    """

    def __init__(
        self,
        z_dim: int,
        c_dim: int,
        w_dim: int,
        img_resolution: int,
        img_channels: int = 3,
        mapping_kwargs: dict | None = None,
        synthesis_kwargs: dict | None = None,
        **flat_synthesis_kwargs: Any,
    ):
        super().__init__()
        mapping_kwargs = dict(mapping_kwargs or {})
        # stylegan2-ada nests the synthesis options, the stylegan3 repo passes them flat
        # (StyleGAN-Human's `square` comes flat in both).
        synthesis_kwargs = {**(synthesis_kwargs or {}), **flat_synthesis_kwargs}
        self.init_kwargs = {
            "z_dim": z_dim,
            "c_dim": c_dim,
            "w_dim": w_dim,
            "img_resolution": img_resolution,
            "img_channels": img_channels,
            "mapping_kwargs": mapping_kwargs,
            **synthesis_kwargs,
        }
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(w_dim, img_resolution, img_channels, **synthesis_kwargs)
        self.square = self.synthesis.square
        self.img_height, self.img_width = self.synthesis.img_height, self.synthesis.img_width
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, self.num_ws, **mapping_kwargs)

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the images: (R, R), or (R/2, R) for a rectangular generator."""
        return self.img_width, self.img_height

    def forward(
        self,
        z: torch.Tensor,
        c: torch.Tensor | None = None,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "const",
        **synthesis_kwargs: Any,
    ) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi, truncation_cutoff)
        return self.synthesis(ws, noise_mode, **synthesis_kwargs)

    @torch.no_grad()
    def mean_w(self, samples: int = 10_000, seed: int = 0) -> torch.Tensor:
        """Mean of w over sampled z: the projection's start, and w_avg for untrained models."""
        rng = torch.Generator().manual_seed(seed)
        z = torch.randn(samples, self.z_dim, generator=rng).to(self.mapping.w_avg.device)
        return self.mapping(z)[:, 0].mean(dim=0)
