"""Drags that must work on the embedded toy model, measured with the toy landmark detector."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dragfu.drag import drag
from dragfu.models import load_generator
from dragfu.models.seeds import to_uint8, ws_from_seed
from dragfu.project.losses import psnr
from dragfu.toy.detector import detect


@pytest.fixture(scope="module")
def toy():
    return load_generator("toy")


def mouth_corner_drag(G, seed: int, offset=(5.0, 2.0)):
    ws = ws_from_seed(G, seed)
    with torch.no_grad():
        image = to_uint8(G.synthesis(ws))
    found = detect(image)
    assert "mouth_right" in found.points, found.missing
    handle = found.points["mouth_right"]
    return ws, image, handle, (handle[0] + offset[0], handle[1] + offset[1])


@pytest.mark.parametrize("method", ["default", "draggan"])
def test_mouth_corner_reaches_its_target(toy, method):
    ws, image, handle, target = mouth_corner_drag(toy, seed=2)
    result = drag(toy, ws, [handle], [target], method=method, max_steps=120)
    assert result.converged, result.points
    moved_to = detect(result.image).points["mouth_right"]
    assert np.hypot(moved_to[0] - target[0], moved_to[1] - target[1]) < 2.5
    assert np.hypot(moved_to[0] - handle[0], moved_to[1] - handle[1]) > 3.0  # it really moved


def test_mask_keeps_the_outside(toy):
    ws, image, handle, target = mouth_corner_drag(toy, seed=4)
    mask = np.zeros((128, 128), bool)
    x, y = int(handle[0]), int(handle[1])
    mask[max(0, y - 14) : y + 14, max(0, x - 14) : x + 20] = True
    result = drag(toy, ws, [handle], [target], mask=mask, max_steps=120)
    assert psnr(result.image, image, weight=(~mask).astype(float)) > 28.0
    moved_to = detect(result.image).points["mouth_right"]
    assert np.hypot(moved_to[0] - target[0], moved_to[1] - target[1]) < 3.0


def test_waypoints_are_visited_in_order(toy):
    ws, image, handle, _ = mouth_corner_drag(toy, seed=2)
    via = (handle[0] + 4.0, handle[1] + 4.0)
    target = (handle[0] + 8.0, handle[1])
    previews = []

    def keep(progress):
        if progress.preview is not None:
            previews.append(progress.preview)

    result = drag(toy, ws, [handle], [target], waypoints=[[via]], max_steps=200,
                  preview_every=2, callback=keep)  # fmt: skip
    # Where the mouth corner was in the pictures, as the toy detector (not the tracker) finds it.
    previews.append(result.image)
    path = np.array([detect(image).points["mouth_right"] for image in previews])
    closest_to_via = np.argmin(np.hypot(*(path - np.array(via)).T))
    assert np.hypot(*(path[closest_to_via] - np.array(via))) < 2.5
    assert path[closest_to_via, 1] > handle[1] + 2.0  # went down through the waypoint first
    assert closest_to_via < len(path) - 1  # ...before it reached the end
    assert np.hypot(*(path[-1] - np.array(target))) < 2.0


def test_a_pin_keeps_the_other_mouth_corner_in_place(toy):
    """Drag the right mouth corner; without a pin the left one moves along, with it pinned it
    stays (as the toy detector measures both)."""
    ws, image, handle, target = mouth_corner_drag(toy, seed=4, offset=(6.0, 2.0))
    pin = detect(image).points["mouth_left"]

    def left_corner_moved(pins):
        result = drag(toy, ws, [handle], [target], pins=pins, max_steps=120)
        found = detect(result.image).points
        corner = found["mouth_right"]
        assert np.hypot(corner[0] - target[0], corner[1] - target[1]) < 2.5  # the drag still works
        return float(np.hypot(found["mouth_left"][0] - pin[0], found["mouth_left"][1] - pin[1]))

    unpinned = left_corner_moved(None)
    pinned = left_corner_moved([pin])
    assert pinned < 1.5
    assert pinned < unpinned
