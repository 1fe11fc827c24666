"""Markdown tables for docs/benchmarks.md from a merged drag-benchmark result.

python -m bench drag --merge docs/results/drag_shards/*.json --out docs/results/drag_100.json
python bench/drag_tables.py docs/results/drag_100.json
"""

from __future__ import annotations

import json
import sys

METHODS = (("default", "ours (default)"), ("draggan", "published (draggan)"))


def mean_median(summary: dict) -> str:
    return f"{summary['mean']:.2f} (median {summary['median']:.2f})"


def manipulation_table(rows: dict) -> str:
    lines = [
        "| points | MD of doing nothing | method | MD mean (median), n | lost | MD, lost counted as doing nothing | tracked handles' MD | steps | s per edit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for key, row in rows.items():
        for method, label in METHODS:
            if method not in row:
                continue
            r = row[method]
            lines.append(
                f"| {key[:-2]} | {row['md_nothing']['mean']:.2f} | {label} | "
                f"{mean_median(r['md'])}, {r['md']['n']} | {r['landmarks_lost']} | "
                f"{r['md_lost_as_nothing']['mean']:.2f} | {r['md_tracked']['mean']:.2f} | "
                f"{r['steps']['mean']:.0f} | {r['seconds_per_edit']['mean']:.1f} |"
            )
    return "\n".join(lines)


def paired_table(paired: dict) -> str:
    lines = ["| | PSNR dB mean (median) | SSIM mean | n |", "| --- | --- | --- | --- |"]
    for method, label in (("doing_nothing", "doing nothing (G(w1) vs G(w2))"), *METHODS):
        if method in paired:
            r = paired[method]
            lines.append(
                f"| {label} | {mean_median(r['psnr'])} | {r['ssim']['mean']:.3f} | {r['psnr']['n']} |"
            )
    return "\n".join(lines)


def main(path: str) -> None:
    result = json.loads(open(path).read())
    print(manipulation_table(result["manipulation"]["rows"]))
    print()
    print(paired_table(result["paired"]))


if __name__ == "__main__":
    main(sys.argv[1])
