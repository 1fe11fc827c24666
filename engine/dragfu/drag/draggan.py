"""The two halves of DragGAN (Pan et al., SIGGRAPH 2023) on a feature map.

Motion supervision pulls the features a step ahead of each handle towards the handle's current
features, so that the generator moves the content by that step; point tracking then finds where
each handle went by nearest-neighbour search of its feature template.

Points are image coordinates (x, y) in pixels of the generator's output, continuous, pixel (i, j)
centred at (i + 0.5, j + 0.5). Feature maps have their own resolution; they are sampled
bilinearly at image coordinates, which `grid_sample(align_corners=False)` does exactly when
u = 2 x / W - 1, v = 2 y / H - 1 for an image W wide and H high. `image_size` is S for a square
S x S image or (W, H) for a rectangular one (StyleGAN-Human).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ImageSize = int | tuple[int, int]


def width_height(image_size: ImageSize) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)


def clamp_to_image(points: torch.Tensor, image_size: ImageSize) -> torch.Tensor:
    width, height = width_height(image_size)
    return torch.stack(
        [points[..., 0].clamp(0.0, float(width)), points[..., 1].clamp(0.0, float(height))], -1
    )


def sample_features(
    features: torch.Tensor, points: torch.Tensor, image_size: ImageSize
) -> torch.Tensor:
    """Bilinear samples of `features` [1, C, h, w] at image points [..., 2] -> [..., C]."""
    width, height = width_height(image_size)
    scale = torch.tensor([2.0 / width, 2.0 / height], device=points.device, dtype=points.dtype)
    grid = points * scale - 1.0
    flat = grid.reshape(1, 1, -1, 2).to(features.dtype)
    sampled = F.grid_sample(
        features, flat, mode="bilinear", padding_mode="border", align_corners=False
    )
    return sampled[0, :, 0].t().reshape(*points.shape[:-1], features.shape[1])


def disk_offsets(radius: float, device: torch.device | None = None) -> torch.Tensor:
    """Integer offsets (dx, dy) with dx^2 + dy^2 <= radius^2.  [Q, 2]"""
    extent = int(radius)
    axis = torch.arange(-extent, extent + 1, dtype=torch.float32, device=device)
    dy, dx = torch.meshgrid(axis, axis, indexing="ij")
    inside = dx.square() + dy.square() <= radius * radius
    return torch.stack([dx[inside], dy[inside]], dim=-1)


def square_offsets(radius: float, device: torch.device | None = None) -> torch.Tensor:
    """Integer offsets of the square [-r, r]^2, row-major.  [(2r+1)^2, 2]"""
    extent = int(radius)
    axis = torch.arange(-extent, extent + 1, dtype=torch.float32, device=device)
    dy, dx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)


def step_directions(handles: torch.Tensor, targets: torch.Tensor, bounded: bool) -> torch.Tensor:
    """Unit vectors d_i = (t_i - p_i) / |t_i - p_i|.  [K, 2]

    `bounded`: never step past the target, d_i = (t_i - p_i) / max(|t_i - p_i|, 1), so the last
    sub-pixel approach does not overshoot (the published method always steps a full pixel).
    """
    delta = targets - handles
    length = delta.norm(dim=-1, keepdim=True)
    return delta / (length.clamp(min=1.0) if bounded else length.clamp(min=1e-8))


def motion_supervision(
    features: torch.Tensor,  # [1, C, R, R], differentiable w.r.t. the latent
    handles: torch.Tensor,  # [K, 2] current handle positions
    directions: torch.Tensor,  # [K, 2] step for each handle (zero rows: handle already done)
    active: torch.Tensor,  # [K] bool: handles still farther than the stop distance
    radius: float,
    image_size: ImageSize,
) -> torch.Tensor:
    """sum_i mean_{q in disk(p_i, r1)} | F(q).detach() - F(q + d_i) |_1"""
    if not bool(active.any()):
        return features.sum() * 0.0
    disk = disk_offsets(radius, handles.device)  # [Q, 2]
    q = handles[active, None, :] + disk[None]  # [K', Q, 2]
    shifted = q + directions[active, None, :]
    here = sample_features(features, q, image_size).detach()  # [K', Q, C]
    ahead = sample_features(features, shifted, image_size)
    return (ahead - here).abs().mean(dim=(1, 2)).sum()


def fixed_region_loss(
    features: torch.Tensor,  # [1, C, R, R]
    initial_features: torch.Tensor,  # [1, C, R, R]
    fixed_weight: torch.Tensor,  # [1, 1, R, R]: 1 where the image must not change
) -> torch.Tensor:
    """| (F - F0) * (1 - M) |_1 (mean over the map), M = movable region."""
    return ((features - initial_features) * fixed_weight).abs().mean()


def track_points(
    features: torch.Tensor,  # [1, C, R, R] after the latest update
    templates: torch.Tensor,  # [K, C]: each handle's feature f_i
    handles: torch.Tensor,  # [K, 2]
    radius: float,
    image_size: ImageSize,
    subpixel: bool = False,
) -> torch.Tensor:
    """New handle positions: the nearest neighbour (L1) of f_i in the square of radius r2.

    Candidates lie on the image's pixel grid around each handle. `subpixel` refines the best
    candidate by fitting a parabola to the distances of its neighbours along x and y, so
    handles are not confined to whole pixels (what lets a drag on a small image converge). An
    exact match (distance 0: nothing moved there) stays where it is: the L1 distance is V-shaped
    and lopsided wherever the features are, so a parabola through its neighbours would put the
    vertex up to half a pixel off, and a handle on an unchanging image would creep every step.
    (A search for the true minimum instead, 3 x 3 at half, quarter and eighth pixel spacing, was
    measured and not kept: docs/benchmarks.md, "Sub-pixel tracking".)
    """
    square = square_offsets(radius, handles.device)  # [S, 2]
    side = 2 * int(radius) + 1
    candidates = clamp_to_image(handles[:, None, :] + square[None], image_size)  # [K, S, 2]
    sampled = sample_features(features, candidates, image_size)  # [K, S, C]
    distance = (sampled - templates[:, None, :].to(sampled.dtype)).abs().sum(dim=-1)  # [K, S]
    best = distance.argmin(dim=-1)  # [K]
    found = candidates[torch.arange(len(handles)), best]
    if not subpixel:
        return found
    grid = distance.reshape(-1, side, side)
    row, col = best // side, best % side
    refined = found.clone()
    for k in range(len(handles)):
        r, c = int(row[k]), int(col[k])
        if float(grid[k, r, c]) <= 0.0:
            continue  # an exact match
        if 0 < c < side - 1:
            refined[k, 0] += parabola_vertex(grid[k, r, c - 1], grid[k, r, c], grid[k, r, c + 1])
        if 0 < r < side - 1:
            refined[k, 1] += parabola_vertex(grid[k, r - 1, c], grid[k, r, c], grid[k, r + 1, c])
    return clamp_to_image(refined, image_size)


def parabola_vertex(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor) -> float:
    """Offset in (-0.5, 0.5) of the minimum of the parabola through (-1, l), (0, c), (1, r)."""
    curvature = float(left - 2 * centre + right)
    if curvature <= 1e-12:
        return 0.0
    return max(-0.5, min(0.5, 0.5 * float(left - right) / curvature))
