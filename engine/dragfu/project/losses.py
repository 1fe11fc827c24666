"""Losses and quality numbers for projection: perceptual (LPIPS or fallback), SSIM, PSNR, noise regulariser.

Perceptual loss, chosen by `ProjectSettings.perceptual`:
- "lpips": LPIPS-VGG16. Looked for, in order: the file named by `DRAGFU_LPIPS`; `vgg16.pt` in the models
  folder (`dragfu.paths.models_dir()`; registry entry "lpips-vgg16"), i.e. NVIDIA's TorchScript module
  from their stylegan2-ada-pytorch metrics download, called as `net(img_0_255, resize_images=False,
  return_lpips=True)` -> normalised features whose squared distance is LPIPS; last, the `lpips` package
  when it is installed and torchvision's VGG16 weights are already in the torch hub cache.
- "fallback" (no download): on an image pyramid (full, 1/2, 1/4, 1/8 size), weighted L1 + (1 - SSIM,
  7x7 uniform window) + L1 of the image gradients. L1 and SSIM hold colours and local structure; the gradient term keeps
  edges sharp, which is most of what LPIPS adds for the projection of simple scenes.
- "auto" (default): LPIPS when found, else the fallback.

A weight mask (pixels that matter, in [0, 1]) weights every term; for the LPIPS network, which has no
per-pixel weights, the image is blended towards the target where the weight is low, so those pixels
contribute no difference.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dragfu.errors import BadInputError

TargetLoss = Callable[[torch.Tensor], torch.Tensor]  # image [N, 3, H, W] in [-1, 1] -> scalar


# ---------------------------------------------------------------------------------------------------
# SSIM (Wang et al. 2004: Gaussian window 11, sigma 1.5, K1 = 0.01, K2 = 0.03)


def _gaussian_kernel(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    kernel = torch.exp(-(coords**2) / (2 * sigma**2))
    return kernel / kernel.sum()


def _blur(x: torch.Tensor, kernel: torch.Tensor, pad: bool) -> torch.Tensor:
    # Separable Gaussian per channel; `pad` (reflect) keeps the size so maps align with weights.
    channels, size = x.shape[1], kernel.numel()
    if pad:
        x = F.pad(x, [size // 2] * 4, mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)


def ssim_map(
    x: torch.Tensor, y: torch.Tensor, *, data_range: float, pad: bool, window: int = 11
) -> torch.Tensor:
    """Per-pixel, per-channel SSIM of [N, C, H, W] images; `pad=False` is the standard valid region."""
    smallest = min(x.shape[-2:])
    window = max(1, min(window, smallest if smallest % 2 else smallest - 1))  # odd, fits the image
    kernel = _gaussian_kernel(window, 1.5 * window / 11, x.device).to(x.dtype)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _blur(x, kernel, pad), _blur(y, kernel, pad)
    var_x = _blur(x * x, kernel, pad) - mu_x**2
    var_y = _blur(y * y, kernel, pad) - mu_y**2
    cov = _blur(x * y, kernel, pad) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )


def ssim(a: np.ndarray, b: np.ndarray, weight: np.ndarray | None = None) -> float:
    """SSIM of two uint8 RGB images [H, W, 3] (mean over channels and the valid region; weighted)."""
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].double() / 255
    y = torch.from_numpy(np.ascontiguousarray(b)).permute(2, 0, 1)[None].double() / 255
    values = ssim_map(x, y, data_range=1.0, pad=False).mean(dim=1)[0]  # [H', W']
    if weight is None:
        return float(values.mean())
    crop_y = (a.shape[0] - values.shape[0]) // 2
    crop_x = (a.shape[1] - values.shape[1]) // 2
    w = torch.from_numpy(np.asarray(weight, dtype=np.float64))
    w = w[crop_y : crop_y + values.shape[0], crop_x : crop_x + values.shape[1]]
    if float(w.sum()) <= 0:
        return float(values.mean())
    return float((values * w).sum() / w.sum())


def psnr(a: np.ndarray, b: np.ndarray, weight: np.ndarray | None = None) -> float:
    """PSNR in dB of two uint8 images (weighted mean squared error when `weight` [H, W] is given)."""
    error = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if error.ndim == 3:
        error = error.mean(axis=2)
    if weight is not None and float(np.sum(weight)) > 0:
        mse = float((error * weight).sum() / np.sum(weight))
    else:
        mse = float(error.mean())
    if mse <= 0:
        return float("inf")
    return 10 * math.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------------------------------
# Fallback perceptual loss (no download)


def _weighted_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    # values [N, C, H, W]; weight [N, 1, H, W] or None
    if weight is None:
        return values.mean()
    return (values * weight).sum() / (weight.sum() * values.shape[1]).clamp_min(1e-8)


class FallbackPerceptualLoss:
    """Multi-scale L1 + (1 - SSIM) + gradient L1 against a fixed target (see the module doc)."""

    def __init__(
        self,
        target: torch.Tensor,
        weight: torch.Tensor | None = None,
        *,
        levels: int = 4,
        l1_weight: float = 1.0,
        ssim_weight: float = 1.0,
        gradient_weight: float = 1.0,
    ):
        self.l1_weight, self.ssim_weight, self.gradient_weight = (
            l1_weight,
            ssim_weight,
            gradient_weight,
        )
        self.levels = max(1, min(levels, int(math.log2(max(min(target.shape[-2:]) // 8, 1))) + 1))
        self.targets: list[torch.Tensor] = []
        self.weights: list[torch.Tensor | None] = []
        self.target_stats: list[tuple[torch.Tensor, torch.Tensor]] = []  # local mean, variance
        t, w = target.detach(), None if weight is None else weight.detach()
        for _ in range(self.levels):
            self.targets.append(t)
            self.weights.append(w)
            mean = _box(t)
            self.target_stats.append((mean, _box(t * t) - mean**2))
            t = F.avg_pool2d(t, 2)
            w = None if w is None else F.avg_pool2d(w, 2)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        total = image.new_zeros(())
        x = image
        for level, (t, w) in enumerate(zip(self.targets, self.weights, strict=True)):
            if level:
                x = F.avg_pool2d(x, 2)
            total = total + self.l1_weight * _weighted_mean((x - t).abs(), w)
            if self.ssim_weight:
                s = self._ssim(x, t, *self.target_stats[level])
                total = total + self.ssim_weight * _weighted_mean(1 - s, w)
            if self.gradient_weight:
                gx = (x[..., :, 1:] - x[..., :, :-1]) - (t[..., :, 1:] - t[..., :, :-1])
                gy = (x[..., 1:, :] - x[..., :-1, :]) - (t[..., 1:, :] - t[..., :-1, :])
                wx = None if w is None else torch.minimum(w[..., :, 1:], w[..., :, :-1])
                wy = None if w is None else torch.minimum(w[..., 1:, :], w[..., :-1, :])
                total = total + self.gradient_weight * 0.5 * (
                    _weighted_mean(gx.abs(), wx) + _weighted_mean(gy.abs(), wy)
                )
        return total / self.levels

    @staticmethod
    def _ssim(x, t, mean_t, var_t) -> torch.Tensor:
        # SSIM with a 7x7 uniform window (scikit-image's default), on [-1, 1] images: a box filter
        # is several times cheaper than the Gaussian one and the target's statistics are fixed.
        c1, c2 = (0.01 * 2.0) ** 2, (0.03 * 2.0) ** 2
        mean_x = _box(x)
        var_x = _box(x * x) - mean_x**2
        cov = _box(x * t) - mean_x * mean_t
        return ((2 * mean_x * mean_t + c1) * (2 * cov + c2)) / (
            (mean_x**2 + mean_t**2 + c1) * (var_x + var_t + c2)
        )


def _box(x: torch.Tensor, size: int = 7) -> torch.Tensor:
    """Local mean over a size x size window, same size out (the window shrinks at the borders)."""
    smallest = min(x.shape[-2:])
    size = max(1, min(size, smallest if smallest % 2 else smallest - 1))  # odd, fits the image
    return F.avg_pool2d(x, size, stride=1, padding=size // 2, count_include_pad=False)


# ---------------------------------------------------------------------------------------------------
# LPIPS


def models_dir() -> Path:
    """The models folder (`dragfu.paths.models_dir`: `DRAGFU_MODELS_DIR`, `DRAGFU_HOME`, or the user
    data folder's `models/`), where the installer puts `vgg16.pt` (registry entry "lpips-vgg16")."""
    from dragfu import paths

    return paths.models_dir()


def find_lpips_weights() -> Path | None:
    """The LPIPS TorchScript file: `DRAGFU_LPIPS`, else `vgg16.pt` in `models_dir()`; None if absent."""
    explicit = os.environ.get("DRAGFU_LPIPS")
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise BadInputError(f"DRAGFU_LPIPS names a file that does not exist: {path}")
        return path
    candidate = models_dir() / "vgg16.pt"
    return candidate if candidate.is_file() else None


_SCRIPT_CACHE: dict[tuple[str, float, str], torch.jit.ScriptModule] = {}


def load_lpips_script(path: Path, device: torch.device) -> torch.jit.ScriptModule:
    key = (str(path), path.stat().st_mtime, str(device))
    if key not in _SCRIPT_CACHE:
        try:
            net = torch.jit.load(str(path), map_location=device)
        except Exception as error:  # a torn download, an HTML page saved as .pt, ...
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise BadInputError(
                f"cannot load LPIPS weights {path}: {reason}",
                hint="delete the file and run the installer again, or unset DRAGFU_LPIPS",
            ) from None
        _SCRIPT_CACHE.clear()  # one network at a time is plenty
        _SCRIPT_CACHE[key] = net.eval()
    return _SCRIPT_CACHE[key]


LPIPS_MAX_SIDE = 256


def lpips_size(height: int, width: int) -> tuple[int, int]:
    """(height, width) at which the LPIPS network compares images: as NVIDIA's projector, at most
    256 on a side (a 1024x1024 image at 256x256), keeping the aspect ratio (a 512 high x 256 wide
    image at 256 x 128); smaller images as they are."""
    longer = max(height, width)
    if longer <= LPIPS_MAX_SIDE:
        return int(height), int(width)
    scale = LPIPS_MAX_SIDE / longer
    return max(1, round(height * scale)), max(1, round(width * scale))


class LpipsScriptLoss:
    """LPIPS with NVIDIA's TorchScript VGG16: squared distance of its normalised features."""

    def __init__(
        self, net: torch.jit.ScriptModule, target: torch.Tensor, weight: torch.Tensor | None
    ):
        self.net = net
        self.target = target.detach()
        self.weight = None if weight is None else weight.detach()
        with torch.no_grad():
            self.target_features = self.features(self.target)

    def features(self, image: torch.Tensor) -> torch.Tensor:
        x = (image + 1) * 127.5  # the network expects [0, 255]
        size = lpips_size(x.shape[-2], x.shape[-1])
        if size != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=size, mode="area")
        return self.net(x, resize_images=False, return_lpips=True)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            image = self.weight * image + (1 - self.weight) * self.target
        return (self.features(image) - self.target_features).square().sum(dim=1).mean()


