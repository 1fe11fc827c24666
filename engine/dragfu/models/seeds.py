"""Latents from seeds, exactly as NVIDIA's tools derive them, and image conversion."""

from __future__ import annotations

import numpy as np
import torch

from dragfu.models.stylegan2 import Generator

# One default truncation for `dragfu sample` and `dragfu drag`, so a seed means the same image in both.
DEFAULT_PSI = 0.7


def z_from_seed(seed: int, z_dim: int) -> torch.Tensor:
    """`numpy.random.RandomState(seed).randn(1, z_dim)`, as in NVIDIA's generate.py.  [1, z_dim]"""
    return torch.from_numpy(np.random.RandomState(seed).randn(1, z_dim)).float()


@torch.no_grad()
def ws_from_seed(G: Generator, seed: int, psi: float = DEFAULT_PSI, cutoff: int | None = None):
    device = G.mapping.w_avg.device
    return G.mapping(z_from_seed(seed, G.z_dim).to(device), None, psi, cutoff)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """Generator output [N or 1, 3, H, W] in ~[-1, 1] -> uint8 [H, W, 3] of the first image."""
    img = (img[0].detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    return img.permute(1, 2, 0).cpu().numpy()


def from_uint8(image: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] on the generator's scale (inverse of to_uint8)."""
    x = torch.from_numpy(np.ascontiguousarray(image[..., :3])).to(device).float()
    return ((x - 128) / 127.5).permute(2, 0, 1).unsqueeze(0)
