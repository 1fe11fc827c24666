"""Drag-Fu's benchmarks and research tools, kept out of the installed package.

Run from a checkout's root: `python -m bench NAME` (the benchmarks: generator, drag, toy,
project, protocol; each module has add_arguments(parser) and run(args) -> dict),
`python -m bench.train_toy` (trains the embedded toy model), `python -m bench.house` (lines per
part), `python bench/photo.py` (drags on photo-sized pictures). Raw results: docs/results/.
"""
