"""The drag engine's mechanics on a small random generator (convergence on the toy model: test_drag_toy)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from dragfu.drag import DragSettings, drag
from dragfu.drag.draggan import (
    disk_offsets,
    motion_supervision,
    parabola_vertex,
    sample_features,
    step_directions,
    track_points,
)
from dragfu.drag.engine import WaypointRoute
from dragfu.errors import BadInputError, CancelledError
from tests.conftest import make_tiny_generator


@pytest.fixture(scope="module")
def setup():
    G = make_tiny_generator(resolution=32)
    ws = G.mapping(torch.randn(1, G.z_dim, generator=torch.Generator().manual_seed(0)))
    return G, ws


def test_sample_features_follows_the_pixel_centre_convention():
    # A map whose value is its x index: sampling at pixel centre i + 0.5 returns i exactly.
    R = 8
    features = torch.arange(R, dtype=torch.float32).repeat(R, 1)[None, None]
    points = torch.tensor([[0.5, 3.5], [3.5, 0.5], [4.0, 2.5], [7.5, 7.5]])
    values = sample_features(features, points, image_size=R)[:, 0]
    assert values.tolist() == pytest.approx([0.0, 3.0, 3.5, 7.0])
    # At image size 2R each image pixel maps onto half a feature pixel.
    assert sample_features(features, torch.tensor([[5.0, 5.0]]), image_size=16)[
        0, 0
    ] == pytest.approx(2.0)


def test_disk_offsets():
    disk = disk_offsets(1.0)
    assert sorted(map(tuple, disk.tolist())) == [(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)]
    assert len(disk_offsets(3.0)) == 29


def test_step_directions_bounded_never_overshoot():
    handles = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    targets = torch.tensor([[10.0, 0.0], [0.3, 0.4]])
    assert step_directions(handles, targets, bounded=False).norm(dim=-1).tolist() == pytest.approx(
        [1, 1]
    )
    bounded = step_directions(handles, targets, bounded=True)
    assert bounded[0].tolist() == pytest.approx([1, 0])
    assert bounded[1].tolist() == pytest.approx([0.3, 0.4])  # exactly onto the target


def test_track_points_finds_a_shifted_template_with_subpixel_accuracy():
    # A smooth blob moved by (2.3, -1.6) pixels must be found there.
    size = 32
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")

    def blob(cx, cy):
        r2 = (xx - cx) ** 2 + (yy - cy) ** 2
        return torch.stack([torch.exp(-r2 / 18), torch.exp(-r2 / 50), xx / size])[None]

    before, after = blob(14.0, 15.0), blob(16.3, 13.4)
    templates = sample_features(before, torch.tensor([[14.0, 15.0]]), size)
    whole = track_points(after, templates, torch.tensor([[14.0, 15.0]]), 4, size, subpixel=False)
    fine = track_points(after, templates, torch.tensor([[14.0, 15.0]]), 4, size, subpixel=True)
    assert whole[0].tolist() == [16.0, 13.0]
    assert (fine[0] - torch.tensor([16.3, 13.4])).norm() < (
        whole[0] - torch.tensor([16.3, 13.4])
    ).norm()
    assert (fine[0] - torch.tensor([16.3, 13.4])).norm() < 0.25


def test_parabola_vertex():
    assert parabola_vertex(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(1.0)) == 0
    assert parabola_vertex(torch.tensor(2.0), torch.tensor(0.5), torch.tensor(1.0)) > 0
    assert parabola_vertex(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(1.0)) == 0


def test_subpixel_tracking_leaves_a_handle_on_an_unchanged_image_where_it_is():
    """Nothing moved, so the best match is the handle itself, wherever it lies between pixels and
    however lopsided the features around it are (the parabola through lopsided L1 distances used
    to move it by up to half a pixel every step)."""
    size = 32
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    features = torch.stack([torch.exp(-((xx - 9.0) ** 2) / 6), (yy / size) ** 3, torch.sin(xx / 3)])
    features = features[None]
    for handle in ([12.0, 26.0], [12.37, 25.81], [20.5, 7.25]):
        start = torch.tensor([handle])
        templates = sample_features(features, start, size)
        points = start
        for _ in range(5):
            points = track_points(features, templates, points, 3, size, subpixel=True)
        assert (points - start).norm() < 1e-4, (handle, points.tolist())


def test_motion_supervision_gradient_moves_features_forward():
    # Content at x, a step to the right: the loss decreases when features shift right.
    features = torch.zeros(1, 1, 16, 16)
    features[..., 6:9] = 1.0
    features.requires_grad_(True)
    handles = torch.tensor([[7.5, 7.5]])
    directions = torch.tensor([[1.0, 0.0]])
    loss = motion_supervision(features, handles, directions, torch.tensor([True]), 2.0, 16)
    loss.backward()
    assert loss.item() > 0
    assert features.grad[0, 0, 7, 9] < 0  # the pixel just ahead must grow towards the content


def test_validation_errors(setup):
    G, ws = setup
    with pytest.raises(BadInputError, match="no drag"):
        drag(G, ws, [], [])
    with pytest.raises(BadInputError, match="outside the 32x32"):
        drag(G, ws, [(40, 5)], [(10, 10)])
    with pytest.raises(BadInputError, match="already at its target"):
        drag(G, ws, [(10, 10)], [(10.2, 10)])
    with pytest.raises(BadInputError, match="2 handles but 1 targets"):
        drag(G, ws, [(10, 10), (12, 12)], [(5, 5)])
    with pytest.raises(BadInputError, match="mask is 16x16"):
        drag(G, ws, [(10, 10)], [(5, 5)], mask=np.ones((16, 16), bool))
    with pytest.raises(BadInputError, match="movable region is empty"):
        drag(G, ws, [(10, 10)], [(5, 5)], mask=np.zeros((32, 32), bool))
    with pytest.raises(BadInputError, match="unknown drag method"):
        drag(G, ws, [(10, 10)], [(5, 5)], method="magic")
    with pytest.raises(BadInputError, match="NaN"):
        drag(G, ws * float("nan"), [(10, 10)], [(5, 5)])
    with pytest.raises(BadInputError, match="latent has shape"):
        drag(G, ws[:, :3], [(10, 10)], [(5, 5)])


@pytest.mark.parametrize("method", ["default", "draggan"])
def test_only_the_first_ws_change_and_runs_are_deterministic(setup, method):
    G, ws = setup
    a = drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], method=method, max_steps=5, optimized_ws=3)
    b = drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], method=method, max_steps=5, optimized_ws=3)
    assert a.steps == 5 and not a.converged
    assert torch.equal(a.ws, b.ws) and a.points == b.points
    assert not torch.equal(a.ws[:, :3], ws[:, :3])
    assert torch.equal(a.ws[:, 3:], ws[:, 3:])
    assert a.image.shape == (32, 32, 3) and a.image.dtype == np.uint8
    assert len(a.trajectory) == 6


def test_callback_reports_every_step_with_previews(setup):
    G, ws = setup
    seen = []
    drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], max_steps=4, preview_every=2, callback=seen.append)
    assert [p.step for p in seen] == [0, 1, 2, 3, 4]
    assert [p.preview is not None for p in seen] == [True, False, True, False, True]
    assert seen[0].preview.shape == (32, 32, 3)
    assert seen[0].distances[0] == pytest.approx(6.0)
    # preview_interval: no preview sooner than that after the last (here: only the first).
    seen.clear()
    drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], max_steps=4, preview_every=2, preview_interval=1e6,
         callback=seen.append)  # fmt: skip
    assert [p.preview is not None for p in seen] == [True, False, False, False, False]


def test_cancel_stops_within_one_step(setup):
    G, ws = setup
    cancel = threading.Event()
    steps = []

    def on_step(progress):
        steps.append(progress.step)
        if progress.step == 2:
            cancel.set()

    with pytest.raises(CancelledError, match="step 3"):
        drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], max_steps=50, callback=on_step, cancel=cancel)
    assert steps == [0, 1, 2]


def test_stop_keeps_the_state_reached_after_the_step_during_which_it_arrives(setup):
    G, ws = setup
    stop = threading.Event()
    seen = []

    def on_step(progress):
        seen.append(progress)
        if progress.step == 2:
            stop.set()

    result = drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], max_steps=50, callback=on_step, stop=stop)
    assert [p.step for p in seen] == [0, 1, 2]
    assert result.stopped and not result.converged and result.steps == 2
    assert result.points == [tuple(seen[-1].points[0])]  # where the handle was tracked last
    # The same two optimisation steps as a drag that simply runs out of steps there.
    plain = drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], max_steps=2)
    assert not plain.stopped
    assert torch.equal(result.ws, plain.ws)


def test_pins_are_tracked_reported_and_validated(setup):
    G, ws = setup
    seen = []
    result = drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], pins=[(22.5, 22.5)], max_steps=3,
                  callback=seen.append)  # fmt: skip
    assert [len(p.pins) for p in seen] == [1, 1, 1, 1]
    assert seen[0].pins[0] == pytest.approx((22.5, 22.5))
    assert len(result.pins) == 1
    # The pin changes the optimisation (its loss), and never counts towards convergence.
    free = drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], max_steps=3)
    assert not torch.equal(result.ws, free.ws)
    with pytest.raises(BadInputError, match="pin 1 at"):
        drag(G, ws, [(10, 10)], [(5, 5)], pins=[(40, 5)])
    with pytest.raises(BadInputError, match="is a pin"):
        drag(G, ws, [(10, 10)], [(10, 10)])


def test_fixed_region_term_keeps_the_outside_closer(setup):
    G, ws = setup
    mask = np.zeros((32, 32), bool)
    mask[4:20, 4:22] = True
    free = drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], max_steps=15, optimized_ws=8)
    held = drag(
        G,
        ws,
        [(10.5, 12.5)],
        [(16.5, 12.5)],
        max_steps=15,
        optimized_ws=8,
        mask=mask,
        lambda_fixed=200,
    )
    original = drag(G, ws, [(10.5, 12.5)], [(16.5, 12.5)], max_steps=1, lr=0.0).image.astype(float)

    def outside_change(result):
        return np.abs(result.image.astype(float) - original)[~mask].mean()

    assert outside_change(held) < outside_change(free)


def test_waypoint_route_advances_in_order():
    route = WaypointRoute(torch.tensor([[20.0, 20.0]]), [[(10.0, 0.0), (20.0, 0.0)]], size=32)
    assert route.current().tolist() == [[10.0, 0.0]]
    route.advance(torch.tensor([[5.0, 0.0]]), reach=2.0)
    assert route.current().tolist() == [[10.0, 0.0]]
    route.advance(torch.tensor([[9.0, 0.5]]), reach=2.0)
    assert route.current().tolist() == [[20.0, 0.0]]
    route.advance(torch.tensor([[20.0, 1.0]]), reach=2.0)
    assert route.current().tolist() == [[20.0, 20.0]]
    assert route.final().tolist() == [[20.0, 20.0]]


def test_settings_scale_with_resolution():
    G = make_tiny_generator(resolution=32)
    s = DragSettings().resolved(G, points=1)
    assert s.r1 == 2.0 and s.r2 == 4.0 and s.stop_distance == 1.0 and s.feature_resolution == 32
    assert DragSettings().resolved(G, points=6).stop_distance == 2.0
    assert s.subpixel_tracking and s.bounded_step
    published = DragSettings(method="draggan").resolved(G, points=1)
    assert not published.subpixel_tracking and not published.bounded_step


def test_feature_block_choice():
    from dragfu.drag.engine import feature_block

    assert feature_block([4, 8, 16, 32, 64, 128, 256, 512]) == 128
    assert feature_block([4, 8, 16, 32, 64, 128]) == 128
    assert feature_block([4, 8, 16, 32]) == 32
