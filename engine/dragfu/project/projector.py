"""GAN inversion: project an existing image into a StyleGAN2 generator (W, W+, pivotal tuning).

Stages (each skipped when its step count is 0):
1. W: one latent w for every layer, from the mean of sampled w's, optimised with Adam under a
   learning-rate schedule (linear ramp-up, cosine ramp-down) while a ramped-down Gaussian noise on w
   explores around it; the generator's constant noise maps are optimised with it, kept noise-like by
   the multi-scale autocorrelation regulariser (the recipe of Karras et al., StyleGAN2 sec. 5).
2. W+: one w per layer, from the W result (more freedom: closer reconstructions, less editable;
   off by default, since tuning closes the gap and drags on a W+ pivot tear more often).
3. Pivotal tuning (Roich et al., "Pivotal Tuning for Latent-based Editing of Real Images"): the latent
   is now a fixed pivot and the synthesis weights of a copy of the generator are fine-tuned (pixel L2 +
   perceptual loss) until the generator reproduces the image there; PTI's optional locality
   regulariser keeps the copy's output unchanged at codes away from the pivot, where a drag goes.

The result keeps the W+ latent, the tuned generator (a copy; the input generator is never changed),
and the compact difference of its weights, which `save_projection` stores.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from dragfu.errors import BadInputError, CancelledError
from dragfu.imageio import as_rgb_uint8, resize_image, resize_weight
from dragfu.models.seeds import to_uint8
from dragfu.project.losses import (
    make_perceptual_loss,
    noise_autocorrelation,
    psnr,
    ssim,
    weighted_mse,
)
from dragfu.project.settings import ProjectSettings, settings_for


@dataclass(frozen=True)
class ProjectProgress:
    """What the progress callback receives after every optimisation step."""

    stage: str  # "w", "w+" or "tune"
    step: int  # 1-based, within the stage
    total: int  # the stage's step count
    loss: float


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


ProgressCallback = Callable[[ProjectProgress], Any]


@dataclass
class StageResult:
    seconds: float
    psnr: float
    ssim: float
    steps: int  # steps run (pivotal tuning may stop early)
    loss: float

    def to_dict(self) -> dict[str, float | int]:
        return {
            "seconds": round(self.seconds, 3),
            "psnr": round(self.psnr, 3),
            "ssim": round(self.ssim, 4),
            "steps": self.steps,
            "loss": round(self.loss, 6),
        }


@dataclass
class Projection:
    ws: torch.Tensor  # [1, num_ws, w_dim] float32, on the CPU
    generator: torch.nn.Module  # what to drag with: the tuned copy, or the input G when unchanged
    tuned_delta: dict[
        str, torch.Tensor
    ]  # state-dict name -> (tuned - original), changed tensors only
    reconstruction: np.ndarray  # uint8 [H, W, 3] at the model's image size
    psnr: float  # against the (resampled) input, weighted by the mask when there is one
    ssim: float
    seconds: float
    stages: dict[str, StageResult] = field(default_factory=dict)
    model_sha256: str = ""
    settings: ProjectSettings = field(default_factory=ProjectSettings)
    perceptual: str = "fallback"  # the loss used: "fallback", "lpips-script" or "lpips-package"
    target: np.ndarray | None = None  # uint8 [H, W, 3]: the input resampled to the model's size
    cached: bool = (
        False  # True when it came from the projection cache (then `seconds` = lookup time)
    )

    def quality(self) -> dict[str, Any]:
        """The numbers `dragfu project --json` prints."""
        return {
            "psnr": round(self.psnr, 3),
            "ssim": round(self.ssim, 4),
            "seconds": round(self.seconds, 3),
            "stages": {name: stage.to_dict() for name, stage in self.stages.items()},
            "perceptual": self.perceptual,
            "cached": self.cached,
        }


# ---------------------------------------------------------------------------------------------------
# Helpers shared with save/load and the cache


# Fingerprints by generator, with the (storage, version counter) of every tensor they were computed
# from: any in-place change bumps a version counter, so a stale fingerprint is never returned.
_FINGERPRINTS: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, str]]
_FINGERPRINTS = weakref.WeakKeyDictionary()


def model_fingerprint(G: torch.nn.Module) -> str:
    """sha256 of the generator's weights (every state-dict tensor, in name order).

    It identifies the model whatever file format it came from (a pickle and its safetensors
    conversion give the same fingerprint), so it is what the cache key and saved latents record.
    """
    state = sorted(G.state_dict().items())
    signature = tuple(
        (name, t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for name, t in state
    )
    known = _FINGERPRINTS.get(G)
    if known is not None and known[0] == signature:
        return known[1]
    digest = hashlib.sha256()
    for name, tensor in state:
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    fingerprint = digest.hexdigest()
    _FINGERPRINTS[G] = (signature, fingerprint)
    return fingerprint


def apply_delta(G: torch.nn.Module, delta: dict[str, torch.Tensor]) -> torch.nn.Module:
    """A copy of G with `delta` added to its state-dict tensors (G itself when delta is empty)."""
    if not delta:
        return G
    state = G.state_dict()
    for name, difference in delta.items():
        if name not in state:
            raise BadInputError(f"tuned weights name a tensor the model does not have: {name}")
        if tuple(state[name].shape) != tuple(difference.shape):
            raise BadInputError(
                f"tuned weights for {name} have shape {list(difference.shape)}, "
                f"the model has {list(state[name].shape)}"
            )
    tuned = copy.deepcopy(G)
    tuned_state = tuned.state_dict()  # shares storage with the copy's parameters and buffers
    with torch.no_grad():
        for name, difference in delta.items():
            target = tuned_state[name]
            target.copy_(state[name] + difference.to(device=target.device, dtype=target.dtype))
    return tuned.eval().requires_grad_(False)


def prepare_target(
    G: torch.nn.Module,
    image: np.ndarray,
    weight_mask: np.ndarray | None,
    use_alpha: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Input image (any size/mode) -> (RGB uint8 [H, W, 3], weight float32 [H, W] or None), at the
    model's image size (`G.image_size`: R x R, or R high and R/2 wide for a rectangular generator).

    An image of another aspect ratio is stretched: the caller (the plug-in) chooses a crop of the
    model's aspect ratio beforehand when it cares."""
    rgb, alpha = as_rgb_uint8(image)
    size = G.image_size
    weight = None
    if use_alpha and alpha is not None and alpha.min() < 255:
        weight = alpha.astype(np.float32) / 255.0
    if weight_mask is not None:
        mask = np.asarray(weight_mask)
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        if mask.ndim != 2:
            raise BadInputError(f"weight mask must be [H, W], got shape {list(mask.shape)}")
        if mask.dtype == np.uint8:
            mask = mask.astype(np.float32) / 255.0
        mask = mask.astype(np.float32)
        if not np.isfinite(mask).all():
            raise BadInputError("weight mask contains NaN or infinite values")
        if mask.shape != rgb.shape[:2]:
            raise BadInputError(
                f"weight mask is {mask.shape[1]}x{mask.shape[0]}, "
                f"the image is {rgb.shape[1]}x{rgb.shape[0]}"
            )
        mask = np.clip(mask, 0.0, 1.0)
        weight = mask if weight is None else weight * mask
    rgb = resize_image(rgb, size)
    if weight is not None:
        weight = resize_weight(weight, size)
        if float(weight.max()) <= 1e-6:
            raise BadInputError("nothing to project: the weight mask (or alpha) is zero everywhere")
    return rgb, weight


