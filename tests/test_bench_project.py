"""The projection benchmark's bookkeeping: the drag table (projected vs generated, lost landmarks,
ratios), settings given on the command line, merging runs over other images, the quality rows
(on a tiny model).

(The benchmark itself is never part of the test run.)"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from bench import project as bench
from bench.drag import parse_settings
from dragfu.errors import BadInputError
from dragfu.project import ProjectionCache, ProjectSettings, project
from dragfu.project.settings import WPLUS_STEPS_WITHOUT_TUNING
from tests.conftest import make_tiny_generator


def edit(image, points, kind, md, md_nothing=10.0):
    return {
        "image": image, "points": points, "landmarks": "", "method": kind,
        "md_nothing": md_nothing, "md": md, "md_tracked": 0.5, "seconds": 1.0, "steps": 100,
    }  # fmt: skip


def fidelity(image, after, before, md=1.0):
    return {
        "image": image,
        "drag_vs_photo": after,
        "reconstruction_vs_photo": before,
        "md_masked": md,
    }


EDITS = [
    edit(0, 5, "projected", 3.0), edit(1, 5, "projected", None, md_nothing=12.0),
    edit(0, 5, "generated", 2.0), edit(1, 5, "generated", 2.0),
    edit(0, 1, "projected", 4.0), edit(0, 1, "generated", 2.0),
]  # fmt: skip


def test_drag_table_counts_lost_landmarks_and_both_ratios():
    table = bench.drag_table(EDITS, [fidelity(0, 34.0, 36.0), fidelity(1, 30.0, 32.0, None)])
    assert table["landmarks_lost"] == {"projected": 1, "generated": 0}
    five = table["5pt"]
    assert five["projected"]["md"]["mean"] == 3.0  # the lost landmark is left out here...
    assert five["md_ratio_projected_over_generated"] == 1.5
    # ...and counted as no progress (its distance before the drag) here
    assert five["projected"]["md_lost_as_nothing"]["mean"] == 7.5
    assert five["md_lost_as_nothing_ratio_projected_over_generated"] == 3.75
    assert table["1pt"]["md_ratio_projected_over_generated"] == 2.0
    outside = table["fidelity_outside_psnr"]
    assert outside["drag_vs_photo"]["mean"] == 32.0
    assert outside["md_masked"]["n"] == 1  # a lost landmark has no distance


def test_settings_on_the_command_line():
    assert parse_settings(["lr=0.002", "bounded_step=false", "method=draggan"]) == {
        "lr": 0.002, "bounded_step": False, "method": "draggan",
    }  # fmt: skip
    with pytest.raises(BadInputError, match="NAME=VALUE"):
        parse_settings(["lr"])
    args = argparse.Namespace(
        w_steps=1, wplus_steps=2, tune_steps=3, perceptual="fallback",
        project_setting=["locality_weight=3", "locality_alpha=10"],
    )  # fmt: skip
    settings = bench._settings(args)
    assert (settings.locality_weight, settings.locality_alpha, settings.tune_steps) == (3, 10, 3)
    args.project_setting = ["no_such_setting=1"]
    with pytest.raises(BadInputError, match="unknown projection settings: no_such_setting"):
        bench._settings(args)


def test_merging_runs_equals_one_run(tmp_path):
    halves = [(EDITS[:2] + EDITS[4:5], [fidelity(0, 34.0, 36.0)]),
              (EDITS[2:4] + EDITS[5:], [fidelity(1, 30.0, 32.0)])]  # fmt: skip
    paths = []
    for first, (edits, fid) in enumerate(halves):
        path = tmp_path / f"run{first}.json"
        stages = {"w": {"psnr": 25.0 + first, "ssim": 0.9}, "tune": {"psnr": 35.0, "ssim": 0.98}}
        path.write_text(json.dumps({
            "first_image": first, "images": 1,
            "per_image": [{"image": first, "stages": stages}],
            "drag": {"settings": {"lr": 0.002}, "edits": edits, "fidelity_edits": fid},
        }))  # fmt: skip
        paths.append(str(path))
    merged = bench.run(argparse.Namespace(merge=paths))
    one = bench.drag_table(EDITS, halves[0][1] + halves[1][1])
    assert {k: v for k, v in merged["drag"].items() if k != "settings"} == one
    assert merged["images"] == 2
    assert merged["quality"]["w"]["psnr"]["mean"] == 25.5
    assert merged["quality"]["w+"]["psnr"]["n"] == 0
    # runs with other drag settings are not one table
    other = json.loads((tmp_path / "run1.json").read_text())
    other["drag"]["settings"] = {"lr": 0.004}
    (tmp_path / "run1.json").write_text(json.dumps(other))
    with pytest.raises(BadInputError, match="other settings"):
        bench.run(argparse.Namespace(merge=paths))


def test_merging_one_arm_of_each_run(tmp_path):
    both, projected_only = tmp_path / "both.json", tmp_path / "projected.json"
    both.write_text(json.dumps({
        "per_image": [{"image": 0, "stages": {"w+": {"psnr": 30.0, "ssim": 0.9}}}],
        "drag": {"settings": {}, "edits": EDITS, "fidelity_edits": [fidelity(0, 30.0, 31.0)]},
    }))  # fmt: skip
    new = [dict(e, md=1.0) for e in EDITS if e["method"] == "projected"]
    projected_only.write_text(json.dumps({
        "per_image": [{"image": 0, "stages": {"w": {"psnr": 27.0, "ssim": 0.9}}}],
        "drag": {"settings": {}, "edits": new, "fidelity_edits": [fidelity(0, 35.0, 36.0)]},
    }))  # fmt: skip
    merged = bench.merge([f"{both}#generated", f"{projected_only}#projected"])
    generated = [e for e in EDITS if e["method"] == "generated"]
    assert merged["drag"] == {**bench.drag_table(new + generated, [fidelity(0, 35.0, 36.0)]),
                              "settings": {}}  # fmt: skip
    assert merged["drag"]["landmarks_lost"] == {"projected": 0, "generated": 0}
    assert merged["quality"]["w"]["psnr"]["n"] == 1 and merged["quality"]["w+"]["psnr"]["n"] == 0
    with pytest.raises(BadInputError, match="in two runs"):
        bench.merge([str(both), f"{projected_only}#projected"])
    with pytest.raises(BadInputError, match="projected or generated"):
        bench.merge([f"{both}#both"])


def test_quality_rows_name_the_stages_and_measure_no_tune_apart(tmp_path):
    G = make_tiny_generator()
    photos = [
        (np.random.default_rng(k).integers(0, 256, (32, 32, 3), np.uint8), None) for k in (0, 1)
    ]
    settings = ProjectSettings(w_steps=3, tune_steps=2, w_avg_samples=100)  # the default W pivot
    table, per_image, _ = bench.quality(G, photos, settings, first_image=7)
    assert set(table) == {"W", "W + tuning", "W + W+ (--no-tune)"}
    assert [row["image"] for row in per_image] == [7, 8]
    alone = project(G, photos[0][0], settings=settings.replace(
        tune_steps=0, wplus_steps=WPLUS_STEPS_WITHOUT_TUNING))  # fmt: skip
    assert per_image[0]["no_tune"]["psnr"] == round(alone.psnr, 3)
    assert table["W + tuning"]["cpu_seconds"]["n"] == 2
    # with the W+ stage on, the tuned row says so; from a cache, no seconds are counted
    cache = ProjectionCache(tmp_path)
    with_wplus = settings.replace(wplus_steps=2)
    bench.quality(G, photos, with_wplus, cache, no_tune_row=False)
    again, _, _ = bench.quality(G, photos, with_wplus, cache, no_tune_row=False)
    assert set(again) == {"W", "W + W+", "W + W+ + tuning"}
    assert (
        again["W + W+ + tuning"]["seconds"] == {"n": 0}
        and "cpu_seconds" not in again["W + W+ + tuning"]
    )
