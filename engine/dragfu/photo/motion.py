"""The edit as motion: a dense field between the projection and the dragged image.

DragGAN moves content; most of what changes between the image before and after a drag is
explained by a smooth motion, which can be carried to the photo's own pixels (paste.py). What
the motion cannot explain (a mouth that opens shows teeth, say) is the residual after warping.

The field comes from OpenCV's DIS optical flow (Kroeger et al. 2016), run per colour channel on
the model's images at twice their size and merged by each channel's local contrast (the toy
faces' parts differ in hue more than in brightness, which a grey image would lose).
"""

from __future__ import annotations

import cv2
import numpy as np

FLOW_UPSCALE = 2
# Motion below this (model px) is the flow's own noise: it is set to zero, so that the photo is
# copied, not resampled, where the drag moved nothing.
STILL_BELOW = 0.06
MOVING_ABOVE = 0.18


def _dis() -> cv2.DISOpticalFlow:
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    dis.setFinestScale(0)
    dis.setVariationalRefinementIterations(5)
    return dis


def smoothstep(x: np.ndarray, low: float, high: float) -> np.ndarray:
    t = np.clip((x - low) / (high - low), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def motion_field(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Backward motion [H, W, 2] (model px, float32): the content at pixel q of `after` came
    from q + field[q] in `before`. Motion below STILL_BELOW is zero."""
    if before.shape != after.shape:
        raise ValueError(f"images differ in shape: {before.shape} vs {after.shape}")
    height, width = before.shape[:2]
    big = (width * FLOW_UPSCALE, height * FLOW_UPSCALE)
    b = cv2.resize(before, big, interpolation=cv2.INTER_CUBIC)
    a = cv2.resize(after, big, interpolation=cv2.INTER_CUBIC)
    dis = _dis()
    flows, weights = [], []
    for c in range(3):
        flow = dis.calc(np.ascontiguousarray(a[..., c]), np.ascontiguousarray(b[..., c]), None)
        gx = cv2.Sobel(a[..., c], cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(a[..., c], cv2.CV_32F, 0, 1, ksize=3)
        contrast = cv2.GaussianBlur(gx * gx + gy * gy, (0, 0), 4.0) + 1.0
        flows.append(flow)
        weights.append(contrast)
    total = sum(weights)
    merged = sum(f * w[..., None] for f, w in zip(flows, weights, strict=True)) / total[..., None]
    field = cv2.resize(merged, (width, height), interpolation=cv2.INTER_AREA) / FLOW_UPSCALE
    magnitude = np.linalg.norm(field, axis=-1)
    return (field * smoothstep(magnitude, STILL_BELOW, MOVING_ABOVE)[..., None]).astype(np.float32)


def warp(image: np.ndarray, field: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """image sampled at q + field[q] (the backward warp), same size; edges continue outside."""
    height, width = field.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    return cv2.remap(
        image, xs + field[..., 0], ys + field[..., 1], interpolation,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip


def unexplained_change(before: np.ndarray, after: np.ndarray, field: np.ndarray) -> np.ndarray:
    """[H, W, 3] float32: after minus before warped by the field (0-255 units): the change that
    motion does not explain."""
    warped = warp(before.astype(np.float32), field)
    return after.astype(np.float32) - warped
