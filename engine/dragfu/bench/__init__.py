"""Benchmark implementations behind `dragfu bench NAME` (each: add_arguments, run -> dict)."""
