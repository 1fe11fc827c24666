"""One drag on a photo, start to end: region, alignment, projection, drag, paste-back.

What `dragfu drag IMAGE`, `dragfu demo` and `python -m bench.photo` run (the protocol server runs
the same steps split over its `project` and `drag` requests).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dragfu.drag import DragResult, drag
from dragfu.errors import BadInputError
from dragfu.models.seeds import to_uint8
from dragfu.photo.frame import PhotoFrame, choose_alignment

Point = tuple[float, float]
Box = tuple[int, int, int, int]  # (x0, y0, x1, y1)
# Side of the region around the drag points (photo px) the subject is looked for in; the same
# as the plug-in's (plugin/dragfu/dragfu_core/geometry.py CONTEXT_SIDE).
CONTEXT_SIDE = 1536


def mean_image(G) -> np.ndarray:
    """The model's image of its mean latent: the average subject alignment looks for."""
    ws = G.mapping.w_avg[None, None].repeat(1, G.num_ws, 1)
    with torch.no_grad():
        return to_uint8(G.synthesis(ws, noise_mode="const"))


def context_box(photo_size: tuple[int, int], points: Sequence[Point], model_size) -> Box:
    """A region of the model's shape around the points, CONTEXT_SIDE (or ten times their spread)
    on its shorter side, inside the photo."""
    width, height = photo_size
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    spread = float(np.ptp(pts, axis=0).max()) if len(pts) > 1 else 0.0
    side = max(CONTEXT_SIDE, 10 * spread)
    scale = min(side / min(model_size), width / model_size[0], height / model_size[1])
    box_w, box_h = round(scale * model_size[0]), round(scale * model_size[1])
    cx, cy = (pts.min(0) + pts.max(0)) / 2
    x0 = int(min(max(round(cx - box_w / 2), 0), width - box_w))
    y0 = int(min(max(round(cy - box_h / 2), 0), height - box_h))
    return x0, y0, x0 + box_w, y0 + box_h


@dataclass
class PhotoDrag:
    image: np.ndarray  # the whole photo with the edit
    box: Box | None  # the pixels that changed (photo coordinates); None: nothing changed
    region: Box  # the part of the photo the subject was looked for in
    frame: PhotoFrame  # alignment in region coordinates, the region before and after
    projection: Any
    result: DragResult
    points: list[Point]  # where the handles ended (photo coordinates)
    seconds: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def alignment(self):
        """The alignment in photo coordinates."""
        return self.frame.alignment.shifted(-self.region[0], -self.region[1])


def drag_photo(
    G,
    photo: np.ndarray,
    handles: Sequence[Point],
    targets: Sequence[Point],
    *,
    waypoints: Sequence[Sequence[Point]] | None = None,
    pins: Sequence[Point] | None = None,
    mask: np.ndarray | None = None,
    alignment: str | dict = "auto",
    paste: str = "warp",
    region: Box | None = None,
    cache: bool = True,
    project_settings=None,
    project_callback: Callable | None = None,
    drag_callback: Callable | None = None,
    **drag_settings,
) -> PhotoDrag:
    """Drag handles to targets (photo coordinates) on a photo of any size; mask (bool [H, W])
    is the region that may move; pins (photo coordinates) stay where they are. Nothing outside
    the changed box differs from the photo."""
    from dragfu.project import ProjectionCache, project

    seconds: dict[str, float] = {}
    photo = np.ascontiguousarray(photo[..., :3])
    height, width = photo.shape[:2]
    every = list(handles) + list(targets) + [p for route in waypoints or [] for p in route]
    every += list(pins or [])
    for x, y in every:
        if not (0 <= x <= width and 0 <= y <= height):
            raise BadInputError(f"drag point ({x:g}, {y:g}) is outside the {width}x{height} image")
    if mask is not None and mask.shape != (height, width):
        raise BadInputError(f"mask is {mask.shape[1]}x{mask.shape[0]}, the image {width}x{height}")
    x0, y0, x1, y1 = region or context_box((width, height), every, G.image_size)
    crop = photo[y0:y1, x0:x1]

    def local(points):
        return [(x - x0, y - y0) for x, y in points]

    started = time.perf_counter()
    similarity, notes = choose_alignment(
        crop, G.image_size, alignment, local(every), lambda: mean_image(G)
    )
    frame = PhotoFrame(crop, similarity, before=None)
    model_image = frame.model_image()
    seconds["align"] = time.perf_counter() - started

    started = time.perf_counter()
    kwargs = {"settings": project_settings, "callback": project_callback}
    if cache:
        projection = ProjectionCache().get_or_project(G, model_image, **kwargs)
    else:
        projection = project(G, model_image, **kwargs)
    frame.before = projection.reconstruction
    seconds["project"] = time.perf_counter() - started

    crop_mask = None if mask is None else mask[y0:y1, x0:x1]
    model_mask = None
    if crop_mask is not None:
        model_mask = frame.model_mask(crop_mask)
        if not model_mask.any():
            raise BadInputError("mask: the movable region lies outside the region the model sees")
    started = time.perf_counter()
    result = drag(
        projection.generator, projection.ws,
        frame.to_model(local(handles), "handle"), frame.to_model(local(targets), "target"),
        waypoints=[frame.to_model(local(w), "waypoint") for w in waypoints] if waypoints else None,
        pins=frame.to_model(local(pins), "pin") if pins else None,
        mask=model_mask, callback=drag_callback, **drag_settings,
    )  # fmt: skip
    seconds["drag"] = time.perf_counter() - started

    started = time.perf_counter()
    edit = frame.paste(result.image, crop_mask, paste)
    image = photo.copy()
    image[y0:y1, x0:x1] = edit.image
    seconds["warp"] = time.perf_counter() - started
    box = None
    if edit.box is not None:
        bx0, by0, bx1, by1 = edit.box
        box = (bx0 + x0, by0 + y0, bx1 + x0, by1 + y0)
    points = [(x + x0, y + y0) for x, y in frame.to_client(result.points)]
    return PhotoDrag(
        image, box, (x0, y0, x1, y1), frame, projection, result, points,
        {k: round(v, 4) for k, v in seconds.items()}, notes,
    )  # fmt: skip
