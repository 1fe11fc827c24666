"""Train the embedded toy generator: a StyleGAN2 generator of the toy-faces world, on CPU.

    python -m bench.train_toy --minutes 65 --out engine/dragfu/assets/toy --seed 0

The committed model is that one command (6,000 steps, 46.8 minutes on the shared 2-core CPU;
docs/benchmarks.md). `--resume PATH` continues from a saved model (fresh optimiser state); a
continuation of 18 minutes at lr 2e-3 with doubled part weights measured slightly better there.

Method: regression of the generator onto the world, i.e. of a conditional decoder on rendered
pairs. Each z ~ N(0, I) has one face: the mapping network first normalises z (NVIDIA's
`normalize_2nd_moment`), and the first NUM_PARAMS entries of that normalised z, through the
normal CDF, are the face's unit parameters (`target_params`). So the target image is a function of
exactly what the network sees, and z ~ N(0, I) at psi = 1 gives the world's distribution (up to
the normalisation, which keeps each entry at unit variance).

Plain L1 draws the face and hair but leaves the eyes and the mouth out: they cover ~1 % of the
pixels. So the per-pixel L1 is weighted up on the eyes and the mouth (their coverage, known from
the renderer, grown by a few pixels so that a part drawn off its place is also penalised), and
the loss is taken at 128, 64 and 32 pixels (the coarse terms give the layout early).

Adam on all weights (the mapping's learning rate is scaled back up by 1/lr_multiplier, see
`_param_groups`), a moving average of the weights (G_ema, as in StyleGAN) is what gets saved,
and the learning rate falls on a cosine over the budget (steps or minutes, whichever ends first).
Renders come from a pool that is partly re-rendered every step, so the renderer costs a fraction
of the step. A checkpoint (G_ema, w_avg set) is written every `--checkpoint-minutes`, so a usable
model exists even if the run is stopped.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import time
from pathlib import Path

# On a shared CPU, OpenMP threads that spin while waiting at barriers lose most of their time to
# the other processes (measured: 5.1 s per step spinning vs 0.66 s passive, 2 threads, 2 busy
# cores). It must be set before torch starts its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from dragfu.toy.detector import detect  # noqa: E402
from dragfu.toy.world import (  # noqa: E402
    EYE,
    MOUTH,
    NUM_PARAMS,
    params_from_unit,
    render_with_coverage,
)

Z_DIM = 64
GENERATOR_CONFIG = {
    "z_dim": Z_DIM,
    "c_dim": 0,
    "w_dim": Z_DIM,
    "img_resolution": 128,
    "img_channels": 3,
    "mapping_kwargs": {"num_layers": 4},
    "channel_base": 4096,  # 32 channels at 128 px, 64 at 64 px and below (capped)
    "channel_max": 64,
    "num_fp16_res": 0,
    "conv_clamp": None,
}


def normalised_z(z: np.ndarray) -> np.ndarray:
    """What the mapping network sees: z / rms(z) per sample.  [N, Z] -> [N, Z]"""
    z = np.asarray(z, dtype=np.float64)
    return z / np.sqrt(np.mean(z * z, axis=-1, keepdims=True) + 1e-8)


def target_params(z: np.ndarray):
    """The face a latent z ([Z_DIM]) stands for (see the module docstring)."""
    from dragfu.toy.world import normal_cdf

    zn = normalised_z(np.asarray(z)[None])[0]
    return params_from_unit(normal_cdf(zn[:NUM_PARAMS]))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Max filter of a [H, W] float map."""
    out = mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            np.maximum(
                out, padded[radius + dy : radius + dy + h, radius + dx : radius + dx + w], out=out
            )
    return out


def render_target(z: np.ndarray, eye_weight: float, mouth_weight: float):
    """The target image of z ([128, 128, 3] uint8) and its per-pixel loss weight ([128, 128])."""
    image, coverage = render_with_coverage(target_params(z))
    weight = 1.0 + eye_weight * _dilate(coverage[EYE], 3)
    weight += mouth_weight * _dilate(coverage[MOUTH], 3)
    return image, weight.astype(np.float16)


