"""The photo world: toy faces drawn into photo-sized pictures with exact landmarks."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from dragfu.toy import detect, world
from dragfu.toy.photo import (
    Photo,
    PhotoSpec,
    build_photo,
    face_box,
    high_frequency_energy,
    photo_crop,
    supersampling_for,
    texture_values,
)


def face(seed: int, **changes) -> world.ToyParams:
    values = {**world.sample_params(np.random.default_rng(seed)).__dict__, **changes}
    return world.ToyParams(**values)


def back_to_world(photo: Photo, scale: float, size: int = world.WORLD_SIZE) -> np.ndarray:
    """The photo resampled into the world frame: warped (bilinear) onto a 128 * scale grid of
    world positions, then area-averaged down to `size`. cv2 puts pixel centres at integers."""
    big = int(round(world.WORLD_SIZE * scale))
    dst = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    src = photo.to_photo((dst + 0.5) / scale) - 0.5  # dst cv2 coords -> world -> photo cv2 coords
    matrix = cv2.getAffineTransform(dst.astype(np.float32), src.astype(np.float32))
    warped = cv2.warpAffine(
        photo.image,
        matrix,
        (big, big),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return cv2.resize(warped, (size, size), interpolation=cv2.INTER_AREA)


def test_scale_one_on_the_world_square_is_the_world_render():
    for seed in range(4):
        p = face(seed)
        photo = build_photo(PhotoSpec(p, canvas=(128, 128), scale=1.0, centre=(64.0, 64.0)))
        assert photo.image.dtype == np.uint8 and photo.image.shape == (128, 128, 3)
        np.testing.assert_array_equal(photo.image, world.render(p))


def test_scale_four_is_a_512_render_placed_at_its_offset():
    p = face(1, angle=-9.0)
    x0, y0 = 137, 41  # where the world square's top-left corner lands
    spec = dict(params=p, canvas=(700, 600), scale=4.0, centre=(x0 + 256.0, y0 + 256.0))
    # With the world's 4 x 4 sampling: the same picture, bit for bit.
    fine = build_photo(PhotoSpec(**spec, supersampling=4))
    np.testing.assert_array_equal(fine.image[y0 : y0 + 512, x0 : x0 + 512], world.render(p, 512))
    # Outside the world square the background simply continues (across its top edge, here).
    column = fine.image[: y0 + 40, x0 + 5].astype(int)
    assert np.abs(np.diff(column, axis=0)).max() <= 1
    # The default at scale 4 is 2 x 2: only edge pixels differ; area-averaged 4 x 4 it is the
    # 128 render up to the coarser coverage steps.
    assert supersampling_for(4.0) == 2 and supersampling_for(2.0) == 4
    coarse = build_photo(PhotoSpec(**spec))
    assert not np.array_equal(coarse.image, fine.image)
    block = coarse.image[y0 : y0 + 512, x0 : x0 + 512].astype(np.float64)
    small = block.reshape(128, 4, 128, 4, 3).mean(axis=(1, 3))
    difference = np.abs(small - world.render(p))
    assert difference.mean() < 0.25
    assert np.percentile(difference, 99) < 8.0
    assert difference.max() < 40.0


def test_landmarks_are_the_world_landmarks_mapped_exactly():
    p = face(2)
    photo = build_photo(
        PhotoSpec(p, canvas=(300, 200), scale=3.5, angle=30.0, centre=(140.2, 95.7))
    )
    points = photo.landmark_array()
    assert points.shape == (9, 2)
    assert list(photo.landmarks) == list(world.LANDMARK_NAMES)
    np.testing.assert_array_equal(points[0], photo.landmarks["left_eye"])
    # Round trip and the mapping's definition: a similarity around world (64, 64).
    np.testing.assert_allclose(photo.to_world(points), world.landmark_array(p), atol=1e-9)
    np.testing.assert_allclose(photo.to_photo([64.0, 64.0]), [140.2, 95.7], atol=1e-12)
    step = photo.to_photo([[65.0, 64.0], [64.0, 65.0]]) - [140.2, 95.7]
    angle = np.radians(30.0)
    np.testing.assert_allclose(step[0], 3.5 * np.array([np.cos(angle), np.sin(angle)]), atol=1e-12)
    np.testing.assert_allclose(step[1], 3.5 * np.array([-np.sin(angle), np.cos(angle)]), atol=1e-12)
    # Default centre: the canvas's middle.
    default = PhotoSpec(p, canvas=(300, 200), scale=2.0)
    np.testing.assert_allclose(default.to_photo([64.0, 64.0]), [150.0, 100.0])


@pytest.mark.parametrize(
    ("angle", "centre"), [(0.0, (560.0, 430.0)), (30.0, (533.3, 401.7)), (-70.0, (480.0, 390.0))]
)
def test_the_detector_finds_the_photo_landmarks_back_in_the_world_frame(angle, centre):
    p = face(8 + abs(int(angle)))
    photo = build_photo(PhotoSpec(p, canvas=(1000, 800), scale=4.0, angle=angle, centre=centre))
    found = detect(back_to_world(photo, 4.0))
    assert found.complete, found.missing
    exact = photo.to_world(photo.landmark_array())
    np.testing.assert_allclose(exact, world.landmark_array(p), atol=1e-9)
    assert np.abs(found.array() - exact).max() < 0.5


def test_face_box_bounds_what_differs_from_the_background():
    for seed, angle in ((3, 0.0), (4, 37.0), (5, 115.0)):
        p = face(seed)
        spec = PhotoSpec(p, canvas=(420, 400), scale=3.0, angle=angle, centre=(205.0, 215.0))
        photo = build_photo(spec)
        # The same photo with the face moved far off the canvas: background only.
        away = world.ToyParams(**{**p.__dict__, "cx": -1e4, "cy": -1e4})
        plain = build_photo(PhotoSpec(away, spec.canvas, spec.scale, angle, spec.centre))
        rows, cols = np.nonzero((photo.image != plain.image).any(axis=2))
        x0, y0, x1, y1 = photo.face_box
        assert face_box(spec) == photo.face_box
        # Every drawn pixel touches the box, and the box is tight to a pixel.
        assert (
            cols.min() + 1 >= x0 and cols.max() <= x1 and rows.min() + 1 >= y0 and rows.max() <= y1
        )
        assert cols.min() < x0 + 1.0 and cols.max() + 1 > x1 - 1.0
        assert rows.min() < y0 + 1.0 and rows.max() + 1 > y1 - 1.0


def test_texture_moves_with_the_face():
    p = face(6, angle=12.0)
    common = dict(params=p, canvas=(360, 330), scale=2.5, angle=-20.0, texture=10.0, seed=3)
    first = build_photo(PhotoSpec(**common, centre=(170.0, 160.0)))
    shift = (23, -11)
    second = build_photo(PhotoSpec(**common, centre=(170.0 + shift[0], 160.0 + shift[1])))
    x0, y0, x1, y1 = (int(v) for v in first.face_box)
    inside = first.image[y0:y1, x0:x1]
    moved = second.image[y0 + shift[1] : y1 + shift[1], x0 + shift[0] : x1 + shift[0]]
    np.testing.assert_array_equal(inside, moved)  # the same pattern, shifted with the content
    # The texture is really there: fine detail on the skin, unlike the flat drawing; another seed
    # gives another pattern.
    cx, cy = first.landmarks["face"]
    skin = (cx - 10, cy - 10, cx + 10, cy + 10)
    flat = build_photo(PhotoSpec(**{**common, "texture": 0.0}, centre=(170.0, 160.0)))
    assert high_frequency_energy(flat, skin) < 0.1
    assert high_frequency_energy(first, skin) > 3.0
    reseeded = build_photo(PhotoSpec(**{**common, "seed": 4}, centre=(170.0, 160.0)))
    assert not np.array_equal(photo_crop(reseeded, skin), photo_crop(first, skin))
    # A world point's value does not depend on where the photo puts it; its features are ~1 px.
    spec = PhotoSpec(**common)
    wx, wy = np.array([[10.25, 64.0, 100.5]]), np.array([[3.0, 64.0, 127.75]])
    np.testing.assert_array_equal(
        texture_values(spec, wx, wy), texture_values(PhotoSpec(**common, centre=(5.0, 9.0)), wx, wy)
    )
    values = texture_values(spec, np.linspace(0.0, 100.0, 20001)[None, :], np.full((1, 20001), 7.3))
    assert -1.0 <= values.min() and values.max() <= 1.0 and values.std() > 0.3
    lag = 1.0 / spec.scale  # one photo px in world units: about decorrelated already
    step = int(round(lag / (100.0 / 20000)))
    correlation = np.corrcoef(values[0, :-step], values[0, step:])[0, 1]
    assert abs(correlation) < 0.3


def test_grain_energy_grows_with_its_variance():
    p = face(7)
    # The face sits at the right; the left of the canvas is flat background (+ its gradient).
    flat = (10.0, 10.0, 180.0, 250.0)

    def energy(grain: float) -> float:
        spec = PhotoSpec(
            p, canvas=(400, 260), scale=1.0, centre=(330.0, 130.0), grain=grain, seed=1
        )
        return high_frequency_energy(build_photo(spec), flat)

    none, four, eight = energy(0.0), energy(4.0), energy(8.0)
    assert none < 0.05
    assert 3.6 < eight / four < 4.4
    # White noise sigma g per channel: luma weights' squares (0.447) times what the blur leaves.
    assert 0.6 * 0.447 * 16 < four < 1.0 * 0.447 * 16


def test_grain_is_fixed_to_the_pixel_grid_and_seeded():
    p = face(9)
    spec = dict(params=p, canvas=(200, 150), scale=1.0, grain=5.0)
    a = build_photo(PhotoSpec(**spec, seed=2)).image
    assert np.array_equal(a, build_photo(PhotoSpec(**spec, seed=2)).image)
    assert not np.array_equal(a, build_photo(PhotoSpec(**spec, seed=3)).image)
    clean = build_photo(PhotoSpec(**{**spec, "grain": 0.0})).image
    noise = a.astype(float) - clean
    assert 4.0 < noise.std() < 6.0 and abs(noise.mean()) < 0.3


def test_jpeg_changes_pixels_but_keeps_the_landmarks_colours():
    p = face(10, left_eye_open=4.0, right_eye_open=4.0, mouth_open=0.6)
    spec = dict(params=p, canvas=(640, 480), scale=3.0, angle=10.0, grain=2.0, seed=5)
    raw = build_photo(PhotoSpec(**spec))
    compressed = build_photo(PhotoSpec(**spec, jpeg_quality=75))
    assert compressed.image.shape == raw.image.shape and compressed.image.dtype == np.uint8
    assert (compressed.image != raw.image).mean() > 0.5
    np.testing.assert_array_equal(compressed.landmark_array(), raw.landmark_array())
    for name in ("left_eye", "right_eye", "mouth", "face"):
        x, y = compressed.landmarks[name]
        box = (x - 2, y - 2, x + 2, y + 2)
        before = photo_crop(raw, box).reshape(-1, 3).mean(axis=0)
        after = photo_crop(compressed, box).reshape(-1, 3).mean(axis=0)
        assert np.abs(after - before).max() < 15.0, name


def test_a_photo_sized_canvas_builds_quickly():
    p = face(11)
    spec = PhotoSpec(
        p, canvas=(2400, 1800), scale=4.0, angle=25.0, centre=(1500.0, 700.0), grain=3.0
    )
    start = time.perf_counter()
    photo = build_photo(spec)
    elapsed = time.perf_counter() - start
    assert photo.image.shape == (1800, 2400, 3) and photo.image.dtype == np.uint8
    assert elapsed < 10.0  # ~0.5 s on one core
    x0, y0, x1, y1 = photo.face_box
    assert 200 < x1 - x0 < 400 and 200 < y1 - y0 < 450  # a face of ~300 px
    skin = photo_crop(
        photo,
        (
            photo.landmarks["face"][0] - 3,
            photo.landmarks["face"][1] - 3,
            photo.landmarks["face"][0] + 3,
            photo.landmarks["face"][1] + 3,
        ),
    )
    np.testing.assert_allclose(
        skin.reshape(-1, 3).mean(axis=0), [p.skin_r, p.skin_g, p.skin_b], atol=3.0
    )


def test_background_has_no_seam_at_the_world_square():
    p = face(12, grad_r=15.0, grad_g=-15.0, grad_b=12.0)
    photo = build_photo(
        PhotoSpec(p, canvas=(500, 500), scale=1.0, angle=33.0, centre=(250.0, 250.0))
    )
    image = photo.image.astype(int)
    x0, y0, x1, y1 = photo.face_box
    mask = np.ones(image.shape[:2], bool)
    mask[int(y0) - 1 : int(y1) + 2, int(x0) - 1 : int(x1) + 2] = False
    steps_x = np.abs(np.diff(image, axis=1)).max(axis=2)[mask[:, 1:] & mask[:, :-1]]
    steps_y = np.abs(np.diff(image, axis=0)).max(axis=2)[mask[1:] & mask[:-1]]
    assert steps_x.max() <= 1 and steps_y.max() <= 1
    # The gradient runs inside the world square and holds its end colours beyond it.
    top, bottom = photo.to_photo([[64.0, -100.0], [64.0, 300.0]]).astype(int)
    np.testing.assert_allclose(
        image[top[1], top[0]], [p.bg_r - 15, p.bg_g + 15, p.bg_b - 12], atol=0.6
    )
    np.testing.assert_allclose(
        image[bottom[1], bottom[0]], [p.bg_r + 15, p.bg_g - 15, p.bg_b + 12], atol=0.6
    )


def test_spec_validation_and_measure_edges():
    p = face(13)
    with pytest.raises(ValueError):
        PhotoSpec(p, canvas=(0, 10), scale=1.0)
    with pytest.raises(ValueError):
        PhotoSpec(p, canvas=(10, 10), scale=0.0)
    with pytest.raises(ValueError):
        PhotoSpec(p, canvas=(10, 10), scale=1.0, jpeg_quality=0)
    # A face entirely off the canvas: background only, landmarks still exact (outside).
    photo = build_photo(PhotoSpec(p, canvas=(64, 48), scale=2.0, centre=(-500.0, -500.0)))
    assert photo.landmark_array().max() < 0
    assert high_frequency_energy(photo) < 0.05
    with pytest.raises(ValueError):
        high_frequency_energy(photo, (100.0, 100.0, 120.0, 120.0))
    assert photo_crop(photo, (0.0, 0.0, 10.0, 5.0)).shape == (5, 10, 3)
