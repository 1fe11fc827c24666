"""Edits on photos: alignment, the motion field, warp paste-back (dragfu.photo), on the toy world."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from dragfu.photo import Similarity, fit_similarity, motion_field, paste_edit, search_alignment
from dragfu.photo.alignment import sample_model_frame
from dragfu.toy import params_from_unit, render
from dragfu.toy.detector import detect
from dragfu.toy.photo import PhotoSpec, build_photo, high_frequency_energy

MID = params_from_unit(np.full(30, 0.5))


def test_similarity_round_trip_and_fit_recovers_it():
    sim = Similarity(3.5, 27.0, (812.25, 640.5), (128, 128))
    q = np.array([[0.0, 0.0], [128.0, 0.0], [64.0, 64.0], [10.5, 99.25]])
    assert np.allclose(sim.to_model(sim.to_photo(q)), q, atol=1e-9)
    assert np.allclose(sim.to_photo([(64, 64)]), [(812.25, 640.5)])
    fitted = fit_similarity(q, sim.to_photo(q), (128, 128))
    assert fitted.scale == pytest.approx(3.5) and fitted.angle == pytest.approx(27.0)
    assert fitted.centre == pytest.approx((812.25, 640.5))


def test_the_model_frame_of_a_photo_is_the_world_render():
    photo = build_photo(PhotoSpec(MID, (900, 700), 4.0, 25.0, (430.0, 360.0)))
    frame = Similarity(4.0, 25.0, (430.0, 360.0), (128, 128))
    seen = sample_model_frame(photo.image, frame)
    assert np.abs(seen.astype(int) - render(MID).astype(int)).mean() < 2.0


@pytest.mark.parametrize(("scale", "angle"), [(1.0, 0.0), (4.0, 20.0), (8.0, -35.0)])
def test_search_alignment_recovers_a_known_transform(scale, angle):
    centre = (700.0, 520.0)
    photo = build_photo(PhotoSpec(MID, (1400, 1100), scale, angle, centre, grain=6.0))
    mouth = photo.landmarks["mouth_right"]
    match = search_alignment(photo.image, render(MID), [mouth])
    assert match is not None and match.score > 0.8
    found = match.alignment
    assert found.scale == pytest.approx(scale, rel=0.08)
    assert abs(found.angle - angle) <= 4.0
    assert np.hypot(*np.subtract(found.centre, centre)) <= 3.0 * scale


def test_search_alignment_finds_nothing_on_a_plain_texture():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (600, 600, 3), dtype=np.uint8)
    assert search_alignment(noise, render(MID), [(300.0, 300.0)]) is None


def test_motion_field_of_a_known_shift_and_rotation():
    # A textured picture moved by (2.5, -1.5) px: the backward field is (-2.5, +1.5) inside.
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 255, (128, 128, 3), dtype=np.uint8), (0, 0), 2.0)
    base = cv2.normalize(base, None, 0, 255, cv2.NORM_MINMAX)
    shift = np.float32([[1, 0, 2.5], [0, 1, -1.5]])
    moved = cv2.warpAffine(base, shift, (128, 128), borderMode=cv2.BORDER_REFLECT)
    field = motion_field(base, moved)
    inner = field[24:-24, 24:-24]
    assert np.median(inner[..., 0]) == pytest.approx(-2.5, abs=0.15)
    assert np.median(inner[..., 1]) == pytest.approx(1.5, abs=0.15)
    # Turned 4 degrees about the centre: the field is the rotation's displacement.
    turn = cv2.getRotationMatrix2D((63.5, 63.5), 4.0, 1.0)
    turned = cv2.warpAffine(base, turn, (128, 128), borderMode=cv2.BORDER_REFLECT)
    field = motion_field(base, turned)
    ys, xs = np.mgrid[0:128, 0:128].astype(np.float64)
    inverse = cv2.invertAffineTransform(turn)
    expected_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2] - xs
    expected_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2] - ys
    error = np.hypot(field[..., 0] - expected_x, field[..., 1] - expected_y)[24:-24, 24:-24]
    assert np.median(error) < 0.3
    # Nothing moved: exactly zero (the photo is then copied, not resampled).
    assert not motion_field(base, base).any()


def widened(params, factor=1.3):
    return dataclasses.replace(params, mouth_width=params.mouth_width * factor)


def test_paste_moves_the_photo_keeps_its_grain_and_nothing_else_changes():
    spec = PhotoSpec(MID, (1000, 800), 4.0, 15.0, (500.0, 400.0), grain=6.0)
    photo = build_photo(spec)
    frame = Similarity(4.0, 15.0, (500.0, 400.0), (128, 128))
    after_world = widened(MID)
    edit = paste_edit(photo.image, frame, render(MID), render(after_world))
    # The mouth corners moved where the world says, at the model's scale.
    found = detect(sample_model_frame(edit.image, frame))
    want = build_photo(dataclasses.replace(spec, params=after_world))
    for name in ("mouth_left", "mouth_right"):
        expected = want.to_world([want.landmarks[name]])[0]
        assert np.hypot(*np.subtract(found.points[name], expected)) < 0.5
    # Grain inside the changed box, on the cheek above the mouth (away from the corners), keeps
    # its high-frequency energy: moved by the motion, not re-rendered.
    x0, y0, x1, y1 = edit.box
    mouth = photo.landmarks["mouth"]
    cheek = (int(mouth[0]) - 30, y0 + 4, int(mouth[0]) + 30, y0 + 34)
    assert x0 <= cheek[0] and cheek[2] <= x1 and cheek[3] < mouth[1] - 20
    assert np.any(
        edit.image[cheek[1] : cheek[3], cheek[0] : cheek[2]]
        != photo.image[cheek[1] : cheek[3], cheek[0] : cheek[2]]
    )
    ratio = high_frequency_energy(edit.image, cheek) / high_frequency_energy(photo.image, cheek)
    assert ratio > 0.9
    # Pixels outside the changed box are the photo's own, to the bit; the box is the face's part.
    outside = np.ones(photo.image.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(edit.image[outside], photo.image[outside])
    assert (x1 - x0) * (y1 - y0) < 0.2 * 1000 * 800


def test_paste_outside_the_selection_is_bit_identical():
    photo = build_photo(PhotoSpec(MID, (600, 600), 4.0, 0.0, (300.0, 300.0), grain=5.0))
    frame = Similarity(4.0, 0.0, (300.0, 300.0), (128, 128))
    selection = np.zeros((600, 600), np.uint8)
    selection[380:470, 300:600] = 255  # the right half of the mouth only
    edit = paste_edit(photo.image, frame, render(MID), render(widened(MID)), selection)
    assert np.array_equal(edit.image[selection == 0], photo.image[selection == 0])
    assert not np.array_equal(edit.image[selection > 0], photo.image[selection > 0])