class RenderPool:
    """Rendered (z, image, loss weight) triples; `refresh` of them are re-drawn per step."""

    def __init__(
        self,
        size: int,
        rng: np.random.Generator,
        eye_weight: float,
        mouth_weight: float,
        workers: int = 1,
    ):
        self.rng = rng
        self.eye_weight, self.mouth_weight = eye_weight, mouth_weight
        self.z = np.zeros((size, Z_DIM), np.float32)
        self.images = np.zeros((size, 3, 128, 128), np.uint8)
        self.weights = np.zeros((size, 128, 128), np.float16)
        if workers > 1:
            import multiprocessing

            zs = rng.standard_normal((size, Z_DIM))
            with multiprocessing.get_context("fork").Pool(workers) as processes:
                job = functools.partial(
                    render_target, eye_weight=eye_weight, mouth_weight=mouth_weight
                )
                rendered = processes.map(job, list(zs), chunksize=64)
            for index, (z, item) in enumerate(zip(zs, rendered, strict=True)):
                self._store(index, z, *item)
        else:
            for index in range(size):
                self.redraw(index)

    def _render(self, z: np.ndarray):
        return render_target(z, self.eye_weight, self.mouth_weight)

    def _store(self, index: int, z: np.ndarray, image: np.ndarray, weight: np.ndarray) -> None:
        self.z[index] = z
        self.images[index] = image.transpose(2, 0, 1)
        self.weights[index] = weight

    def redraw(self, index: int) -> None:
        z = self.rng.standard_normal(Z_DIM)
        self._store(index, z, *self._render(z))

    def batch(self, batch_size: int, refresh: int):
        for index in self.rng.choice(len(self.z), size=refresh, replace=False):
            self.redraw(int(index))
        picks = self.rng.choice(len(self.z), size=batch_size, replace=False)
        z = torch.from_numpy(self.z[picks])
        images = torch.from_numpy(self.images[picks]).float() / 127.5 - 1.0
        weights = torch.from_numpy(self.weights[picks].astype(np.float32))[:, None]
        return z, images, weights


def weighted_multiscale_l1(
    fake: torch.Tensor, real: torch.Tensor, weight: torch.Tensor, scales: int = 3
) -> torch.Tensor:
    """sum over 128, 64, 32 px of mean(weight * |fake - real|) / mean(weight)."""
    loss = fake.new_zeros(())
    for level in range(scales):
        if level:
            fake, real = F.avg_pool2d(fake, 2), F.avg_pool2d(real, 2)
            weight = F.avg_pool2d(weight, 2)
        loss = loss + (weight * (fake - real).abs()).mean() / weight.mean()
    return loss


def _param_groups(G, lr: float):
    """The mapping's equalised-lr layers store weights scaled by 1/lr_multiplier (0.01); Adam's
    step is scale-free, so their rate is scaled the same way to learn as fast as the rest."""
    mapping = [p for n, p in G.named_parameters() if n.startswith("mapping.")]
    other = [p for n, p in G.named_parameters() if not n.startswith("mapping.")]
    multiplier = G.mapping.fc0.bias_gain  # = lr_multiplier
    return [{"params": other, "lr": lr}, {"params": mapping, "lr": lr / multiplier}]