# Mean and spread of w, by generator: sampling 10000 w's takes a moment, and the same G is projected
# many times (benchmark, server).
_W_STATS: weakref.WeakKeyDictionary[
    torch.nn.Module, dict[tuple[int, int], tuple[torch.Tensor, float]]
]
_W_STATS = weakref.WeakKeyDictionary()


def w_statistics(G: torch.nn.Module, samples: int, seed: int) -> tuple[torch.Tensor, float]:
    """(w_avg [1, 1, w_dim], w_std): mean of `samples` mapped z's and their RMS distance from it."""
    per_model = _W_STATS.setdefault(G, {})
    if (samples, seed) not in per_model:
        device = _device_of(G)
        z = torch.from_numpy(np.random.RandomState(seed).randn(samples, G.z_dim)).float().to(device)
        c = None if not getattr(G, "c_dim", 0) else torch.zeros(samples, G.c_dim, device=device)
        with torch.no_grad():
            w = torch.cat(
                [
                    G.mapping(z[i : i + 2000], None if c is None else c[i : i + 2000])[:, :1, :]
                    for i in range(0, samples, 2000)
                ]
            )  # [samples, 1, w_dim]
        w_avg = w.mean(dim=0, keepdim=True)
        w_std = float(((w - w_avg).square().sum() / samples).sqrt())
        per_model[(samples, seed)] = (w_avg, w_std)
    return per_model[(samples, seed)]


