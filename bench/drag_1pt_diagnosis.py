"""Why 1-point drags miss on the toy model: where the tracked handle ends versus where the detector
finds the landmark.

For each pair of the drag benchmark's manipulation set-up (seeds 10000 + 2 * pair and the next),
one landmark (drawn as the first benchmark version drew it: one RandomState(0) stream over the
pairs) is dragged from sample A's position to sample B's. One JSON line per drag: the landmark,
its distance to the target before, the tracked handle's and the detected landmark's distance to
the target after, and the gap between the two ("drift": the tracker followed something else).

    python -m bench.drag_1pt_diagnosis default 16 '{"lr": 0.004}' > variant.jsonl

The third argument overrides DragSettings fields. The variants measured this way are in
docs/results/drag_variants_1pt/ and docs/benchmarks.md (some were experimental settings that
were removed again because they did not help).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from bench.drag import landmarks_of
from dragfu.drag import drag
from dragfu.models import load_generator
from dragfu.models.seeds import DEFAULT_PSI, to_uint8, ws_from_seed
from dragfu.toy import LANDMARK_NAMES


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def main(method: str, pairs: int, overrides: dict) -> None:
    torch.set_num_threads(1)
    G = load_generator("toy").eval()
    rng = np.random.RandomState(0)
    for pair in range(pairs):
        ws_a = ws_from_seed(G, 10_000 + 2 * pair, DEFAULT_PSI)
        with torch.no_grad():
            image_a = to_uint8(G.synthesis(ws_a))
            image_b = to_uint8(G.synthesis(ws_from_seed(G, 10_001 + 2 * pair, DEFAULT_PSI)))
        names = [LANDMARK_NAMES[rng.randint(len(LANDMARK_NAMES))]]
        handle, target = landmarks_of(image_a, names), landmarks_of(image_b, names)
        if handle is None or target is None:
            continue
        started = time.perf_counter()
        result = drag(G, ws_a, handle.tolist(), target.tolist(), method=method, **overrides)
        found = landmarks_of(result.image, names)
        row = {
            "pair": pair,
            "name": names[0],
            "before": distance(handle, target),
            "tracked": distance(result.points, target),
            "detected": None if found is None else distance(found, target),
            "track_vs_det": None if found is None else distance(found, result.points),
            "steps": result.steps,
            "conv": result.converged,
            "sec": round(time.perf_counter() - started, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]) if len(sys.argv) > 3 else {})
