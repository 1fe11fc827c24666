"""The drag benchmark's bookkeeping: per-pair landmarks, summaries, merging shards of a run.

(The benchmark itself is never part of the test run; these check that a run split across
processes adds up to the same table as one run.)"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from bench import drag as bench
from dragfu.toy import LANDMARK_NAMES


def edit(pair, points, method, md, steps=100, md_nothing=10.0):
    return {
        "pair": pair, "points": points, "landmarks": "", "method": method,
        "md_nothing": md_nothing, "md": md, "md_tracked": 0.5, "seconds": 1.0, "steps": steps,
    }  # fmt: skip


def test_one_point_landmark_depends_only_on_the_pair():
    drawn = [bench.one_point_landmark(0, pair) for pair in range(60)]
    assert drawn == [bench.one_point_landmark(0, pair) for pair in range(60)]
    assert set(drawn) == set(LANDMARK_NAMES)  # every landmark is drawn over 60 pairs
    assert drawn != [bench.one_point_landmark(1, pair) for pair in range(60)]


def test_summary_counts_lost_landmarks_apart_from_the_mean():
    edits = [
        edit(0, 5, "default", 1.0), edit(1, 5, "default", 3.0), edit(2, 5, "default", None),
        edit(0, 5, "draggan", 2.0, md_nothing=99.0),
    ]  # fmt: skip
    row = bench.summarise_manipulation(edits)["5pt"]
    assert row["default"]["md"] == {"mean": 2.0, "median": 2.0, "n": 2}
    assert row["default"]["landmarks_lost"] == 1
    assert row["default"]["md_lost_as_nothing"]["mean"] == round((1.0 + 3.0 + 10.0) / 3, 3)
    assert row["draggan"]["md"]["n"] == 1
    # doing nothing is counted once per pair (from the first method's edits), not per method
    assert row["md_nothing"]["n"] == 3 and row["md_nothing"]["mean"] == 10.0


def test_merging_shards_equals_one_run(tmp_path):
    shards = [
        [edit(0, 1, "default", 1.0), edit(1, 1, "default", 2.0)],
        [edit(2, 1, "default", 6.0), edit(2, 9, "default", None)],
    ]
    paths = []
    for first, edits in zip((0, 2), shards, strict=True):
        path = tmp_path / f"shard{first}.json"
        paired = [
            {"pair": first, "method": "doing_nothing", "psnr": 15.0, "ssim": 0.8},
            {"pair": first, "method": "default", "psnr": 20.0 + first, "ssim": 0.9},
        ]
        path.write_text(json.dumps({
            "pairs": 2, "first_pair": first,
            "manipulation": {"rows": {}, "pairs_skipped_undetected": 1, "edits": edits},
            "paired": {"edits": paired},
        }))  # fmt: skip
        paths.append(str(path))
    merged = bench.run(argparse.Namespace(merge=paths))
    assert merged["pairs"] == 4
    manipulation = merged["manipulation"]
    assert manipulation["pairs_skipped_undetected"] == 2
    assert manipulation["rows"] == bench.summarise_manipulation(shards[0] + shards[1])
    assert manipulation["rows"]["1pt"]["default"]["md"]["mean"] == pytest.approx(3.0)
    assert manipulation["rows"]["9pt"]["default"]["landmarks_lost"] == 1
    assert merged["paired"]["default"]["psnr"]["mean"] == pytest.approx(21.0)
    # another method's shard over the same pairs does not count doing nothing again
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"pairs": 2, "paired": {"edits": [
        {"pair": 0, "method": "doing_nothing", "psnr": 15.0, "ssim": 0.8},
        {"pair": 0, "method": "draggan", "psnr": 19.0, "ssim": 0.9},
    ]}}))  # fmt: skip
    both = bench.run(argparse.Namespace(merge=[*paths, str(other)]))["paired"]
    assert both["doing_nothing"]["psnr"]["n"] == 2
    assert both["draggan"]["psnr"]["n"] == 1


def test_a_landmark_already_at_its_target_is_not_dragged_but_still_counted():
    handles = np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])
    targets = np.array([[14.0, 13.0], [20.3, 20.0], [30.0, 29.0]])
    moving = bench.still_to_move(handles, targets)
    assert moving.tolist() == [True, False, True]  # the engine refuses a drag of < 0.5 px
    assert bench.mean_distance(handles, targets) == pytest.approx((5.0 + 0.3 + 1.0) / 3)
