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


def dir_mb(path) -> float:
    """Disk usage of a folder in MB (allocated blocks, like ``du``)."""
    import os

    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except FileNotFoundError:
                continue
    return total / 1e6


def fresh_homes(prefix: str):
    """A fresh ``ALLOC_HOME`` and ``DAGSTER_HOME`` (stock SQLite ``dagster.yaml`` from
    ``alloc_assets.instance.instance_yaml()``) in a new temporary folder, set in the environment
    (``make bench`` exports the repository's own; a benchmark must never write there). Returns
    ``(root, alloc_home, dagster_home)``."""
    import os
    import tempfile
    from pathlib import Path

    from alloc_assets.instance import instance_yaml

    root = Path(tempfile.mkdtemp(prefix=prefix))
    alloc, dagster_home = root / "alloc", root / "dagster"
    alloc.mkdir()
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(instance_yaml())
    os.environ["ALLOC_HOME"] = str(alloc)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return root, alloc, dagster_home


#: Dagster's console logger at WARNING (the runs' events are still stored in the instance).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
