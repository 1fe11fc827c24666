"""Drag benchmark on the toy model, measured with the toy landmark detector.

Sections (the DragGAN paper's set-ups, Pan et al. 2023, Tables 1 and 2):
- manipulation: pairs of samples (A, B); drag A's landmarks to B's with 1, 5 and 9 points; mean
  distance (MD) of the landmarks detected in the result to the targets; MD of doing nothing.
- paired: w2 = w1 with its first 6 W+ vectors moved towards another sample; drag G(w1)'s
  landmarks to G(w2)'s; PSNR / SSIM of the result against G(w2).
- fidelity: 1-point drags with a movable-region mask; PSNR of the outside against the original.
- speed: seconds per step on the toy model and on the 512 config with random weights.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
import torch

from dragfu.device import choose_device
from dragfu.drag import METHODS, drag
from dragfu.models import Generator, load_generator
from dragfu.models.seeds import DEFAULT_PSI, to_uint8, ws_from_seed
from dragfu.project.losses import psnr, ssim
from dragfu.toy import LANDMARK_NAMES
from dragfu.toy.detector import detect

FIVE = ("left_eye", "right_eye", "mouth_left", "mouth_right", "chin")
SECTIONS = ("manipulation", "paired", "fidelity", "speed")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="toy")
    parser.add_argument("--pairs", type=int, default=100, help="sample pairs per section")
    parser.add_argument(
        "--points", default="1,5,9", help="point counts for the manipulation set-up"
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--sections", default=",".join(SECTIONS))
    parser.add_argument("--psi", type=float, default=DEFAULT_PSI)
    parser.add_argument("--speed-steps", type=int, default=10, help="steps timed on the 512 config")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--feature-resolution",
        type=int,
        default=None,
        help="override the feature block (both methods)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's)"
    )


def landmarks_of(image: np.ndarray, names) -> np.ndarray | None:
    found = detect(image)
    if any(name not in found.points for name in names):
        return None
    return np.array([found.points[name] for name in names], dtype=np.float64)


def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=1).mean())


def summarise(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    array = np.asarray(values, dtype=np.float64)
    return {
        "mean": round(float(array.mean()), 3),
        "median": round(float(np.median(array)), 3),
        "n": len(values),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def manipulation(G, args, methods, counts) -> dict:
    rng = np.random.RandomState(args.seed)
    rows = {
        f"{n}pt": {m: {"md": [], "seconds": [], "steps": [], "lost": 0} for m in methods}
        for n in counts
    }
    nothing = {f"{n}pt": [] for n in counts}
    skipped = 0
    for pair in range(args.pairs):
        seed_a, seed_b = 10_000 + 2 * pair, 10_001 + 2 * pair
        ws_a = ws_from_seed(G, seed_a, args.psi)
        with torch.no_grad():
            image_a = to_uint8(G.synthesis(ws_a))
            image_b = to_uint8(G.synthesis(ws_from_seed(G, seed_b, args.psi)))
        for n in counts:
            names = (
                [LANDMARK_NAMES[rng.randint(len(LANDMARK_NAMES))]]
                if n == 1
                else (FIVE if n == 5 else LANDMARK_NAMES)
            )
            handles, targets = landmarks_of(image_a, names), landmarks_of(image_b, names)
            if handles is None or targets is None:
                skipped += 1
                continue
            if mean_distance(handles, targets) < 1.0:
                continue
            nothing[f"{n}pt"].append(mean_distance(handles, targets))
            for method in methods:
                result = drag(
                    G,
                    ws_a,
                    handles.tolist(),
                    targets.tolist(),
                    method=method,
                    max_steps=args.max_steps,
                    feature_resolution=args.feature_resolution,
                )
                row = rows[f"{n}pt"][method]
                found = landmarks_of(result.image, names)
                if found is None:
                    row["lost"] += 1
                else:
                    row["md"].append(mean_distance(found, targets))
                row["seconds"].append(result.seconds)
                row["steps"].append(result.steps)
        log(f"manipulation: pair {pair + 1}/{args.pairs}")
    table = {}
    for key, per_method in rows.items():
        table[key] = {"md_nothing": summarise(nothing[key])}
        for method, row in per_method.items():
            table[key][method] = {
                "md": summarise(row["md"]),
                "landmarks_lost": row["lost"],
                "seconds_per_edit": summarise(row["seconds"]),
                "steps": summarise(row["steps"]),
            }
    return {"rows": table, "pairs_skipped_undetected": skipped}


def paired_reconstruction(G, args, methods) -> dict:
    scores = {m: {"psnr": [], "ssim": [], "md": []} for m in methods}
    baseline = {"psnr": [], "ssim": []}
    for pair in range(args.pairs):
        w1 = ws_from_seed(G, 20_000 + pair, args.psi)
        other = ws_from_seed(G, 30_000 + pair, args.psi)
        w2 = w1.clone()
        w2[:, :6] = torch.lerp(w1[:, :6], other[:, :6], 0.5)
        with torch.no_grad():
            image1, image2 = to_uint8(G.synthesis(w1)), to_uint8(G.synthesis(w2))
        handles, targets = (
            landmarks_of(image1, LANDMARK_NAMES),
            landmarks_of(image2, LANDMARK_NAMES),
        )
        if handles is None or targets is None:
            continue
        moved = np.linalg.norm(handles - targets, axis=1) >= 1.0
        if not moved.any():
            continue
        baseline["psnr"].append(psnr(image1, image2))
        baseline["ssim"].append(ssim(image1, image2))
        for method in methods:
            result = drag(
                G,
                w1,
                handles[moved].tolist(),
                targets[moved].tolist(),
                method=method,
                max_steps=args.max_steps,
            )
            scores[method]["psnr"].append(psnr(result.image, image2))
            scores[method]["ssim"].append(ssim(result.image, image2))
        log(f"paired: {pair + 1}/{args.pairs}")
    out = {"doing_nothing": {k: summarise(v) for k, v in baseline.items()}}
    for method, values in scores.items():
        out[method] = {k: summarise(v) for k, v in values.items() if v}
    return out


def movable_box(handle: np.ndarray, target: np.ndarray, size: int, margin: int = 14) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    x0, y0 = np.floor(np.minimum(handle, target) - margin).astype(int).clip(0, size)
    x1, y1 = np.ceil(np.maximum(handle, target) + margin).astype(int).clip(0, size)
    mask[y0:y1, x0:x1] = True
    return mask


def fidelity(G, args, methods) -> dict:
    rng = np.random.RandomState(args.seed + 1)
    outside = {m: {"masked": [], "unmasked": [], "md_masked": []} for m in methods}
    for pair in range(args.pairs):
        ws_a = ws_from_seed(G, 40_000 + pair, args.psi)
        with torch.no_grad():
            image_a = to_uint8(G.synthesis(ws_a))
        name = ("mouth_left", "mouth_right", "mouth", "left_eye", "right_eye")[rng.randint(5)]
        handle = landmarks_of(image_a, [name])
        if handle is None:
            continue
        angle = rng.uniform(0, 2 * math.pi)
        target = (handle[0] + 5.0 * np.array([math.cos(angle), math.sin(angle)])).clip(
            1, G.img_resolution - 1
        )
        mask = movable_box(handle[0], target, G.img_resolution)
        for method in methods:
            for key, m in (("masked", mask), ("unmasked", None)):
                result = drag(
                    G,
                    ws_a,
                    handle.tolist(),
                    [target.tolist()],
                    mask=m,
                    method=method,
                    max_steps=args.max_steps,
                )
                outside[method][key].append(
                    psnr(result.image, image_a, weight=(~mask).astype(np.float64))
                )
                if key == "masked":
                    found = landmarks_of(result.image, [name])
                    if found is not None:
                        outside[method]["md_masked"].append(mean_distance(found, target[None]))
        log(f"fidelity: {pair + 1}/{args.pairs}")
    return {
        m: {f"outside_psnr_{k}" if k != "md_masked" else k: summarise(v) for k, v in d.items()}
        for m, d in outside.items()
    }


def speed(G_toy, args, methods, device) -> dict:
    out = {}
    configs = {"toy": G_toy}
    torch.manual_seed(0)
    configs["512"] = Generator(
        z_dim=512, c_dim=0, w_dim=512, img_resolution=512, channel_base=32768, channel_max=512,
        mapping_kwargs={"num_layers": 8}, conv_clamp=256,
    ).eval().requires_grad_(False).to(device)  # fmt: skip
    for name, G in configs.items():
        ws = ws_from_seed(G, 1, args.psi)
        size = G.img_resolution
        handles, targets = [(size * 0.4, size * 0.5)], [(size * 0.6, size * 0.5)]
        steps = args.speed_steps if name == "512" else max(args.speed_steps, 30)
        out[name] = {}
        for method in methods:
            drag(G, ws, handles, targets, method=method, max_steps=2)  # warm-up
            result = drag(
                G, ws, handles, targets, method=method, max_steps=steps, stop_distance=0.01
            )
            out[name][method] = {
                "seconds_per_step": round(result.seconds_per_step, 5),
                "steps": result.steps,
            }
        if "default" in out[name] and "draggan" in out[name]:
            ratio = (
                out[name]["default"]["seconds_per_step"] / out[name]["draggan"]["seconds_per_step"]
            )
            out[name]["ours_over_published"] = round(ratio, 3)
        log(f"speed: {name} done")
    return out


def run(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = choose_device(args.device)
    G = load_generator(args.model, device)
    methods = [m for m in args.methods.split(",") if m]
    counts = [int(n) for n in args.points.split(",") if n]
    sections = [s for s in args.sections.split(",") if s]
    started = time.perf_counter()
    result: dict = {
        "model": args.model,
        "device": str(device),
        "pairs": args.pairs,
        "max_steps": args.max_steps,
    }
    if "manipulation" in sections:
        result["manipulation"] = manipulation(G, args, methods, counts)
    if "paired" in sections:
        result["paired"] = paired_reconstruction(G, args, methods)
    if "fidelity" in sections:
        result["fidelity"] = fidelity(G, args, methods)
    if "speed" in sections:
        result["speed"] = speed(G, args, methods, device)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result