@torch.no_grad()
def detection_rate(G, samples: int, seed: int) -> float:
    z = torch.from_numpy(np.random.RandomState(seed).randn(samples, Z_DIM).astype(np.float32))
    images = G(z.to(G.mapping.w_avg.device), None, truncation_psi=1.0, noise_mode="const").cpu()
    images = (images * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return float(np.mean([detect(image).complete for image in images]))


def save_checkpoint(G_ema, out: Path, info: dict) -> Path:
    from dragfu.models import save_generator

    G_ema.mapping.w_avg.copy_(G_ema.mean_w(samples=10_000, seed=0))
    path = save_generator(G_ema, out)
    sidecar = path.with_suffix(".json")
    document = json.loads(sidecar.read_text())
    document["training"] = info
    sidecar.write_text(json.dumps(document, indent=2) + "\n")
    return path


def train(args: argparse.Namespace) -> Path:
    from dragfu.models import Generator

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    config = {**GENERATOR_CONFIG, "mapping_kwargs": {"num_layers": args.mapping_layers}}
    G = Generator(**config).to(device).train()
    G_ema = Generator(**config).to(device).eval().requires_grad_(False)
    previous = None
    if args.resume:
        # Continue from a saved model (its G_ema): fresh Adam state, same schedule shape.
        from dragfu.models import load_generator

        start = load_generator(args.resume)
        G.load_state_dict(start.state_dict())
        sidecar = Path(args.resume).with_suffix(".json")
        previous = json.loads(sidecar.read_text()).get("training") if sidecar.is_file() else None
    G_ema.load_state_dict(G.state_dict())
    optimiser = torch.optim.Adam(_param_groups(G, args.lr), betas=(0.9, 0.99), eps=1e-8)
    base_lrs = [group["lr"] for group in optimiser.param_groups]

    started = time.time()
    pool = RenderPool(args.pool, rng, args.eye_weight, args.mouth_weight, args.workers)
    print(f"pool of {args.pool} renders in {time.time() - started:.1f} s", flush=True)
    budget_s = args.minutes * 60.0
    last_checkpoint = time.time()
    out = Path(args.out)
    step, loss_avg = 0, None
    while True:
        elapsed = time.time() - started
        progress = max(step / args.steps, elapsed / budget_s)
        if progress >= 1.0:
            break
        # Short warm-up, then cosine decay to 5 % of the rate.
        factor = min(1.0, (step + 1) / 200) * (
            0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress))
        )
        for group, base in zip(optimiser.param_groups, base_lrs, strict=True):
            group["lr"] = base * factor

        z, real, weight = pool.batch(args.batch, args.refresh)
        z, real, weight = z.to(device), real.to(device), weight.to(device)
        ws = G.mapping(z, None)
        # One shared convolution per layer (not grouped per sample): faster on CPU.
        fake = G.synthesis(ws, noise_mode="const", fused_modconv=False)
        loss = weighted_multiscale_l1(fake, real, weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

        # Moving average of the weights; a short half-life early so G_ema is usable soon.
        beta = min(args.ema, 1.0 - 1.0 / (step / 10 + 2))
        for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
            p_ema.lerp_(p.detach(), 1.0 - beta)
        step += 1
        loss_avg = loss.item() if loss_avg is None else 0.98 * loss_avg + 0.02 * loss.item()
        if step % args.log_every == 0:
            rate = step / (time.time() - started)
            print(
                f"step {step} loss {loss_avg:.4f} lr x{factor:.3f} {rate:.2f} it/s "
                f"{(time.time() - started) / 60:.1f} min",
                flush=True,
            )
        if time.time() - last_checkpoint > args.checkpoint_minutes * 60:
            info = _info(args, step, started, previous)
            info["detected_64"] = detection_rate(G_ema, 64, seed=1)
            save_checkpoint(G_ema, out, info)
            print(
                f"checkpoint at step {step}: all landmarks in {info['detected_64']:.0%} "
                "of 64 samples",
                flush=True,
            )
            last_checkpoint = time.time()

    info = _info(args, step, started, previous)
    info["detected_64"] = detection_rate(G_ema, 64, seed=1)
    path = save_checkpoint(G_ema, out, info)
    print(
        f"done: {step} steps in {info['minutes']:.1f} min; all landmarks in "
        f"{info['detected_64']:.0%} of 64 samples; saved {path}",
        flush=True,
    )
    return path


def _info(args: argparse.Namespace, step: int, started: float, previous: dict | None) -> dict:
    info = {
        "script": "python -m bench.train_toy",
        "seed": args.seed,
        "steps": step,
        "batch": args.batch,
        "minutes": round((time.time() - started) / 60, 2),
        "threads": args.threads,
        "device": args.device,
        "lr": args.lr,
        "eye_weight": args.eye_weight,
        "mouth_weight": args.mouth_weight,
        "method": "weighted multi-scale L1 regression onto renders of target_params(z)",
    }
    if previous is not None:
        # A continued run: keep the earlier stage(s) and the totals.
        info["previous"] = previous
        info["total_steps"] = previous.get("total_steps", previous["steps"]) + step
        info["total_minutes"] = round(
            previous.get("total_minutes", previous["minutes"]) + info["minutes"], 2
        )
    return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.train_toy", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=65.0, help="wall-clock budget")
    parser.add_argument("--steps", type=int, default=6_000, help="step budget")
    parser.add_argument("--out", default="engine/dragfu/assets/toy", help="output path (no suffix)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", help="continue from this saved model (.safetensors)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--mapping-layers", type=int, default=4)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--ema", type=float, default=0.998, help="G_ema decay per step")
    parser.add_argument("--eye-weight", type=float, default=20.0)
    parser.add_argument("--mouth-weight", type=float, default=8.0)
    parser.add_argument("--pool", type=int, default=1024, help="renders kept in memory")
    parser.add_argument("--refresh", type=int, default=4, help="renders re-drawn per step")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering the pool")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0)
    parser.add_argument("--log-every", type=int, default=50)
    return parser


def main(argv: list[str] | None = None) -> int:
    train(build_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
