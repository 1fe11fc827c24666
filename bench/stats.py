"""What the benchmarks share: progress lines on stderr and the summary of a list of numbers."""

from __future__ import annotations

import math
import sys

import numpy as np


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def summarise(values: list[float], extremes: bool = False) -> dict:
    """Mean, median (and with `extremes` min and max) of the finite values, rounded, and n."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return {"n": 0}
    array = np.asarray(finite, dtype=np.float64)
    out = {"mean": round(float(array.mean()), 3), "median": round(float(np.median(array)), 3)}
    if extremes:
        out |= {"min": round(float(array.min()), 3), "max": round(float(array.max()), 3)}
    return {**out, "n": len(finite)}
