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
    candidate between pixels (refine_match), so handles are not confined to whole pixels (what
    lets a drag on a small image converge).
    """
    square = square_offsets(radius, handles.device)  # [S, 2]
    candidates = clamp_to_image(handles[:, None, :] + square[None], image_size)  # [K, S, 2]
    distance = match_distance(features, templates, candidates, image_size)  # [K, S]
    found = candidates[torch.arange(len(handles)), distance.argmin(dim=-1)]
    return refine_match(features, templates, found, image_size) if subpixel else found


def match_distance(features, templates, candidates, image_size: ImageSize) -> torch.Tensor:
    """L1 distance of each handle's template to the features at its candidates.  [K, S]"""
    sampled = sample_features(features, candidates, image_size)  # [K, S, C]
    return (sampled - templates[:, None, :].to(sampled.dtype)).abs().sum(dim=-1)


# Steps of the sub-pixel search: a 3 x 3 neighbourhood at each spacing, coarse to fine.
REFINE_SPACINGS = (0.5, 0.25, 0.125)


def refine_match(features, templates, found, image_size: ImageSize) -> torch.Tensor:
    """Each match moved to the best of its 3 x 3 neighbours at half, quarter and eighth pixel
    spacing in turn (features sampled bilinearly there).  [K, 2]

    A search, not a curve fitted to the whole-pixel distances: the L1 distance is V-shaped and
    lopsided where the features are, so a fitted vertex lies off the true minimum (a handle on an
    image that did not change crept by up to half a pixel a step). The centre comes first, so a
    tie keeps the match where it is."""
    axis = torch.tensor([0.0, -1.0, 1.0], device=found.device)
    dy, dx = torch.meshgrid(axis, axis, indexing="ij")
    unit = torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)  # [9, 2], (0, 0) first
    for spacing in REFINE_SPACINGS:
        candidates = clamp_to_image(found[:, None, :] + spacing * unit[None], image_size)
        distance = match_distance(features, templates, candidates, image_size)  # [K, 9]
        found = candidates[torch.arange(len(found)), distance.argmin(dim=-1)]
    return found
