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

from dragfu.toy import landmarks, params_from_unit, render
from dragfu.toy.detector import detect

REPO_ENGINE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "engine")
# The demo's drag, restated here rather than imported: the mouth corners 6 px outward.
DEMO_UNIT = [0.5, 0.55, 0.6, 0.3, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.55, 0.5, 0.5, 0.5, 0.5, 0.5,
             0.5, 0.4, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.7, 0.5, 0.5, 0.5, 0.45, 0.3]  # fmt: skip
FILES = ["before.png", "projected.png", "result.png", "drag.gif", "before_after.png"]


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
def test_demo_writes_its_five_files(demo_run):
    out, stdout = demo_run
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert f"wrote {', '.join(FILES)} to {out}" in stdout
    params = params_from_unit(np.array(DEMO_UNIT))
    # before.png is the toy world's own rendering of the demo face, pixel for pixel.
    assert np.array_equal(np.asarray(Image.open(out / "before.png").convert("RGB")), render(params))
    projected = np.asarray(Image.open(out / "projected.png").convert("RGB")).astype(float)
    result = np.asarray(Image.open(out / "result.png").convert("RGB")).astype(float)
    assert projected.shape == result.shape == (128, 128, 3)
    # The projection looks like the photo (the demo prints ~37 dB); the result is not the projection.
    mse = np.mean((projected - render(params).astype(float)) ** 2)
    assert 10 * np.log10(255**2 / mse) > 30
    assert np.abs(result - projected).mean() > 0.5
    gif = Image.open(out / "drag.gif")
    assert gif.size == (128, 128) and gif.n_frames >= 3
    # before | projection | before (drags) | after, each 3x, under an 18 px label strip.
    assert Image.open(out / "before_after.png").size == (4 * 3 * 128, 3 * 128 + 18)


@pytest.mark.slow
def test_demo_mouth_corners_measured_where_the_demo_says(demo_run):
    out, stdout = demo_run
    printed = re.search(
        r"mouth corners measured in the result: ([0-9.]+) px from the targets", stdout
    )
    assert printed, stdout
    marks = landmarks(params_from_unit(np.array(DEMO_UNIT)))
    targets = {
        "mouth_left": (marks["mouth_left"][0] - 6.0, marks["mouth_left"][1]),
        "mouth_right": (marks["mouth_right"][0] + 6.0, marks["mouth_right"][1]),
    }
    found = detect(np.asarray(Image.open(out / "result.png").convert("RGB"))).points
    distances = {n: float(np.hypot(*np.subtract(found[n], t))) for n, t in targets.items()}
    # The detector on the written file gives the distance the demo printed...
    assert abs(np.mean(list(distances.values())) - float(printed.group(1))) <= 0.006
    # ...and that distance is small: each corner is near its target...
    assert max(distances.values()) < 2.0, distances
    # ...which it was not before the drag (the corners started 6 px away).
    before = detect(np.asarray(Image.open(out / "before.png").convert("RGB"))).points
    for name, target in targets.items():
        assert np.hypot(*np.subtract(before[name], target)) > 5.0
    # and the corners moved outward, away from each other.
    assert found["mouth_right"][0] - found["mouth_left"][0] > (
        before["mouth_right"][0] - before["mouth_left"][0] + 8.0
    )
