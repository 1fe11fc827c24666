"""The toy model as a generator of its world: landmark detection rate, coverage of the world's
parameter ranges, and realism, all against renders of the world and with no downloads.

- detection: z ~ N(0, I) at psi = 1 (and at the CLI's default psi), share of samples with all nine
  landmarks found by `dragfu.toy.detect`, and per landmark;
- coverage: statistics of the detected landmarks and part sizes (face centre spread, eye
  separation, mouth width and openness, eye openness, face size), samples vs renders, both
  measured by the same detector;
- realism: kernel distance (KID's estimator: unbiased squared MMD with the cubic polynomial kernel)
  between samples and renders, on 32x32 down-sampled pixels and on the detector's landmark + size
  vectors; renders vs other renders gives the floor (what a perfect generator would score).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from dragfu.toy import LANDMARK_NAMES, render, sample_params
from dragfu.toy.detector import detect

SIZE_KEYS = ("left_eye_open", "right_eye_open", "mouth_width", "mouth_open", "face_major")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="toy", help="model name or file (default: toy)")
    parser.add_argument("--samples", type=int, default=1000, help="samples and renders each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--psi", type=float, default=1.0, help="truncation of the main run")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--sheet",
        help="also write an 8x8 contact sheet of seeds 0-63 (PNG), e.g. docs/toy_samples.png",
    )


@torch.no_grad()
def generate(G, z: np.ndarray, psi: float, batch: int) -> np.ndarray:
    """[N, z_dim] latents -> [N, H, W, 3] uint8 images."""
    device = G.mapping.w_avg.device
    images = []
    for start in range(0, len(z), batch):
        chunk = torch.from_numpy(z[start : start + batch]).float().to(device)
        img = G(chunk, None, truncation_psi=psi, noise_mode="const")
        img = (img * 127.5 + 128).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        images.append(img.cpu().numpy())
    return np.concatenate(images)


def measure(images: np.ndarray) -> dict:
    """Detections of a set of images: completeness, landmark array, sizes."""
    detections = [detect(image) for image in images]
    points = np.stack([d.array() for d in detections])  # [N, 9, 2]
    sizes = np.array([[d.sizes.get(k, np.nan) for k in SIZE_KEYS] for d in detections])
    complete = np.array([d.complete for d in detections])
    return {"points": points, "sizes": sizes, "complete": complete}


def describe(values: np.ndarray) -> dict:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {"n": 0}
    p = np.percentile(values, [1, 5, 50, 95, 99])
    return {
        "n": int(len(values)),
        "mean": round(float(values.mean()), 3),
        "std": round(float(values.std()), 3),
        "min": round(float(values.min()), 3),
        "p1": round(float(p[0]), 3),
        "p5": round(float(p[1]), 3),
        "median": round(float(p[2]), 3),
        "p95": round(float(p[3]), 3),
        "p99": round(float(p[4]), 3),
        "max": round(float(values.max()), 3),
    }


def statistics(measured: dict) -> dict:
    points, sizes = measured["points"], measured["sizes"]
    index = {name: i for i, name in enumerate(LANDMARK_NAMES)}
    eye_l, eye_r = points[:, index["left_eye"]], points[:, index["right_eye"]]
    corner_l, corner_r = points[:, index["mouth_left"]], points[:, index["mouth_right"]]
    tilt = np.degrees(np.arctan2(eye_r[:, 1] - eye_l[:, 1], eye_r[:, 0] - eye_l[:, 0]))
    return {
        "face_x": describe(points[:, index["face"], 0]),
        "face_y": describe(points[:, index["face"], 1]),
        "eye_separation": describe(np.linalg.norm(eye_r - eye_l, axis=1)),
        "eye_line_tilt_deg": describe(tilt),
        "eye_open_half_height": describe(sizes[:, :2].reshape(-1)),
        "mouth_width": describe(np.linalg.norm(corner_r - corner_l, axis=1)),
        "mouth_open_height": describe(2 * sizes[:, 3]),
        "face_major_semi_axis": describe(sizes[:, 4]),
        "chin_y": describe(points[:, index["chin"], 1]),
    }


def kernel_distance(x: np.ndarray, y: np.ndarray) -> float:
    """KID's estimator: unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3."""
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def pixel_features(images: np.ndarray) -> np.ndarray:
    """[N, 128, 128, 3] uint8 -> [N, 3072]: 4x4 average-pooled, scaled to [-1, 1]."""
    n, h, w, c = images.shape
    pooled = images.reshape(n, h // 4, 4, w // 4, 4, c).mean(axis=(2, 4), dtype=np.float64)
    return pooled.reshape(n, -1) / 127.5 - 1.0


def landmark_features(measured: dict, reference: dict) -> np.ndarray:
    """Complete detections as [K, 23] vectors (landmarks + sizes), standardised by `reference`."""

    def raw(m):
        vectors = np.concatenate([m["points"].reshape(len(m["points"]), -1), m["sizes"]], axis=1)
        return vectors[m["complete"] & np.isfinite(vectors).all(axis=1)]

    ref = raw(reference)
    return (raw(measured) - ref.mean(axis=0)) / ref.std(axis=0)


def contact_sheet(G, path: str, psi: float) -> str:
    from PIL import Image

    z = np.concatenate([np.random.RandomState(seed).randn(1, G.z_dim) for seed in range(64)])
    images = generate(G, z.astype(np.float32), psi, batch=64)
    rows = [np.concatenate(list(images[r * 8 : r * 8 + 8]), axis=1) for r in range(8)]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, axis=0)).save(path, optimize=True)
    return path


