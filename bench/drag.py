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
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from bench.stats import log, summarise
from dragfu.device import choose_device
from dragfu.drag import METHODS, drag
from dragfu.errors import BadInputError
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
        "--first-pair",
        type=int,
        default=0,
        help="start at this pair (split a run across processes)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="merge the manipulation edits of these result files (runs over other pairs) instead of running",
    )
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
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a DragSettings field for every drag, e.g. lambda_fixed=40 (repeatable)",
    )


def landmarks_of(image: np.ndarray, names) -> np.ndarray | None:
    found = detect(image)
    if any(name not in found.points for name in names):
        return None
    return np.array([found.points[name] for name in names], dtype=np.float64)


def settings_of(args: argparse.Namespace) -> dict:
    """`--setting NAME=VALUE` options as DragSettings overrides."""
    return parse_settings(getattr(args, "setting", None))


def parse_settings(items: list[str] | None) -> dict:
    """NAME=VALUE strings as a dict; values parsed as JSON (numbers, true/false), else strings."""
    out = {}
    for item in items or []:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise BadInputError(f"setting {item!r}: expected NAME=VALUE")
        try:
            out[name] = json.loads(value)
        except json.JSONDecodeError:
            out[name] = value
    return out


def still_to_move(handles: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Which landmarks get a drag: those not already at their target (the engine refuses a
    handle within 0.5 px of its target). The others still count in the mean distance."""
    return np.linalg.norm(handles - targets, axis=1) >= 0.5


def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b, axis=1).mean())


def edit_row(method, names, handles, targets, moving, result) -> dict:
    """One drag of `names` from `handles` towards `targets` (only the `moving` ones given to the
    drag): MD before, after (None: a landmark was lost), and of the tracked points."""
    found = landmarks_of(result.image, names)
    return {
        "points": len(names),
        "landmarks": names[0] if len(names) == 1 else "",
        "method": method,
        "md_nothing": round(mean_distance(handles, targets), 4),
        "md": None if found is None else round(mean_distance(found, targets), 4),
        "md_tracked": round(mean_distance(np.array(result.points), targets[moving]), 4),
        "seconds": round(result.seconds, 3),
        "steps": result.steps,
    }


def one_point_landmark(seed: int, pair: int) -> str:
    """The landmark of a pair's 1-point drag: drawn per pair, so that any range of pairs
    (`--first-pair`) draws the same landmarks as the full run."""
    return LANDMARK_NAMES[np.random.RandomState([seed, pair]).randint(len(LANDMARK_NAMES))]


def manipulation(G, args, methods, counts) -> dict:
    edits, skipped = [], 0
    for pair in range(args.first_pair, args.first_pair + args.pairs):
        seed_a, seed_b = 10_000 + 2 * pair, 10_001 + 2 * pair
        ws_a = ws_from_seed(G, seed_a, args.psi)
        with torch.no_grad():
            image_a = to_uint8(G.synthesis(ws_a))
            image_b = to_uint8(G.synthesis(ws_from_seed(G, seed_b, args.psi)))
        for n in counts:
            names = (
                [one_point_landmark(args.seed, pair)]
                if n == 1
                else (FIVE if n == 5 else LANDMARK_NAMES)
            )
            handles, targets = landmarks_of(image_a, names), landmarks_of(image_b, names)
            if handles is None or targets is None:
                skipped += 1
                continue
            if mean_distance(handles, targets) < 1.0:
                continue
            moving = still_to_move(handles, targets)
            for method in methods:
                result = drag(
                    G,
                    ws_a,
                    handles[moving].tolist(),
                    targets[moving].tolist(),
                    method=method,
                    max_steps=args.max_steps,
                    feature_resolution=args.feature_resolution,
                    **settings_of(args),
                )
                edits.append(
                    {"pair": pair, **edit_row(method, names, handles, targets, moving, result)}
                )
        log(f"manipulation: pair {pair + 1 - args.first_pair}/{args.pairs}")
    return {"rows": summarise_manipulation(edits), "pairs_skipped_undetected": skipped,
            "edits": edits}  # fmt: skip


def summarise_manipulation(edits: list[dict]) -> dict:
    """Per point count: MD of doing nothing, and per method MD / lost / seconds / steps."""
    table: dict = {}
    for n in sorted({e["points"] for e in edits}):
        mine = [e for e in edits if e["points"] == n]
        first_method = mine[0]["method"]
        row = {
            "md_nothing": summarise([e["md_nothing"] for e in mine if e["method"] == first_method])
        }
        for method in dict.fromkeys(e["method"] for e in mine):
            done = [e for e in mine if e["method"] == method]
            row[method] = {
                "md": summarise([e["md"] for e in done if e["md"] is not None]),
                # The same with a lost landmark counted as no progress at all (its MD before).
                "md_lost_as_nothing": summarise(
                    [e["md"] if e["md"] is not None else e["md_nothing"] for e in done]
                ),
                "md_tracked": summarise([e["md_tracked"] for e in done]),
                "landmarks_lost": sum(e["md"] is None for e in done),
                "seconds_per_edit": summarise([e["seconds"] for e in done]),
                "steps": summarise([e["steps"] for e in done]),
            }
        table[f"{n}pt"] = row
    return table


def paired_reconstruction(G, args, methods) -> dict:
    edits = []
    for pair in range(args.first_pair, args.first_pair + args.pairs):
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
        edits.append({"pair": pair, "method": "doing_nothing", "psnr": psnr(image1, image2),
                      "ssim": ssim(image1, image2)})  # fmt: skip
        for method in methods:
            result = drag(
                G,
                w1,
                handles[moved].tolist(),
                targets[moved].tolist(),
                method=method,
                max_steps=args.max_steps,
                **settings_of(args),
            )
            edits.append({"pair": pair, "method": method, "psnr": psnr(result.image, image2),
                          "ssim": ssim(result.image, image2), "steps": result.steps})  # fmt: skip
        log(f"paired: {pair + 1 - args.first_pair}/{args.pairs}")
    return {**summarise_paired(edits), "edits": edits}


def summarise_paired(edits: list[dict]) -> dict:
    """Per method (and for doing nothing): PSNR and SSIM against G(w2)."""
    nothing = {e["pair"]: e for e in edits if e["method"] == "doing_nothing"}  # once per pair
    edits = [e for e in edits if e["method"] != "doing_nothing"] + list(nothing.values())
    return {
        method: {
            key: summarise([e[key] for e in edits if e["method"] == method])
            for key in ("psnr", "ssim")
        }
        for method in dict.fromkeys(e["method"] for e in edits)
    }


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
                    **settings_of(args),
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


def merge(paths: list[str]) -> dict:
    """One result from the per-edit rows of several runs (e.g. split by --first-pair)."""
    parts = [json.loads(Path(path).read_text()) for path in paths]
    out: dict = {
        "merged_from": [
            {
                "file": Path(path).name,
                "pairs": part["pairs"],
                "first_pair": part.get("first_pair", 0),
                "machine": part.get("machine"),
            }
            for path, part in zip(paths, parts, strict=True)
        ],  # fmt: skip
        # pairs covered: shards of different methods over the same pairs count once
        "pairs": len(
            {
                pair
                for part in parts
                for pair in range(
                    part.get("first_pair", 0), part.get("first_pair", 0) + part["pairs"]
                )
            }
        ),
    }
    manipulated = [part["manipulation"] for part in parts if "manipulation" in part]
    if manipulated:
        edits = [edit for section in manipulated for edit in section["edits"]]
        out["manipulation"] = {
            "rows": summarise_manipulation(edits),
            "pairs_skipped_undetected": sum(s["pairs_skipped_undetected"] for s in manipulated),
            "edits": edits,
        }
    paired = [edit for part in parts for edit in part.get("paired", {}).get("edits", [])]
    if paired:
        out["paired"] = {**summarise_paired(paired), "edits": paired}
    return out


def run(args: argparse.Namespace) -> dict:
    if args.merge:
        return merge(args.merge)
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
        "first_pair": args.first_pair,
        "settings": settings_of(args),
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
