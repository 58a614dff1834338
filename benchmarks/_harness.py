"""Timing helpers shared by the benchmark modules (``make bench``).

A benchmark is a function ``bench_<entry_name>()`` in a module ``benchmarks/bench_*.py`` that returns
a dict with at least ``median_s`` (median wall seconds of the measured repeats) and any figures or
ratios measured in the same run (e.g. ``numpy_median_s``, ``speedup_vs_numpy``, ``target_s``).
``benchmarks/run.py`` runs each one in a fresh subprocess and adds ``peak_mb`` (the child's peak
resident memory), so entries do not pollute each other's memory figures.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def time_median(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times
