"""The toy-faces world: renderer, exact landmarks, and a colour-segmentation landmark detector."""

from dragfu.toy.detector import Detection, detect
from dragfu.toy.world import (
    LANDMARK_NAMES,
    NUM_PARAMS,
    PARAM_RANGES,
    WORLD_SIZE,
    ToyParams,
    landmark_array,
    landmarks,
    params_from_unit,
    params_from_z,
    render,
    render_with_coverage,
    sample_params,
)

__all__ = [
    "Detection",
    "detect",
    "LANDMARK_NAMES",
    "NUM_PARAMS",
    "PARAM_RANGES",
    "WORLD_SIZE",
    "ToyParams",
    "landmark_array",
    "landmarks",
    "params_from_unit",
    "params_from_z",
    "render",
    "render_with_coverage",
    "sample_params",
]