class LpipsPackageLoss:
    """LPIPS through the `lpips` package (its linear heads + torchvision's VGG16)."""

    def __init__(self, target: torch.Tensor, weight: torch.Tensor | None):
        import lpips  # optional dependency: only reached when installed and its weights are present

        self.net = lpips.LPIPS(net="vgg", verbose=False).to(target.device).eval()
        self.net.requires_grad_(False)
        self.target = target.detach()
        self.weight = None if weight is None else weight.detach()

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.weight is not None:
            image = self.weight * image + (1 - self.weight) * self.target
        return self.net(image, self.target).mean()


def _lpips_package_ready() -> bool:
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    return any(checkpoints.glob("vgg16-*.pth"))


def perceptual_kind(requested: str) -> str:
    """Which loss `requested` ("auto", "lpips", "fallback") resolves to on this machine."""
    if requested == "fallback":
        return "fallback"
    if find_lpips_weights() is not None:
        return "lpips-script"
    if _lpips_package_ready():
        return "lpips-package"
    if requested == "lpips":
        raise BadInputError(
            "LPIPS weights not found",
            hint=f"put NVIDIA's vgg16.pt in {models_dir()} or set DRAGFU_LPIPS; "
            "or use the fallback loss",
        )
    return "fallback"


def make_perceptual_loss(
    requested: str, target: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[TargetLoss, str]:
    """A loss bound to `target` [1, 3, H, W] in [-1, 1] (and weight [1, 1, H, W]); returns (loss, kind)."""
    kind = perceptual_kind(requested)
    if kind == "lpips-script":
        net = load_lpips_script(find_lpips_weights(), target.device)  # type: ignore[arg-type]
        return LpipsScriptLoss(net, target, weight), kind
    if kind == "lpips-package":
        return LpipsPackageLoss(target, weight), kind
    return FallbackPerceptualLoss(target, weight), kind


def weighted_mse(
    image: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None
) -> torch.Tensor:
    return _weighted_mean((image - target).square(), weight)


# ---------------------------------------------------------------------------------------------------
# Noise regulariser


def noise_autocorrelation(noise_maps: list[torch.Tensor]) -> torch.Tensor:
    """Multi-scale autocorrelation penalty that keeps optimised noise maps noise-like.

    For each map and each level of its pyramid (halving down to 8x8), the squared mean product of the
    map with itself shifted by one pixel, across and down: zero for white noise, large when the
    optimiser hides image structure in the noise.
    """
    total = noise_maps[0].new_zeros(())
    for noise in noise_maps:
        x = noise.reshape(1, 1, *noise.shape[-2:])
        while True:
            total = (
                total + (x * x.roll(1, dims=3)).mean() ** 2 + (x * x.roll(1, dims=2)).mean() ** 2
            )
            if min(x.shape[-2:]) <= 8:
                break
            x = F.avg_pool2d(x, 2)
    return total
