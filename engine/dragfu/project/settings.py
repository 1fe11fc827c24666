"""Projection settings: every stage, its step count and learning rate; defaults chosen by the benchmark.

The defaults are set by `python -m bench project --sweep` on the 128x128 toy model with the fallback
perceptual loss (docs/benchmarks.md): far fewer W steps than NVIDIA's projector (1000), since
the default must finish within a minute on a 2-core CPU, and a pixel L2 term next to the perceptual
loss in every stage. NVIDIA's and PTI's published values are noted next to each field.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from dragfu.errors import BadInputError

PERCEPTUAL_CHOICES = ("auto", "lpips", "fallback")
#: W+ refinement steps when there is no pivotal tuning to close the gap (`dragfu project --no-tune`)
WPLUS_STEPS_WITHOUT_TUNING = 100


@dataclass(frozen=True)
class ProjectSettings:
    # --- Stage 1: W projection (one w for every layer), from the mean of sampled w's.
    w_steps: int = 100  # NVIDIA: 1000
    w_lr: float = 0.1  # NVIDIA: 0.1 (peak of the ramp)
    w_avg_samples: int = 10_000  # NVIDIA: 10000 z's through the mapping network
    # Noise added to w while searching, times w's spread, ramped down over `noise_ramp_length`.
    initial_noise_factor: float = 0.05  # NVIDIA: 0.05
    noise_ramp_length: float = 0.75  # NVIDIA: 0.75 (fraction of steps over which that noise fades)
    lr_rampdown_length: float = 0.25  # NVIDIA: 0.25 (cosine ramp-down over the last quarter)
    lr_rampup_length: float = 0.05  # NVIDIA: 0.05 (linear ramp-up over the first 5 %)
    # Weight of a pixel L2 term added to the perceptual loss in the W and W+ stages (NVIDIA: none).
    latent_l2_weight: float = 30.0  # +2 dB in W, +1.3 dB in W+ on the toy model, same SSIM
    # Noise-map optimisation with the multi-scale autocorrelation regulariser (W and W+ stages).
    optimize_noise: bool = True
    regularize_noise_weight: float = 1e5  # NVIDIA: 1e5
    # Keep the optimised noise maps in the result (part of `tuned_delta`). Off: the result uses the
    # model's own constant noise, like PTI, so a drag moves content without a noise map stuck in place.
    keep_noise: bool = False
    # --- Stage 2: W+ refinement (one w per layer), from the W result. Off by default: PTI tunes
    # around the W result, and on the toy model drags on a W pivot lose far fewer landmarks than on
    # a W+ one (whose codes leave the model's range), at the same PSNR after tuning. `--no-tune`
    # runs it (WPLUS_STEPS_WITHOUT_TUNING), as without tuning it is worth +3.6 dB.
    wplus_steps: int = 0
    wplus_lr: float = 0.1
    # --- Stage 3: pivotal tuning (Roich et al.): fine-tune the synthesis weights around the pivot.
    tune_steps: int = 300  # PTI: 350
    tune_lr: float = 3e-3  # PTI: 3e-4 (for 512-channel layers; our toy model's are 64 wide)
    tune_lr_rampdown: float = 0.25  # cosine ramp-down over the last quarter; PTI: none (0)
    tune_l2_weight: float = 30.0  # PTI: 1 (next to LPIPS); 30 here: +2 dB PSNR and higher SSIM
    tune_perceptual_weight: float = 1.0  # PTI: 1 (LPIPS)
    tune_stop_loss: float = 0.0  # PTI: stop once LPIPS < 0.06; 0 = never stop early
    # PTI's locality regulariser: at a code `locality_alpha` from the pivot towards a random w (in
    # the norm of the whole [num_ws, w_dim] latent), the tuned generator must draw what the
    # original draws (pixel MSE, times this weight). Off, as in PTI: on 30 projected renders,
    # weight 30 cost 3.5 dB and 15 s per image for one landmark fewer lost (docs/benchmarks.md).
    locality_weight: float = 0.0
    locality_alpha: float = 30.0  # PTI: 30
    # --- Losses and the rest.
    perceptual: str = "auto"  # "auto": LPIPS when its weights are found, else the fallback
    use_alpha: bool = True  # alpha of an RGBA input weights the loss (transparent = ignored)
    delta_dtype: str = "float16"  # storage of the tuned-weight differences: float16 or float32
    seed: int = 0

    def __post_init__(self) -> None:
        # Whole numbers given for float fields (30 from JSON, say) become floats, so that equal
        # settings have one canonical JSON and so one cache key.
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, item.name, float(value))
            elif item.type == "float" and not isinstance(value, float):
                raise BadInputError(
                    f"projection setting {item.name} must be a number, got {value!r}"
                )
        for name in ("w_steps", "wplus_steps", "tune_steps", "w_avg_samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise BadInputError(
                    f"projection setting {name} must be an integer >= 0, got {value!r}"
                )
        if self.w_avg_samples < 2:
            raise BadInputError("projection setting w_avg_samples must be at least 2")
        for name in ("w_lr", "wplus_lr", "tune_lr"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and value > 0 and value < float("inf")):
                raise BadInputError(
                    f"projection setting {name} must be a number > 0, got {value!r}"
                )
        for name in (
            "lr_rampdown_length",
            "lr_rampup_length",
            "noise_ramp_length",
            "tune_lr_rampdown",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                raise BadInputError(f"projection setting {name} must be in [0, 1], got {value!r}")
        if self.noise_ramp_length == 0:
            raise BadInputError("projection setting noise_ramp_length must be > 0")
        if self.perceptual not in PERCEPTUAL_CHOICES:
            raise BadInputError(
                f"projection setting perceptual must be one of {', '.join(PERCEPTUAL_CHOICES)}, "
                f"got {self.perceptual!r}"
            )
        if self.delta_dtype not in ("float16", "float32"):
            raise BadInputError(
                f"projection setting delta_dtype must be float16 or float32, got {self.delta_dtype!r}"
            )

    def replace(self, **changes: Any) -> ProjectSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): part of the cache key and of a saved projection's metadata."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ProjectSettings:
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise BadInputError(f"unknown projection settings: {', '.join(unknown)}")
        return cls(**values)


# PTI's published settings (Roich et al. 2021, their `hyperparameters.py`), for the 256-1024 px
# models they were chosen on: 450 W steps at lr 5e-3 with LPIPS alone, then 350 tuning steps at
# lr 3e-4 with LPIPS + L2 (weight 1), no W+ stage, no locality regulariser by default.
PTI_SETTINGS = ProjectSettings(
    w_steps=450,
    w_lr=5e-3,
    latent_l2_weight=0.0,
    wplus_steps=0,
    tune_steps=350,
    tune_lr=3e-4,
    tune_lr_rampdown=0.0,
    tune_l2_weight=1.0,
    tune_perceptual_weight=1.0,
)
#: From this image size on a model gets PTI's settings; below it, the toy model's measured ones.
PTI_FROM_RESOLUTION = 256


def settings_for(G, overrides: ProjectSettings | dict[str, Any] | None = None) -> ProjectSettings:
    """The projection settings for generator G: given settings as they are, else the model's
    defaults (PTI's published ones for 256 px and larger models, the measured ones below,
    docs/benchmarks.md) with `overrides` (field name -> value) on top."""
    if isinstance(overrides, ProjectSettings):
        return overrides
    resolution = max(getattr(G, "img_resolution", 0), *getattr(G, "image_size", (0,)))
    base = PTI_SETTINGS if resolution >= PTI_FROM_RESOLUTION else ProjectSettings()
    if not overrides:
        return base
    known = {item.name for item in dataclasses.fields(ProjectSettings)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise BadInputError(f"unknown projection settings: {', '.join(unknown)}")
    return base.replace(**overrides)
