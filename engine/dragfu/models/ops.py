"""Low-level ops of StyleGAN2: FIR resampling and fused bias + activation.

Written from the paper's description (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN") and NVIDIA's documented numerics, in plain PyTorch so that it runs on
CUDA, MPS and CPU alike and autograd handles the backward pass.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)


def fir_filter(taps: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)) -> torch.Tensor:
    """The separable low-pass filter [1,3,3,1] as a 2-D kernel normalised to sum 1.  [4, 4]"""
    f = torch.tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def fir_convolve(x: torch.Tensor, f: torch.Tensor, pad: tuple[int, int, int, int], gain: float):
    """Pad (x0, x1, y0, y1; negative crops) and convolve every channel with the 2-D FIR `f`.

    The filter is flipped so this is a true convolution; [1,3,3,1] is symmetric anyway.
    """
    channels = x.shape[1]
    x = F.pad(x, list(pad))
    kernel = (f * gain).flip([0, 1]).to(x.dtype)
    kernel = kernel[None, None].expand(channels, 1, *f.shape)
    return F.conv2d(x, kernel, groups=channels)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x up-sampling: zero insertion, then the FIR with gain 4 (keeps the mean).  [N,C,H,W] -> [N,C,2H,2W]"""
    n, c, h, w = x.shape
    up = x.new_zeros(n, c, h, 2, w, 2)
    up[:, :, :, 0, :, 0] = x
    up = up.reshape(n, c, 2 * h, 2 * w)
    taps = f.shape[0]
    pad_before, pad_after = (taps + 1) // 2, (taps - 2) // 2  # 2, 1 for 4 taps
    return fir_convolve(up, f, (pad_before, pad_after, pad_before, pad_after), gain=4.0)


def conv2d_up2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor, groups: int = 1):
    """3x3 convolution at twice the resolution: stride-2 transposed conv, then the FIR blur.

    x: [N, I*groups, H, W]; weight: [O*groups, I, k, k] (conv2d layout) -> [N, O*groups, 2H, 2W].
    The transposed conv gives 2H + k - 2 pixels; the FIR (padding k-2 on each side, gain 4)
    trims it back to 2H.
    """
    out_per_group, in_per_group, kh, kw = weight.shape
    out_per_group //= groups
    # conv_transpose2d wants [in, out/groups, k, k] and scatters rather than gathers, so the
    # kernel is not flipped: this matches the cross-correlation convention of the 1x layers.
    w = weight.reshape(groups, out_per_group, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_per_group, kh, kw)
    x = F.conv_transpose2d(x, w, stride=2, groups=groups)
    taps = f.shape[0]
    pad0 = kw // 2 + (taps + 1) // 2 - (kw - 1)  # 1 for 4 taps and a 3x3 kernel
    pad1 = kw // 2 + (taps - 2) // 2 - (kw - 2)  # 1
    return fir_convolve(x, f, (pad0, pad1, pad0, pad1), gain=4.0)


def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    activation: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """x + bias (along dim 1), activation, times gain, then clamp to [-clamp, clamp]."""
    if bias is not None:
        x = x + bias.reshape([1, -1] + [1] * (x.ndim - 2)).to(x.dtype)
    if activation == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
        gain = LRELU_GAIN if gain is None else gain
    elif activation != "linear":
        raise ValueError(f"unknown activation {activation!r}")
    if gain is not None and gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
