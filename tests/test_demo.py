"""`dragfu demo --out-dir D`, run as the README runs it: the files it writes and, measured by the
toy detector on result.png, the mouth corners where the demo says they are."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from dragfu.photo import Similarity
from dragfu.photo.alignment import sample_model_frame
from dragfu.toy import landmarks, params_from_unit
from dragfu.toy.detector import detect
from dragfu.toy.photo import PhotoSpec, build_photo, high_frequency_energy

REPO_ENGINE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine")
# The demo's photo and drag, restated here rather than imported: a 2400x1800 photo with grain 6,
# the face 4x the model's scale, turned 12 degrees, centred at (1300, 860); the mouth corners 6
# model px (24 photo px) outward.
DEMO_UNIT = [0.5, 0.55, 0.6, 0.3, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.55, 0.5, 0.5, 0.5, 0.5, 0.5,
             0.5, 0.4, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.7, 0.5, 0.5, 0.5, 0.45, 0.3]  # fmt: skip
SPEC = PhotoSpec(
    params_from_unit(np.array(DEMO_UNIT)), (2400, 1800), 4.0, 12.0, (1300.0, 860.0), grain=6.0
)
WORLD = Similarity(4.0, 12.0, (1300.0, 860.0), (128, 128))  # world (model) frame -> photo
FILES = ["before.png", "projected.png", "result.png", "drag.gif", "before_after.png"]


def read(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One real `dragfu demo` in a fresh DRAGFU_HOME (so the projection really runs, no cache)."""
    root = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, DRAGFU_HOME=str(root / "home"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ENGINE, env.get("PYTHONPATH")]))
    out = root / "out" / "demo"  # a folder that does not exist yet, as out/demo on a fresh clone
    result = subprocess.run(
        [sys.executable, "-m", "dragfu.cli.main", "demo", "--out-dir", str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out, result.stdout


@pytest.mark.slow
def test_demo_writes_its_five_files_and_keeps_the_photo(demo_run):
    out, stdout = demo_run
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert f"wrote {', '.join(FILES)} to {out}" in stdout
    before, result = read(out / "before.png"), read(out / "result.png")
    # before.png is the toy world's photo, pixel for pixel; the result has the photo's size.
    assert np.array_equal(before, build_photo(SPEC).image)
    assert result.shape == before.shape == (1800, 2400, 3)
    # The projection (what the model sees through the alignment it found) is a whole face of
    # about the world's proportions: the alignment found the face and its scale.
    projected = read(out / "projected.png")
    assert projected.shape == (128, 128, 3)
    seen = detect(projected)
    truth = detect(sample_model_frame(before, WORLD))
    assert {"left_eye", "right_eye", "mouth"} <= set(seen.points)
    eyes = np.hypot(*np.subtract(seen.points["left_eye"], seen.points["right_eye"]))
    true_eyes = np.hypot(*np.subtract(truth.points["left_eye"], truth.points["right_eye"]))
    assert eyes == pytest.approx(true_eyes, rel=0.12)
    # Only the subject's neighbourhood changed; the grain on the forehead is the photo's own.
    changed = np.any(result != before, axis=-1)
    assert 0 < changed.mean() < 0.2
    ys, xs = np.nonzero(changed)
    model_y = WORLD.to_model(np.stack([xs + 0.5, ys + 0.5], axis=1))[:, 1]
    assert np.median(model_y) > 55  # most of the change lies around the mouth (y 77 at 128 px)
    # The grain on the forehead is carried along (moved by whole pixels), not smoothed away.
    forehead = WORLD.to_photo([(64, 40)])[0].astype(int)
    box = (forehead[0] - 40, forehead[1] - 20, forehead[0] + 40, forehead[1] + 20)
    assert high_frequency_energy(result, box) > 0.9 * high_frequency_energy(before, box)
    gif = Image.open(out / "drag.gif")
    assert gif.size == (128, 128) and gif.n_frames >= 3
    assert Image.open(out / "before_after.png").size[1] > 18


@pytest.mark.slow
def test_demo_mouth_corners_measured_where_the_demo_says(demo_run):
    out, stdout = demo_run
    printed = re.search(
        r"mouth corners measured in the result: ([0-9.]+) model px from the targets", stdout
    )
    assert printed, stdout
    marks = landmarks(SPEC.params)
    targets = {
        "mouth_left": (marks["mouth_left"][0] - 6.0, marks["mouth_left"][1]),
        "mouth_right": (marks["mouth_right"][0] + 6.0, marks["mouth_right"][1]),
    }
    found = detect(sample_model_frame(read(out / "result.png"), WORLD)).points
    distances = {n: float(np.hypot(*np.subtract(found[n], t))) for n, t in targets.items()}
    # The detector on the written file gives the distance the demo printed...
    assert abs(np.mean(list(distances.values())) - float(printed.group(1))) <= 0.006
    # ...and that distance is small: each corner is near its target...
    assert max(distances.values()) < 2.0, distances
    # ...which it was not before the drag (the corners started 6 px away).
    before = detect(sample_model_frame(read(out / "before.png"), WORLD)).points
    for name, target in targets.items():
        assert np.hypot(*np.subtract(before[name], target)) > 5.0
    # and the corners moved outward, away from each other.
    assert found["mouth_right"][0] - found["mouth_left"][0] > (
        before["mouth_right"][0] - before["mouth_left"][0] + 8.0
    )
