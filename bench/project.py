"""Projection benchmark: held-out toy renders (drawn by the renderer, never by the model) projected
into the toy model, the stand-in for projecting users' photos.

Sections:
- quality: PSNR / SSIM / seconds of W, W + tuning (the default; W + W+ + tuning when the W+
  stage is on) and W + W+ (what `--no-tune` returns, projected separately unless --skip-no-tune).
  Each configuration's numbers are those of its last stage (a stage never depends on later ones,
  so this equals running the shorter configuration alone), its seconds the total minus the later
  stages.
- drag: landmark drags on the projected renders (1 and 5 points, targets = another render's
  landmarks, as in `python -m bench drag`'s manipulation set-up) with the tuned generator; mean distance
  (MD) of the detected landmarks to the targets, next to the same drags on generated images; and
  1-point drags with a movable-region mask: PSNR outside the region against the input photo.
- sweep (`--sweep`): the candidate settings the defaults were chosen from, on the first images.
- speed_512 (`--speed-512`): seconds of one default projection on NVIDIA's 512 config (random
  weights; a GPU number).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from bench.stats import log, summarise
from dragfu.errors import BadInputError
from dragfu.project import ProjectSettings, project
from dragfu.project.losses import psnr
from dragfu.project.settings import WPLUS_STEPS_WITHOUT_TUNING

ARMS = ("projected", "generated")  # whose landmarks are dragged

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
    parser.add_argument(
        "--arms", default="projected,generated",
        help="whose landmarks are dragged: projected renders, generated images, or both",
    )  # fmt: skip
    parser.add_argument("--no-drag", action="store_true")
    parser.add_argument(
        "--skip-no-tune", action="store_true",
        help="do not also project each image as --no-tune does (W, then W+ refinement)",
    )  # fmt: skip
    parser.add_argument("--sweep", action="store_true", help="compare candidate settings instead")
    parser.add_argument("--sweep-only", default="", help="comma list of sweep labels (default all)")
    parser.add_argument("--speed-512", action="store_true", help="also time the 512 config")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: as is)")
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--project-setting", action="append", default=[], metavar="NAME=VALUE",
        help="a ProjectSettings field, e.g. locality_weight=1 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--setting", action="append", default=[], metavar="NAME=VALUE",
        help="a DragSettings field for every drag, e.g. lr=0.002 (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--cache", default=None, metavar="DIR",
        help="keep the projections in this projection cache: a rerun with other drag settings "
        "projects nothing again",
    )  # fmt: skip
    parser.add_argument(
        "--merge", nargs="+", metavar="RESULT.json",
        help="merge the drag edits and per-image rows of these runs instead of running",
    )  # fmt: skip
    parser.add_argument(
        "--save-lost", default=None, metavar="DIR",
        help="write before | after | target PNGs of the drags that lost a landmark",
    )  # fmt: skip


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
    from bench.drag import parse_settings

    base = ProjectSettings(
        w_steps=args.w_steps,
        wplus_steps=args.wplus_steps,
        tune_steps=args.tune_steps,
        perceptual=args.perceptual,
    )
    given = parse_settings(getattr(args, "project_setting", None))
    return ProjectSettings.from_dict({**base.to_dict(), **given, **changes})


def quality(
    G, photos, settings: ProjectSettings, cache=None, first_image: int = 0, no_tune_row: bool = True
) -> tuple[dict, list, list]:
    """PSNR / SSIM / seconds per configuration: W and the full projection from the `settings`
    projection (with W+ in between when its stage runs), and with `no_tune_row` also what
    `dragfu project --no-tune` returns (W, then W+ refinement), projected separately.
    Cache hits (a ProjectionCache given) count no seconds."""
    tuned = "W + W+ + tuning" if settings.wplus_steps else "W + tuning"
    rows: dict[str, list] = {"W": [], "W + W+": [], tuned: [], "W + W+ (--no-tune)": []}
    no_tune = settings.replace(tune_steps=0, wplus_steps=WPLUS_STEPS_WITHOUT_TUNING)
    per_image, projections = [], []
    cpu_seconds = []

    def projection_of(photo: np.ndarray, chosen: ProjectSettings):
        if cache is None:
            return project(G, photo, settings=chosen)
        return cache.get_or_project(G, photo, settings=chosen)

    def add(config: str, p, stage: str, later: tuple[str, ...]) -> None:
        stages = p.stages
        seconds = p.seconds - sum(stages[s].seconds for s in later if s in stages)
        if p.cached:
            seconds = math.nan  # a cache hit's seconds are a file read, not a projection
        rows[config].append((stages[stage].psnr, stages[stage].ssim, seconds))

    for index, (photo, _) in enumerate(photos):
        cpu_start = time.process_time()  # CPU time of this process: what the load does not inflate
        p = projection_of(photo, settings)
        cpu_seconds.append(time.process_time() - cpu_start)
        projections.append(p)
        for config, stage, later in (
            ("W", "w", ("w+", "tune")), ("W + W+", "w+", ("tune",)), (tuned, "tune", ()),
        ):  # fmt: skip
            if stage in p.stages:
                add(config, p, stage, later)
        row = {
            "image": first_image + index,
            "cpu_seconds": round(cpu_seconds[-1], 2),
            **p.quality(),
        }
        if no_tune_row and no_tune.w_steps and no_tune.wplus_steps and settings.tune_steps:
            q = projection_of(photo, no_tune)
            add("W + W+ (--no-tune)", q, "w+", ())
            row["no_tune"] = q.quality()
        per_image.append(row)
        log(
            f"project {index + 1}/{len(photos)}: "
            + ", ".join(f"{k} {v.psnr:.2f} dB" for k, v in p.stages.items())
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
    if tuned in table and not any(p.cached for p in projections):
        table[tuned]["cpu_seconds"] = summarise(cpu_seconds, extremes=True)
    return table, per_image, projections


def drag_section(G, photos, projections, args) -> dict:
    from bench.drag import (
        FIVE,
        edit_row,
        landmarks_of,
        mean_distance,
        movable_box,
        settings_of,
        still_to_move,
    )
    from dragfu.drag import drag
    from dragfu.models.seeds import DEFAULT_PSI, to_uint8, ws_from_seed
    from dragfu.toy import LANDMARK_NAMES

    first = args.first_image
    overrides = settings_of(args)
    arms = args.arms.split(",")
    # whose landmarks are the targets
    goals = held_out_renders(first + len(projections), args.seed + 1)[first:]
    edits: list[dict] = []
    fidelity: list[dict] = []
    for index, p in enumerate(projections):
        photo = photos[index][0]
        goal = goals[index][0]
        # Drawn per image, so that a run split by --first-image draws what one run draws.
        rng = np.random.RandomState([args.seed, first + index])
        ws_generated = ws_from_seed(G, 50_000 + first + index, DEFAULT_PSI)
        generated = None
        if "generated" in arms:
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
                if kind not in arms:
                    continue
                handles = landmarks_of(image, names)
                if handles is None or mean_distance(handles, targets) < 1.0:
                    continue
                moving = still_to_move(handles, targets)
                result = drag(
                    generator, ws.to(next(generator.parameters()).device),
                    handles[moving].tolist(), targets[moving].tolist(), max_steps=args.drag_steps,
                    **overrides,
                )  # fmt: skip
                # summarise_manipulation's rows: one "method" per arm
                row = edit_row(kind, names, handles, targets, moving, result)
                edits.append({"image": first + index, **row})
                if row["md"] is None and args.save_lost:
                    save_lost(args.save_lost, edits[-1], image, result.image, goal)
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
                [target.tolist()], mask=mask, max_steps=args.drag_steps, **overrides,
            )  # fmt: skip
            weight = (~mask).astype(np.float64)
            found = landmarks_of(result.image, [name])
            fidelity.append(
                {
                    "image": first + index,
                    "drag_vs_photo": round(psnr(result.image, photo, weight), 4),
                    "reconstruction_vs_photo": round(psnr(p.reconstruction, photo, weight), 4),
                    "md_masked": None if found is None else round(
                        mean_distance(found, target[None]), 4
                    ),
                }
            )  # fmt: skip
        log(f"drag {index + 1}/{len(projections)}: load {load_average()}")
    out = drag_table(edits, fidelity)
    out["settings"] = overrides
    out["edits"] = edits
    out["fidelity_edits"] = fidelity
    return out


def drag_table(edits: list[dict], fidelity: list[dict]) -> dict:
    """Per point count: the projected and generated rows, landmarks lost per kind, and the ratio
    of mean MDs (projected over generated) on the landmarks that survive and with a lost
    landmark counted as no progress (its distance before the drag); and the fidelity drags'
    PSNR outside the movable box against the photo."""
    from bench.drag import summarise_manipulation

    from_both = [e for e in edits if e["method"] in ARMS]
    table = summarise_manipulation(from_both) if from_both else {}
    out: dict = {"landmarks_lost": {"projected": 0, "generated": 0}}
    for key, row in table.items():
        # Doing nothing differs per arm (other faces), unlike in the drag benchmark's rows.
        row["md_nothing"] = {
            kind: summarise([e["md_nothing"] for e in from_both
                             if e["method"] == kind and f"{e['points']}pt" == key])
            for kind in ARMS
        }  # fmt: skip
        for kind in ARMS:
            if kind in row:
                out["landmarks_lost"][kind] += row[kind]["landmarks_lost"]
        if "projected" in row and "generated" in row:
            for measure in ("md", "md_lost_as_nothing"):
                projected = row["projected"][measure].get("mean")
                generated = row["generated"][measure].get("mean")
                if projected is not None and generated:
                    row[f"{measure}_ratio_projected_over_generated"] = round(
                        projected / generated, 3
                    )
        out[key] = row
    out["fidelity_outside_psnr"] = {
        measure: summarise([f[measure] for f in fidelity if f[measure] is not None], extremes=True)
        for measure in ("drag_vs_photo", "reconstruction_vs_photo", "md_masked")
    }
    return out


def merge(paths: list[str]) -> dict:
    """One table from runs over other images (`--first-image`): their edits and per-image rows.

    `RUN.json#projected` (or `#generated`) takes only that arm of a run, e.g. the generated images'
    drags from an earlier run next to a new run's drags on projections made with other projection
    settings (the generated arm does not depend on them). An arm's edit of an image given twice is
    refused."""
    runs, arms = [], []
    for path in paths:
        file, _, arm = path.partition("#")
        if arm and arm not in ARMS:
            raise BadInputError(f"{path}: the arm after # must be projected or generated")
        runs.append(json.loads(Path(file).read_text()))
        arms.append((arm,) if arm else ARMS)
    # Per-image projection rows (and the fidelity drags, made on projections) go with the
    # projected arm.
    per_image = [
        row
        for run, a in zip(runs, arms, strict=True)
        if "projected" in a
        for row in run.get("per_image", [])
    ]
    drags = [
        (run["drag"], a)
        for run, a in zip(runs, arms, strict=True)
        if isinstance(run.get("drag"), dict)
    ]
    out: dict = {
        "merged_from": [
            {"path": path, "first_image": run.get("first_image"), "images": run.get("images")}
            for path, run in zip(paths, runs, strict=True)
        ],
        "images": len(per_image),
        "quality": {
            stage: {
                measure: summarise(
                    [row["stages"][stage][measure] for row in per_image if stage in row["stages"]],
                    extremes=True,
                )
                for measure in ("psnr", "ssim")
            }
            for stage in ("w", "w+", "tune")
        },
    }
    if drags:
        settings = [d.get("settings", {}) for d, _ in drags]
        if any(s != settings[0] for s in settings):
            raise BadInputError(f"these runs dragged with other settings: {settings}")
        edits = [e for d, a in drags for e in d["edits"] if e["method"] in a]
        seen: set = set()
        for e in edits:
            key = (e["image"], e["points"], e["method"])
            if key in seen:
                raise BadInputError(f"image {key[0]}'s {key[1]}-point {key[2]} drag is in two runs")
            seen.add(key)
        fidelity = [f for d, a in drags if "projected" in a for f in d.get("fidelity_edits", [])]
        out["drag"] = drag_table(edits, fidelity)
        out["drag"]["settings"] = settings[0]
    return out


def save_lost(folder: str, edit: dict, before: np.ndarray, after: np.ndarray, goal: np.ndarray):
    """Before | after | the target render, side by side, for a drag that lost a landmark."""
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    name = f"image{edit['image']:02d}_{edit['points']}pt_{edit['method']}.png"
    Image.fromarray(np.concatenate([before, after, goal], axis=1)).save(os.path.join(folder, name))


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
    from bench.timing import synchronize
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

    if getattr(args, "merge", None):
        return merge(args.merge)
    unknown = set(args.arms.split(",")) - set(ARMS)
    if unknown:
        raise BadInputError(f"--arms: unknown {', '.join(sorted(unknown))}; choose from {ARMS}")
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
        cache = None
        if args.cache:
            from dragfu.project import ProjectionCache

            cache = ProjectionCache(args.cache, max_bytes=1 << 40)
        table, per_image, projections = quality(
            G, photos, settings, cache, args.first_image, not args.skip_no_tune
        )
        if cache is not None:
            result["projections_from_cache"] = cache.hits
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
        tuned = table.get("W + tuning", table.get("W + W+ + tuning", {}))
        wplus = table.get("W + W+ (--no-tune)", table.get("W + W+", {}))
        result["targets"] = {
            "wplus_psnr_ge_24": wplus.get("psnr", {}).get("mean", 0) >= 24,
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
