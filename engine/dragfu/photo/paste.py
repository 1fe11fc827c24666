"""The drag carried back to the photo, at the photo's resolution.

`paste_edit` ("warp", the default): the photo's own pixels, moved by the drag's motion field
(motion.py) taken through the alignment to photo pixels, so grain, pores and JPEG texture move
with the content instead of being replaced by the generator's smooth re-render. The generator's
pixels count only where motion cannot explain the change (new content): there its change is
added on top of the warped photo. Pixels the drag did not move are copied, not resampled, and
outside the movable region (the selection) nothing changes, to the bit.

`paste_render` ("render"): the older behaviour, the generator's image put back through the
alignment (right for the model's own renders, soft on photos).

Both return the whole crop and the box that changed; everything is numpy / OpenCV over that box.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from dragfu.photo.alignment import Similarity, cv2_matrix
from dragfu.photo.motion import motion_field, smoothstep, unexplained_change

PASTE_MODES = ("warp", "render")
# Change left after warping (0-255 levels, blurred): below LOW it is the projection's own error,
# above HIGH it is new content the generator draws.
NEW_CONTENT_LOW, NEW_CONTENT_HIGH = 14.0, 40.0
# From this many photo px per model px on, pixels move by whole photo pixels (see paste_edit).
WHOLE_PIXEL_SCALE = 2.0


@dataclass
class PhotoEdit:
    image: np.ndarray  # uint8 [h, w, 3]: the photo crop with the edit
    box: tuple[int, int, int, int] | None  # (x0, y0, x1, y1) of the changed pixels; None: none
    stats: dict[str, float] = field(default_factory=dict)


def feather_alpha(
    shape: tuple[int, int],
    box: tuple[int, int, int, int],
    movable: np.ndarray | None,
    radius: float,
) -> np.ndarray:
    """Blend weight over box, float32 0..1: 0 outside the movable region and at the crop's border,
    rising to the selection's value `radius` px inside (the seam fades inwards, so nothing
    outside the selection changes)."""
    x0, y0, x1, y1 = box
    height, width = shape
    ys = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5
    xs = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5
    border = np.minimum(np.minimum(xs, width - xs), np.minimum(ys, height - ys))
    alpha = np.clip(border / max(radius, 1.0), 0.0, 1.0)
    if movable is not None:
        movable = np.asarray(movable)
        level = movable.astype(np.float32) / (255.0 if movable.dtype == np.uint8 else 1.0)
        inside = (level > 0).astype(np.uint8)
        # Distance to the nearest unselected pixel, on the box grown by the radius (an edge just
        # outside the box still counts).
        r = int(np.ceil(radius)) + 1
        gx0, gy0, gx1, gy1 = max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, width), min(y1 + r, height)
        distance = cv2.distanceTransform(inside[gy0:gy1, gx0:gx1], cv2.DIST_L2, 5)
        distance = distance[y0 - gy0 : y1 - gy0, x0 - gx0 : x1 - gx0]
        ramp = np.clip(distance / max(radius, 1.0), 0.0, 1.0)
        alpha = alpha * ramp * level[y0:y1, x0:x1]
    return alpha.astype(np.float32)


def largest_channel(values: np.ndarray) -> np.ndarray:
    """max |value| over the last axis (a few channels), without numpy's slow reduction over a
    short trailing axis.  [..., C] -> [...]"""
    largest = np.abs(values[..., 0])
    for c in range(1, values.shape[-1]):
        np.maximum(largest, np.abs(values[..., c]), out=largest)
    return largest


def _blend(photo, edited, alpha, box, changing) -> tuple[np.ndarray, tuple | None]:
    x0, y0, x1, y1 = box
    out = photo.copy()
    source = photo[y0:y1, x0:x1]
    original = source.astype(np.float32)
    mixed = original + alpha[..., None] * (edited - original)
    mixed = np.clip(np.rint(mixed, out=mixed), 0, 255, out=mixed).astype(np.uint8)
    keep = (alpha <= 0) | ~changing
    np.copyto(mixed, source, where=keep[..., None])
    out[y0:y1, x0:x1] = mixed
    changed = largest_channel(cv2.absdiff(mixed, source)) > 0
    if not changed.any():
        return out, None
    rows, cols = np.nonzero(changed.any(axis=1))[0], np.nonzero(changed.any(axis=0))[0]
    return out, (
        x0 + int(cols[0]),
        y0 + int(rows[0]),
        x0 + int(cols[-1]) + 1,
        y0 + int(rows[-1]) + 1,
    )


def _box_of(mask: np.ndarray, alignment: Similarity, shape, margin: float):
    """Photo box (x0, y0, x1, y1) covering the model-frame pixels where mask is set."""
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    corners = [(cols[0], rows[0]), (cols[-1] + 1, rows[0]), (cols[-1] + 1, rows[-1] + 1),
               (cols[0], rows[-1] + 1)]  # fmt: skip
    photo = alignment.to_photo(corners)
    height, width = shape
    x0 = max(int(np.floor(photo[:, 0].min() - margin)), 0)
    y0 = max(int(np.floor(photo[:, 1].min() - margin)), 0)
    x1 = min(int(np.ceil(photo[:, 0].max() + margin)), width)
    y1 = min(int(np.ceil(photo[:, 1].max() + margin)), height)
    return x0, y0, x1, y1


def _model_coordinates(alignment: Similarity, box) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV sampling maps (model pixels, centres at integers) of every photo pixel in box."""
    x0, y0, x1, y1 = box
    inverse = np.linalg.inv(np.vstack([cv2_matrix(alignment.matrix()), [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    qx = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    qy = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    return qx.astype(np.float32), qy.astype(np.float32)


def paste_edit(
    photo: np.ndarray,
    alignment: Similarity,
    before: np.ndarray,
    after: np.ndarray,
    movable: np.ndarray | None = None,
    *,
    feather: float | None = None,
) -> PhotoEdit:
    """The photo crop with the drag applied as motion of its own pixels (see the module doc).

    photo: uint8 [h, w, 3]; alignment: model frame -> this crop; before / after: the model's
    images of the projection and of the drag's result; movable: [h, w] selection (uint8 0-255
    or bool) or None (everything may move); feather: px of the inward fade (default 2 model px).
    """
    started = time.perf_counter()
    photo = np.ascontiguousarray(photo[..., :3])
    shape = photo.shape[:2]
    radius = feather if feather is not None else max(2.0, 2.0 * alignment.scale)
    motion = motion_field(before, after)
    change = unexplained_change(before, after, motion)
    change_level = cv2.GaussianBlur(np.abs(change).max(axis=-1), (0, 0), 1.0)
    new_content = smoothstep(change_level, NEW_CONTENT_LOW, NEW_CONTENT_HIGH)
    delta = change * new_content[..., None]
    moving = (np.linalg.norm(motion, axis=-1) > 0) | (new_content > 0)
    stats = {
        "new_content_share": round(float((new_content > 0.5).sum() / max(moving.sum(), 1)), 4),
        "moving_model_px": int(moving.sum()),
    }
    if not moving.any():
        stats["warp_seconds"] = round(time.perf_counter() - started, 4)
        return PhotoEdit(photo.copy(), None, stats)
    box = _box_of(moving, alignment, shape, margin=2 * alignment.scale + radius)
    if box[2] <= box[0] or box[3] <= box[1]:
        return PhotoEdit(photo.copy(), None, stats)
    qx, qy = _model_coordinates(alignment, box)
    zero = dict(borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    motion_here = cv2.remap(motion, qx, qy, cv2.INTER_LINEAR, **zero)
    delta_here = cv2.remap(delta, qx, qy, cv2.INTER_LINEAR, **zero)
    displacement = alignment.vectors_to_photo(motion_here).astype(np.float32)
    interpolation = cv2.INTER_LANCZOS4
    if alignment.scale >= WHOLE_PIXEL_SCALE:
        # Photo pixels much finer than the model's: move them by whole pixels, so every pixel
        # is a copy of one of the photo's (grain keeps its energy; resampling would blur it),
        # at most half a photo pixel (1 / (2 scale) model px) from the exact motion.
        displacement = np.rint(displacement)
        interpolation = cv2.INTER_NEAREST
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    warped = cv2.remap(
        photo, xs + displacement[..., 0], ys + displacement[..., 1], interpolation,
        borderMode=cv2.BORDER_REFLECT_101,
    ).astype(np.float32)  # fmt: skip
    edited = warped + delta_here
    changing = (largest_channel(displacement) > 1e-3) | (largest_channel(delta_here) > 0.25)
    alpha = feather_alpha(shape, box, movable, radius)
    image, changed = _blend(photo, edited, alpha, box, changing)
    stats["warp_seconds"] = round(time.perf_counter() - started, 4)
    return PhotoEdit(image, changed, stats)


def paste_render(
    photo: np.ndarray,
    alignment: Similarity,
    after: np.ndarray,
    movable: np.ndarray | None = None,
    *,
    feather: float | None = None,
) -> PhotoEdit:
    """The generator's image of the result, put back through the alignment over the whole frame."""
    started = time.perf_counter()
    photo = np.ascontiguousarray(photo[..., :3])
    shape = photo.shape[:2]
    radius = feather if feather is not None else max(2.0, 4.0 * alignment.scale)
    box = alignment.photo_bounds((shape[1], shape[0]))
    qx, qy = _model_coordinates(alignment, box)
    rendered = cv2.remap(after, qx, qy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    width, height = alignment.model_size
    inside = (qx >= -0.5) & (qx <= width - 0.5) & (qy >= -0.5) & (qy <= height - 0.5)
    alpha = feather_alpha(shape, box, movable, radius) * inside
    image, changed = _blend(photo, rendered.astype(np.float32), alpha, box, inside)
    return PhotoEdit(image, changed, {"warp_seconds": round(time.perf_counter() - started, 4)})
