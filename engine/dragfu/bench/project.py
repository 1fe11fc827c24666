"""Projection benchmark: held-out toy renders (drawn by the renderer, never by the model) projected
into the toy model, the stand-in for projecting users' photos.

Sections:
- quality: PSNR / SSIM / seconds of W, W+, and W+ with pivotal tuning. One projection per image
  with all three stages; each configuration's numbers are those of its last stage (a stage never
  depends on later ones, so this equals running the shorter configuration alone), and its seconds
  are the total minus the later stages.
- drag: landmark drags on the projected renders (1 and 5 points, targets = another render's
  landmarks, as in `dragfu bench drag`'s manipulation set-up) with the tuned generator; mean distance
  (MD) of the detected landmarks to the targets, next to the same drags on generated images; and
  1-point drags with a movable-region mask: PSNR outside the region against the input photo.
- sweep (`--sweep`): the candidate settings the defaults were chosen from, on the first images.
- speed_512 (`--speed-512`): seconds of one default projection on NVIDIA's 512 config (random
  weights; a GPU number).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from dragfu.bench.stats import log, summarise
from dragfu.project import ProjectSettings, project
from dragfu.project.losses import psnr

SWEEP = {
    # label: changes to the defaults (the first runs of the sweep are in docs/benchmarks.md)
    "defaults": {},
    "w_steps=50": {"w_steps": 50},
    "w_steps=200": {"w_steps": 200},
    "wplus_steps=50": {"wplus_steps": 50},
    "wplus_steps=200": {"wplus_steps": 200},
    "wplus_lr=0.03": {"wplus_lr": 0.03},
    "latent_l2_weight=0 (NVIDIA)": {"latent_l2_weight": 0.0},
    "tune_steps=200": {"tune_steps": 200},
    "tune_steps=400": {"tune_steps": 400},
    "tune_l2_weight=1 (PTI)": {"tune_l2_weight": 1.0},
    "tune_lr=3e-4 no ramp-down (PTI)": {"tune_lr": 3e-4, "tune_lr_rampdown": 0.0},
    "optimize_noise=False": {"optimize_noise": False},
    "keep_noise=True": {"keep_noise": True},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = ProjectSettings()
    parser.add_argument("--model", default="toy")
    parser.add_argument("--images", type=int, default=30, help="held-out renders to project")
    parser.add_argument(
        "--first-image", type=int, default=0, help="start at this render (split a run)"
    )
    parser.add_argument("--seed", type=int, default=4242, help="renderer seed of the held-out set")
    parser.add_argument("--w-steps", type=int, default=defaults.w_steps)
    parser.add_argument("--wplus-steps", type=int, default=defaults.wplus_steps)
    parser.add_argument("--tune-steps", type=int, default=defaults.tune_steps)
    parser.add_argument("--perceptual", default=defaults.perceptual)
    parser.add_argument("--drag-images", type=int, default=10, help="projected renders dragged")
    parser.add_argument("--drag-steps", type=int, default=300)
    parser.add_argument("--no-drag", action="store_true")
    parser.add_argument("--sweep", action="store_true", help="compare candidate settings instead")
    parser.add_argument("--sweep-only", default="", help="comma list of sweep labels (default all)")
    parser.add_argument("--speed-512", action="store_true", help="also time the 512 config")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: as is)")
    parser.add_argument("--device", default=None)


def held_out_renders(count: int, seed: int) -> list[tuple[np.ndarray, object]]:
    """(image uint8 [128, 128, 3], params) pairs from the renderer, with their own random stream."""
    from dragfu.toy import render, sample_params

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        params = sample_params(rng)
        out.append((render(params), params))
    return out


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _settings(args: argparse.Namespace, **changes) -> ProjectSettings:
    return ProjectSettings(
        w_steps=args.w_steps,
        wplus_steps=args.wplus_steps,
        tune_steps=args.tune_steps,
        perceptual=args.perceptual,
    ).replace(**changes)


def quality(G, photos, settings: ProjectSettings) -> tuple[dict, list, list]:
    rows = {"W": [], "W+": [], "W+ tuned": []}
    per_image, projections = [], []
    cpu_seconds = []
    for index, (photo, _) in enumerate(photos):
        cpu_start = time.process_time()  # CPU time of this process: what the load does not inflate
        p = project(G, photo, settings=settings)
        cpu_seconds.append(time.process_time() - cpu_start)
        projections.append(p)
        stages = p.stages
        later = {"w": ("w+", "tune"), "w+": ("tune",), "tune": ()}
        for config, stage in (("W", "w"), ("W+", "w+"), ("W+ tuned", "tune")):
            if stage not in stages:
                continue
            seconds = p.seconds - sum(stages[s].seconds for s in later[stage] if s in stages)
            rows[config].append((stages[stage].psnr, stages[stage].ssim, seconds))
        per_image.append({"image": index, "cpu_seconds": round(cpu_seconds[-1], 2), **p.quality()})
        log(
            f"project {index + 1}/{len(photos)}: "
            + ", ".join(f"{k} {v.psnr:.2f} dB" for k, v in stages.items())
            + f", {p.seconds:.1f} s (CPU {cpu_seconds[-1]:.1f} s), load {load_average()}"
        )
    table = {
        config: {
            "psnr": summarise([r[0] for r in values], extremes=True),
            "ssim": summarise([r[1] for r in values], extremes=True),
            "seconds": summarise([r[2] for r in values], extremes=True),
        }
        for config, values in rows.items()
        if values
    }
    if "W+ tuned" in table:
        table["W+ tuned"]["cpu_seconds"] = summarise(cpu_seconds, extremes=True)
    return table, per_image, projections


def drag_section(G, photos, projections, args) -> dict:
    from dragfu.bench.drag import FIVE, landmarks_of, mean_distance, movable_box, still_to_move
    from dragfu.drag import drag
    from dragfu.models.seeds import DEFAULT_PSI, to_uint8, ws_from_seed
    from dragfu.toy import LANDMARK_NAMES

    first = args.first_image
    # whose landmarks are the targets
    goals = held_out_renders(first + len(projections), args.seed + 1)[first:]
    md = {f"{n}pt": {"projected": [], "generated": [], "nothing_projected": []} for n in (1, 5)}
    lost = {"projected": 0, "generated": 0}
    outside = {"drag_vs_photo": [], "reconstruction_vs_photo": [], "md_masked": []}
    for index, p in enumerate(projections):
        photo = photos[index][0]
        goal = goals[index][0]
        # Drawn per image, so that a run split by --first-image draws what one run draws.
        rng = np.random.RandomState([args.seed, first + index])
        ws_generated = ws_from_seed(G, 50_000 + first + index, DEFAULT_PSI)
        with torch.no_grad():
            generated = to_uint8(G.synthesis(ws_generated, noise_mode="const"))
        for n in (1, 5):
            names = [LANDMARK_NAMES[rng.randint(len(LANDMARK_NAMES))]] if n == 1 else list(FIVE)
            targets = landmarks_of(goal, names)
            if targets is None:
                continue
            for kind, generator, ws, image in (
                ("projected", p.generator, p.ws, photo),
                ("generated", G, ws_generated, generated),
            ):
                handles = landmarks_of(image, names)
                if handles is None or mean_distance(handles, targets) < 1.0:
                    continue
                if kind == "projected":
                    md[f"{n}pt"]["nothing_projected"].append(mean_distance(handles, targets))
                moving = still_to_move(handles, targets)
                result = drag(
                    generator, ws.to(next(generator.parameters()).device),
                    handles[moving].tolist(), targets[moving].tolist(), max_steps=args.drag_steps,
                )  # fmt: skip
                found = landmarks_of(result.image, names)
                if found is None:
                    lost[kind] += 1
                else:
                    md[f"{n}pt"][kind].append(mean_distance(found, targets))
        # Fidelity: one point moved 5 px inside a movable box; the rest should stay the photo.
        name = ("mouth_left", "mouth_right", "mouth", "left_eye", "right_eye")[rng.randint(5)]
        handle = landmarks_of(photo, [name])
        if handle is not None:
            angle = rng.uniform(0, 2 * math.pi)
            target = (handle[0] + 5.0 * np.array([math.cos(angle), math.sin(angle)])).clip(
                1, G.img_resolution - 1
            )
            mask = movable_box(handle[0], target, G.img_resolution)
            result = drag(
                p.generator, p.ws.to(next(p.generator.parameters()).device), handle.tolist(),
                [target.tolist()], mask=mask, max_steps=args.drag_steps,
            )  # fmt: skip
            weight = (~mask).astype(np.float64)
            outside["drag_vs_photo"].append(psnr(result.image, photo, weight))
            outside["reconstruction_vs_photo"].append(psnr(p.reconstruction, photo, weight))
            found = landmarks_of(result.image, [name])
            if found is not None:
                outside["md_masked"].append(mean_distance(found, target[None]))
        log(f"drag {index + 1}/{len(projections)}: load {load_average()}")
    out: dict = {"landmarks_lost": lost}
    for key, values in md.items():
        row = {kind: summarise(v, extremes=True) for kind, v in values.items()}
        if values["projected"] and values["generated"]:
            row["md_ratio_projected_over_generated"] = round(
                float(np.mean(values["projected"]))
                / max(float(np.mean(values["generated"])), 1e-9),
                3,
            )
        out[key] = row
    out["fidelity_outside_psnr"] = {k: summarise(v, extremes=True) for k, v in outside.items()}
    return out


def sweep(G, photos, args) -> dict:
    only = [s for s in args.sweep_only.split(",") if s]
    out = {}
    for label, changes in SWEEP.items():
        if only and label not in only:
            continue
        settings = _settings(args, **changes)
        values = []
        for index, (photo, _) in enumerate(photos):
            p = project(G, photo, settings=settings)
            values.append((p.psnr, p.ssim, p.seconds, {k: v.psnr for k, v in p.stages.items()}))
            log(f"sweep {label} {index + 1}/{len(photos)}: {p.psnr:.2f} dB {p.seconds:.1f} s")
        out[label] = {
            "psnr": summarise([v[0] for v in values], extremes=True),
            "ssim": summarise([v[1] for v in values], extremes=True),
            "seconds": summarise([v[2] for v in values], extremes=True),
            "stage_psnr": {
                stage: summarise([v[3][stage] for v in values if stage in v[3]], extremes=True)
                for stage in ("w", "w+", "tune")
            },
            "load_average": load_average(),
        }
    return out


def speed_512(device: torch.device, settings: ProjectSettings) -> dict:
    from dragfu.bench.timing import synchronize
    from dragfu.models import Generator

    torch.manual_seed(0)
    G = Generator(
        z_dim=512, c_dim=0, w_dim=512, img_resolution=512, channel_base=32768, channel_max=512,
        mapping_kwargs={"num_layers": 8}, conv_clamp=256,
    ).eval().requires_grad_(False).to(device)  # fmt: skip
    photo = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    project(G, photo, settings=settings.replace(w_steps=2, wplus_steps=2, tune_steps=2))  # warm-up
    synchronize(device)
    started = time.perf_counter()
    p = project(G, photo, settings=settings)
    synchronize(device)
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "stages": {
            k: {
                "seconds": round(v.seconds, 3),
                "ms_per_step": round(1000 * v.seconds / max(v.steps, 1), 2),
            }
            for k, v in p.stages.items()
        },
        "settings": {
            "w_steps": settings.w_steps,
            "wplus_steps": settings.wplus_steps,
            "tune_steps": settings.tune_steps,
        },
    }


def run(args: argparse.Namespace) -> dict:
    from dragfu.device import choose_device
    from dragfu.models import load_generator

    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    # `--images 0 --speed-512` times the 512 config alone (no toy model needed).
    G = load_generator(args.model, device) if args.images > 0 else None
    settings = _settings(args)
    started = time.perf_counter()
    result: dict = {
        "model": str(args.model),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "images": args.images,
        "first_image": args.first_image,
        "render_seed": args.seed,
        "settings": settings.to_dict(),
        "load_average_start": load_average(),
    }
    photos = held_out_renders(args.first_image + args.images, args.seed)[args.first_image :]
    if G is None:
        pass
    elif args.sweep:
        result["sweep"] = sweep(G, photos, args)
    else:
        table, per_image, projections = quality(G, photos, settings)
        result["quality"] = table
        result["per_image"] = per_image
        if not args.no_drag and args.drag_images > 0:
            try:
                import dragfu.drag  # noqa: F401
            except ImportError:
                result["drag"] = "not run: dragfu.drag is not available"
            else:
                count = min(args.drag_images, len(projections))
                result["drag"] = drag_section(G, photos[:count], projections[:count], args)
        tuned = table.get("W+ tuned", {})
        result["targets"] = {
            "wplus_psnr_ge_24": table.get("W+", {}).get("psnr", {}).get("mean", 0) >= 24,
            "tuned_psnr_ge_30": tuned.get("psnr", {}).get("mean", 0) >= 30,
            "default_seconds_le_60": tuned.get("seconds", {}).get("max", math.inf) <= 60,
        }
        drag_result = result.get("drag")
        if isinstance(drag_result, dict):
            ratios = [
                drag_result[k].get("md_ratio_projected_over_generated")
                for k in ("1pt", "5pt")
                if isinstance(drag_result.get(k), dict)
            ]
            if all(r is not None for r in ratios) and ratios:
                result["targets"]["drag_md_within_1_5x"] = max(ratios) <= 1.5
    if args.speed_512:
        result["speed_512"] = speed_512(device, settings)
    result["load_average_end"] = load_average()
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result