def run(args: argparse.Namespace) -> dict:
    from dragfu.models import load_generator

    G = load_generator(args.model)
    n = args.samples
    started = time.perf_counter()
    z = np.random.RandomState(args.seed).randn(n, G.z_dim).astype(np.float32)
    samples = generate(G, z, args.psi, args.batch)
    generate_s = time.perf_counter() - started
    renders_rng = np.random.default_rng(args.seed)
    renders_a = np.stack([render(sample_params(renders_rng)) for _ in range(n)])
    renders_b = np.stack([render(sample_params(renders_rng)) for _ in range(n)])

    measured = measure(samples)
    ref_a, ref_b = measure(renders_a), measure(renders_b)
    per_landmark = np.isfinite(measured["points"][:, :, 0]).mean(axis=0)

    # At the CLI's default truncation too (what `dragfu sample` and the demo show).
    from dragfu.models.seeds import DEFAULT_PSI

    truncated = measure(generate(G, z, DEFAULT_PSI, args.batch))

    pix_s, pix_a, pix_b = (pixel_features(x) for x in (samples, renders_a, renders_b))
    lm_s, lm_a, lm_b = (landmark_features(m, ref_a) for m in (measured, ref_a, ref_b))
    result = {
        "model": str(getattr(G, "source_path", args.model)),
        "config": {k: G.init_kwargs[k] for k in ("z_dim", "w_dim", "channel_base", "channel_max")}
        | {"mapping_layers": G.init_kwargs["mapping_kwargs"].get("num_layers", 8)},
        "samples": n,
        "psi": args.psi,
        "detection": {
            "all_nine": round(float(measured["complete"].mean()), 4),
            "per_landmark": dict(
                zip(LANDMARK_NAMES, [round(float(v), 4) for v in per_landmark], strict=True)
            ),
            f"all_nine_at_psi_{DEFAULT_PSI}": round(float(truncated["complete"].mean()), 4),
            "renders_all_nine": round(float(ref_a["complete"].mean()), 4),
        },
        "statistics": {"samples": statistics(measured), "renders": statistics(ref_a)},
        "realism": {
            "kernel_distance_pixels_32": {
                "samples_vs_renders": round(kernel_distance(pix_s, pix_a), 5),
                "renders_vs_renders": round(kernel_distance(pix_b, pix_a), 5),
            },
            "kernel_distance_landmarks": {
                "samples_vs_renders": round(kernel_distance(lm_s, lm_a), 5),
                "renders_vs_renders": round(kernel_distance(lm_b, lm_a), 5),
            },
        },
        "speed": {"generate_ms_per_image": round(generate_s * 1000 / n, 2)},
    }
    sidecar = Path(str(getattr(G, "source_path", ""))).with_suffix(".json")
    if sidecar.is_file():
        result["training"] = json.loads(sidecar.read_text()).get("training")
    if args.sheet:
        result["contact_sheet"] = contact_sheet(G, args.sheet, psi=1.0)
    return result