def _device_of(G: torch.nn.Module) -> torch.device:
    for tensor in G.parameters():
        return tensor.device
    return torch.device("cpu")


def _check_cancel(cancel: CancelFlag | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("projection cancelled")


def _noise_maps(G: torch.nn.Module) -> dict[str, torch.Tensor]:
    # The per-layer constant noise inputs (NVIDIA's names end in "noise_const").
    return {n: b for n, b in G.named_buffers() if n.endswith("noise_const")}


def _lr_schedule(t: float, settings: ProjectSettings) -> float:
    """Learning-rate factor at progress t in [0, 1): linear ramp-up, cosine ramp-down."""
    ramp = min(1.0, (1.0 - t) / settings.lr_rampdown_length) if settings.lr_rampdown_length else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if settings.lr_rampup_length:
        ramp *= min(1.0, t / settings.lr_rampup_length)
    return ramp


# ---------------------------------------------------------------------------------------------------
# The stages


def _optimise_latent(
    G: torch.nn.Module,
    start: torch.Tensor,  # [1, 1, w_dim] (W) or [1, num_ws, w_dim] (W+)
    *,
    stage: str,
    steps: int,
    lr: float,
    w_noise_std: float,  # std of the exploration noise on w at t = 0 (ramped down); 0 = none
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    target: torch.Tensor,
    weight: torch.Tensor | None,
    noise_maps: list[torch.Tensor],
    settings: ProjectSettings,
    generator: torch.Generator,
    callback: ProgressCallback | None,
    cancel: CancelFlag | None,
) -> tuple[torch.Tensor, float]:
    w_opt = start.detach().clone().requires_grad_(True)
    optimise_noise = settings.optimize_noise and bool(noise_maps)
    for noise in noise_maps:
        noise.requires_grad_(optimise_noise)
    params = [w_opt] + (noise_maps if optimise_noise else [])
    optimizer = torch.optim.Adam(params, betas=(0.9, 0.999), lr=lr)
    num_ws = int(G.num_ws)
    loss_value = float("nan")
    for step in range(steps):
        _check_cancel(cancel)
        t = step / steps
        for group in optimizer.param_groups:
            group["lr"] = lr * _lr_schedule(t, settings)
        w = w_opt
        if w_noise_std > 0:
            scale = w_noise_std * max(0.0, 1.0 - t / settings.noise_ramp_length) ** 2
            w = w + torch.randn(w.shape, generator=generator, device=w.device) * scale
        ws = w.expand(-1, num_ws, -1) if w.shape[1] == 1 else w  # [1, num_ws, w_dim]
        image = G.synthesis(ws, noise_mode="const")
        loss = loss_fn(image)
        if settings.latent_l2_weight:
            loss = loss + settings.latent_l2_weight * weighted_mse(image, target, weight)
        if optimise_noise and settings.regularize_noise_weight:
            loss = loss + settings.regularize_noise_weight * noise_autocorrelation(noise_maps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if optimise_noise:
            with torch.no_grad():  # keep each map zero-mean, unit-variance
                for noise in noise_maps:
                    noise -= noise.mean()
                    noise *= noise.square().mean().rsqrt()
        loss_value = float(loss.detach())
        if callback is not None:
            callback(ProjectProgress(stage, step + 1, steps, loss_value))
    for noise in noise_maps:
        noise.requires_grad_(False)
    return w_opt.detach(), loss_value


def _pivotal_tuning(
    G_tuned: torch.nn.Module,
    G_original: torch.nn.Module,
    ws: torch.Tensor,  # [1, num_ws, w_dim], the pivot
    *,
    target: torch.Tensor,
    weight: torch.Tensor | None,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    settings: ProjectSettings,
    generator: torch.Generator,
    callback: ProgressCallback | None,
    cancel: CancelFlag | None,
) -> tuple[int, float]:
    params = list(G_tuned.synthesis.parameters())
    for param in params:
        param.requires_grad_(True)
    optimizer = torch.optim.Adam(params, lr=settings.tune_lr)
    device = ws.device
    steps_run, loss_value = 0, float("nan")
    for step in range(settings.tune_steps):
        _check_cancel(cancel)
        # Constant rate, then a cosine ramp-down over the last `tune_lr_rampdown` of the steps
        # (PTI keeps it constant; the ramp-down settles the weights, +0.5 dB on the toy model).
        t = step / settings.tune_steps
        ramp = 1.0
        if settings.tune_lr_rampdown > 0:
            ramp = 0.5 - 0.5 * math.cos(math.pi * min(1.0, (1.0 - t) / settings.tune_lr_rampdown))
        for group in optimizer.param_groups:
            group["lr"] = settings.tune_lr * ramp
        image = G_tuned.synthesis(ws, noise_mode="const")
        perceptual = loss_fn(image)
        loss = settings.tune_l2_weight * weighted_mse(image, target, weight)
        loss = loss + settings.tune_perceptual_weight * perceptual
        if settings.locality_weight > 0:
            # Locality regulariser: at a code a fixed distance from the pivot towards a random w,
            # the tuned generator must still draw what the original drew.
            z = torch.randn([1, G_original.z_dim], generator=generator, device=device)
            with torch.no_grad():
                w_random = G_original.mapping(z, None)
                direction = w_random - ws
                w_near = ws + settings.locality_alpha * direction / direction.norm().clamp_min(1e-8)
                reference = G_original.synthesis(w_near, noise_mode="const")
            drawn = G_tuned.synthesis(w_near, noise_mode="const")
            loss = loss + settings.locality_weight * (drawn - reference).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps_run, loss_value = step + 1, float(loss.detach())
        if callback is not None:
            callback(ProjectProgress("tune", step + 1, settings.tune_steps, loss_value))
        if settings.tune_stop_loss > 0 and float(perceptual.detach()) < settings.tune_stop_loss:
            break  # PTI's early stop: close enough
    for param in params:
        param.requires_grad_(False)
    return steps_run, loss_value


def _quantised_delta(
    G_original: torch.nn.Module, G_changed: torch.nn.Module, dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Differences of the changed state-dict tensors, rounded to `dtype`; G_changed is set to
    original + rounded difference, so what we return in memory equals what a reload reproduces."""
    original = G_original.state_dict()
    delta: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for name, value in G_changed.state_dict().items():
            if not value.is_floating_point():
                continue
            difference = value - original[name]
            if not bool(difference.any()):
                continue
            stored = difference.to(dtype)
            value.copy_(original[name] + stored.to(value.dtype))
            delta[name] = stored.to("cpu")
    return delta


# ---------------------------------------------------------------------------------------------------


def project(
    G: torch.nn.Module,
    image: np.ndarray,
    *,
    weight_mask: np.ndarray | None = None,
    settings: ProjectSettings | None = None,
    callback: ProgressCallback | None = None,
    cancel: CancelFlag | None = None,
) -> Projection:
    """Project `image` (uint8 [H, W, 3|4] or grey, any size) into G; see the module doc.

    `weight_mask` [H, W] (float in [0, 1], or uint8) says which pixels matter; the alpha of an RGBA
    image multiplies it (unless `settings.use_alpha` is off). `callback(ProjectProgress)` runs after
    every step; `cancel.is_set()` is checked before every step (-> `CancelledError`).
    """
    settings = settings_for(G, settings)
    started = time.perf_counter()
    _check_cancel(cancel)
    target_rgb, weight_np = prepare_target(G, image, weight_mask, settings.use_alpha)
    device = _device_of(G)
    model_sha256 = model_fingerprint(G)

    # Target in the generator's range: [1, 3, H, W]; weight [1, 1, H, W].
    target = (
        torch.from_numpy(target_rgb).to(device).permute(2, 0, 1)[None].float() / 127.5 - 128 / 127.5
    )
    weight = None if weight_np is None else torch.from_numpy(weight_np).to(device)[None, None]
    loss_fn, perceptual_kind = make_perceptual_loss(settings.perceptual, target, weight)

    G_work = copy.deepcopy(G).eval().requires_grad_(False)  # G itself is never changed
    noise_by_name = _noise_maps(G_work)
    original_noise = {n: b.detach().clone() for n, b in noise_by_name.items()}
    noise_maps = list(noise_by_name.values())
    generator = torch.Generator(device=device).manual_seed(settings.seed)
    stages: dict[str, StageResult] = {}

    def restore_noise() -> None:
        with torch.no_grad():
            for name, buffer in noise_by_name.items():
                buffer.copy_(original_noise[name])

    def measure(ws: torch.Tensor) -> tuple[float, float, np.ndarray]:
        # The stage's result as it will be used: with the model's own noise unless kept.
        saved = None
        if not settings.keep_noise and settings.optimize_noise and noise_maps:
            saved = {n: b.detach().clone() for n, b in noise_by_name.items()}
            restore_noise()
        with torch.no_grad():
            reconstruction = to_uint8(G_work.synthesis(ws, noise_mode="const"))
        if saved is not None:
            with torch.no_grad():
                for name, buffer in noise_by_name.items():
                    buffer.copy_(saved[name])
        return (
            psnr(reconstruction, target_rgb, weight_np),
            ssim(reconstruction, target_rgb, weight_np),
            reconstruction,
        )

    num_ws = int(G.num_ws)
    w_avg, w_std = w_statistics(G, settings.w_avg_samples, settings.seed)
    ws = w_avg.to(device).expand(-1, num_ws, -1).clone()  # [1, num_ws, w_dim]

    if settings.w_steps > 0:
        stage_start = time.perf_counter()
        w, loss = _optimise_latent(
            G_work, w_avg.to(device), stage="w", steps=settings.w_steps, lr=settings.w_lr,
            w_noise_std=w_std * settings.initial_noise_factor, loss_fn=loss_fn,
            target=target, weight=weight, noise_maps=noise_maps, settings=settings, generator=generator,
            callback=callback, cancel=cancel,
        )  # fmt: skip
        ws = w.expand(-1, num_ws, -1).clone()
        seconds = time.perf_counter() - stage_start
        p, s, _ = measure(ws)
        stages["w"] = StageResult(seconds, p, s, settings.w_steps, loss)

    if settings.wplus_steps > 0:
        stage_start = time.perf_counter()
        ws, loss = _optimise_latent(
            G_work, ws, stage="w+", steps=settings.wplus_steps, lr=settings.wplus_lr,
            w_noise_std=0.0, loss_fn=loss_fn, target=target, weight=weight,
            noise_maps=noise_maps, settings=settings,
            generator=generator, callback=callback, cancel=cancel,
        )  # fmt: skip
        seconds = time.perf_counter() - stage_start
        p, s, _ = measure(ws)
        stages["w+"] = StageResult(seconds, p, s, settings.wplus_steps, loss)

    if not settings.keep_noise:
        restore_noise()  # PTI's choice: tune (and later drag) with the model's own constant noise

    if settings.tune_steps > 0:
        stage_start = time.perf_counter()
        steps_run, loss = _pivotal_tuning(
            G_work, G, ws, target=target, weight=weight, loss_fn=loss_fn, settings=settings,
            generator=generator, callback=callback, cancel=cancel,
        )  # fmt: skip
        seconds = time.perf_counter() - stage_start
        p, s, _ = measure(ws)
        stages["tune"] = StageResult(seconds, p, s, steps_run, loss)

    dtype = torch.float16 if settings.delta_dtype == "float16" else torch.float32
    delta = _quantised_delta(G, G_work, dtype)
    result_G = G_work.eval().requires_grad_(False) if delta else G
    with torch.no_grad():
        reconstruction = to_uint8(result_G.synthesis(ws, noise_mode="const"))
    return Projection(
        ws=ws.detach().to("cpu", torch.float32),
        generator=result_G,
        tuned_delta=delta,
        reconstruction=reconstruction,
        psnr=psnr(reconstruction, target_rgb, weight_np),
        ssim=ssim(reconstruction, target_rgb, weight_np),
        seconds=time.perf_counter() - started,
        stages=stages,
        model_sha256=model_sha256,
        settings=settings,
        perceptual=perceptual_kind,
        target=target_rgb,
    )
