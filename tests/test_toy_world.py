"""The toy-faces world: parameters, renderer, exact landmarks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dragfu.toy import (
    LANDMARK_NAMES,
    NUM_PARAMS,
    PARAM_RANGES,
    ToyParams,
    landmark_array,
    landmarks,
    params_from_unit,
    params_from_z,
    render,
    render_with_coverage,
    sample_params,
)
from dragfu.toy.world import EYE, FACE, HAIR, MOUTH, chin_point, face_to_image, label_map


def upright_face(**changes) -> ToyParams:
    """A face with round numbers: centre (64, 60), rx 30, ry 40, upright."""
    unit = np.full(NUM_PARAMS, 0.5)
    base = params_from_unit(unit)
    values = {
        **base.__dict__,
        "cx": 64.0,
        "cy": 60.0,
        "rx": 30.0,
        "ry": 40.0,
        "angle": 0.0,
        "left_eye_open": 3.0,
        "right_eye_open": 3.0,
        "eye_width": 4.0,
        "mouth_width": 0.4,
        "mouth_open": 0.5,
        **changes,
    }
    return ToyParams(**values)


def test_sample_params_is_seeded_and_inside_the_ranges():
    first = [sample_params(np.random.default_rng(7)) for _ in range(2)]
    assert first[0] == first[1]
    rng = np.random.default_rng(0)
    samples = np.array([sample_params(rng).as_array() for _ in range(400)])
    for column, (name, low, high) in enumerate(PARAM_RANGES):
        assert samples[:, column].min() >= low, name
        assert samples[:, column].max() <= high, name
        # Uniform: the samples reach near both ends of every range.
        span = high - low
        assert samples[:, column].min() < low + 0.05 * span, name
        assert samples[:, column].max() > high - 0.05 * span, name


def test_derived_sizes_follow_the_spec():
    rng = np.random.default_rng(1)
    for _ in range(200):
        p = sample_params(rng)
        assert 0.25 * p.rx - 1e-9 <= p.mouth_half_width <= 0.6 * p.rx + 1e-9
        assert 1.0 - 1e-9 <= p.mouth_half_height <= 0.22 * p.ry + 1e-9
        # The hair cap ends above the eyes (however open) and covers at least 20 % of the height.
        eye_top = -0.22 * p.ry - max(p.left_eye_open, p.right_eye_open)
        assert p.hair_line < eye_top
        assert p.hair_line <= -p.ry + 2 * p.ry * p.hair_fraction
        assert p.hair_line >= -p.ry + 2 * p.ry * 0.2 - 1e-9


def test_params_from_z_maps_the_normal_to_the_uniform():
    rng = np.random.default_rng(2)
    units = np.array(
        [
            (
                params_from_z(rng.standard_normal(NUM_PARAMS)).as_array()
                - [r[1] for r in PARAM_RANGES]
            )
            / [r[2] - r[1] for r in PARAM_RANGES]
            for _ in range(2000)
        ]
    )
    # Each unit number is uniform: mean 1/2, variance 1/12.
    assert np.allclose(units.mean(axis=0), 0.5, atol=0.03)
    assert np.allclose(units.var(axis=0), 1 / 12, atol=0.01)
    assert params_from_z(np.zeros(NUM_PARAMS)) == params_from_unit(np.full(NUM_PARAMS, 0.5))


def test_params_from_unit_rejects_the_wrong_length():
    with pytest.raises(ValueError):
        params_from_unit(np.zeros(NUM_PARAMS - 1))


def test_render_is_deterministic_and_uint8():
    p = sample_params(np.random.default_rng(3))
    a, b = render(p), render(p)
    assert a.dtype == np.uint8 and a.shape == (128, 128, 3)
    assert np.array_equal(a, b)
    assert render(p, size=64).shape == (64, 64, 3)


def test_landmarks_of_an_upright_face():
    p = upright_face()
    points = landmarks(p)
    assert tuple(points) == LANDMARK_NAMES
    assert points["face"] == pytest.approx((64.0, 60.0))
    assert points["left_eye"] == pytest.approx((64 - 0.38 * 30, 60 - 0.22 * 40))
    assert points["right_eye"] == pytest.approx((64 + 0.38 * 30, 60 - 0.22 * 40))
    assert points["mouth"] == pytest.approx((64.0, 60 + 0.45 * 40))
    half_w, half_h = 0.4 * 30, 1 + 0.5 * (0.22 * 40 - 1)
    assert points["mouth_left"] == pytest.approx((64 - half_w, 78.0))
    assert points["mouth_right"] == pytest.approx((64 + half_w, 78.0))
    assert points["mouth_top"] == pytest.approx((64.0, 78 - half_h))
    assert points["mouth_bottom"] == pytest.approx((64.0, 78 + half_h))
    assert points["chin"] == pytest.approx((64.0, 100.0))
    # Scaling the image scales the landmarks.
    double = landmarks(p, size=256)
    for name in LANDMARK_NAMES:
        assert double[name] == pytest.approx((2 * points[name][0], 2 * points[name][1]))


def test_landmarks_turn_with_the_face():
    angle = 12.0
    p = upright_face(angle=angle)
    upright = upright_face()
    a = math.radians(angle)
    for name, (x, y) in landmarks(upright).items():
        if name == "chin":
            continue
        dx, dy = x - 64, y - 60
        expected = (
            64 + dx * math.cos(a) - dy * math.sin(a),
            60 + dx * math.sin(a) + dy * math.cos(a),
        )
        assert landmarks(p)[name] == pytest.approx(expected), name


@pytest.mark.parametrize("angle", [-15.0, -4.0, 0.0, 9.0, 15.0])
def test_chin_is_the_lowest_point_of_the_outline(angle):
    t = np.linspace(0, 2 * np.pi, 200_001)
    x, y = face_to_image(upright_face(angle=angle), 30 * np.cos(t), 40 * np.sin(t))
    lowest = int(np.argmax(y))
    assert chin_point(64, 60, 30, 40, angle) == pytest.approx((x[lowest], y[lowest]), abs=1e-3)


def test_parts_are_drawn_in_order_with_their_colours():
    p = upright_face()
    image, coverage = render_with_coverage(p)
    # Coverage of all parts sums to one per pixel; the anti-aliased edges are fractional.
    assert np.allclose(coverage.sum(axis=0), 1.0)
    assert ((coverage[FACE] > 0) & (coverage[FACE] < 1)).sum() > 100
    skin = np.array([p.skin_r, p.skin_g, p.skin_b])
    assert np.abs(image[60, 64].astype(float) - skin).max() <= 0.5  # face centre pixel (64.5, 60.5)
    eye = np.array([p.eye_r, p.eye_g, p.eye_b])
    left_eye = landmarks(p)["left_eye"]
    assert np.abs(image[int(left_eye[1]), int(left_eye[0])] - eye).max() <= 0.5
    # Hair on top of the face, background with its vertical gradient at the corners.
    assert coverage[HAIR][60 - 38, 64] == 1.0
    top = np.array([p.bg_r - p.grad_r, p.bg_g - p.grad_g, p.bg_b - p.grad_b])
    bottom = np.array([p.bg_r + p.grad_r, p.bg_g + p.grad_g, p.bg_b + p.grad_b])
    assert np.abs(image[0, 0] - (top + (bottom - top) * 0.5 / 128)).max() <= 0.5
    assert np.abs(image[127, 0] - (top + (bottom - top) * 127.5 / 128)).max() <= 0.5


def test_hair_never_touches_the_eyes():
    rng = np.random.default_rng(4)
    for _ in range(40):
        labels = label_map(sample_params(rng))
        eyes = labels == EYE
        near_eyes = eyes.copy()
        for shift in range(1, 5):  # 4 supersamples = 1 px around every eye sample
            near_eyes[:-shift] |= eyes[shift:]
            near_eyes[shift:] |= eyes[:-shift]
        assert not (near_eyes & (labels == HAIR)).any()


def test_landmarks_sit_at_the_centres_of_the_drawn_parts():
    """Pixel centres at integer + 0.5: the coverage-weighted centroid of a drawn eye or mouth is
    its landmark, up to the 4x4 supersampling (the other convention would be off by 0.5 px)."""
    rng = np.random.default_rng(5)
    centres = (np.arange(128) + 0.5)[None, :]
    for _ in range(10):
        p = sample_params(rng)
        _, coverage = render_with_coverage(p)
        points = landmarks(p)
        mouth = coverage[MOUTH]
        x = (mouth * centres).sum() / mouth.sum()
        y = (mouth * centres.T).sum() / mouth.sum()
        assert (x, y) == pytest.approx(points["mouth"], abs=0.15)  # 4x4 supersampling
        eyes = coverage[EYE]
        left = eyes * (centres < (points["left_eye"][0] + points["right_eye"][0]) / 2)
        x = (left * centres).sum() / left.sum()
        y = (left * centres.T).sum() / left.sum()
        assert (x, y) == pytest.approx(points["left_eye"], abs=0.15)


def test_landmark_array_order():
    p = sample_params(np.random.default_rng(6))
    array = landmark_array(p)
    assert array.shape == (9, 2)
    assert tuple(array[2]) == landmarks(p)["mouth"]


# SHA-256 of render(sample_params(default_rng(11)) draws 0..2, size) taken before world.py's drawing
# was split into draw_labels / SampleGrid (shared with dragfu.toy.photo): the split changed no bit.
RENDER_HASHES = {
    (0, 128): "6e842652544c3655ba7be76f1e61bc3a392369aa94e1a817a7ab8f3311408599",
    (0, 256): "cb54cd3913a69762d53fb5d9b7b0d8a938e53089327a22ac81f7b7760b345f7d",
    (1, 128): "46a7b316a4e162e4bfa9fc037efe7e77feeb7f4675a417f6cfa4d1da9797313d",
    (1, 256): "f61622996ec030a42eebfded65647056d3291eac39f9f71d7a22d6f0bf371a0f",
    (2, 128): "3db4e31d33de047978bf88d48dfc7e0f70dd2b9d69d28e2c3a6a754e6d4606c4",
    (2, 256): "a9a5ca76cd3837be99cf216e724de78a3e355cebf32ec7145eafdca53222f860",
}


def test_render_output_is_unchanged_bit_for_bit():
    import hashlib

    rng = np.random.default_rng(11)
    for k in range(3):
        p = sample_params(rng)
        for size in (128, 256):
            digest = hashlib.sha256(render(p, size).tobytes()).hexdigest()
            assert digest == RENDER_HASHES[(k, size)], (k, size)
