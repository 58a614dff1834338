"""How long the code location takes to load: what every Dagster process (webserver, daemon, a
run worker, ``make demo``) pays before it can do anything.

``bench_code_location_import``: ``import alloc_assets.definitions`` in a fresh Python subprocess
(median of 3 after one untimed warm-up that fills the OS file cache and ``__pycache__``); beside
it ``import dagster`` alone (what Dagster itself costs) and, once each, ``dagster definitions
validate -w workspace.yaml`` and ``dg check defs`` (load through Dagster's CLI, with an instance).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks._harness import fresh_homes

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _wall(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - t0, proc


def _median(cmd: list[str], env: dict, repeats: int = 3) -> tuple[float, list[float]]:
    _wall(cmd, env)  # warm-up
    times = []
    for _ in range(repeats):
        s, proc = _wall(cmd, env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        times.append(s)
    return statistics.median(times), times


def bench_code_location_import() -> dict:
    fresh_homes("bench_code_location_")
    env = dict(os.environ)
    median, times = _median([sys.executable, "-c", "import alloc_assets.definitions"], env)
    dagster_median, _ = _median([sys.executable, "-c", "import dagster"], env)
    baseline, _ = _median([sys.executable, "-c", "pass"], env)
    out = {
        "median_s": median,
        "times_s": times,
        "import_dagster_median_s": dagster_median,
        "python_startup_median_s": baseline,
        "project_share_s": median - dagster_median,
    }
    s, proc = _wall([str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"], env)
    out["dagster_definitions_validate_s"] = s
    out["dagster_definitions_validate_ok"] = proc.returncode == 0
    if (BIN / "dg").exists():
        s, proc = _wall([str(BIN / "dg"), "check", "defs"], env)
        out["dg_check_defs_s"] = s
        out["dg_check_defs_ok"] = proc.returncode == 0
        if proc.returncode != 0:
            out["dg_check_defs_error"] = (proc.stdout + proc.stderr)[-600:]
    out["subprocess_peak_mb"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)
    out["note"] = ("median_s: wall time of `python -c 'import alloc_assets.definitions'` in a fresh subprocess "
                   "(3 repeats after 1 warm-up), Python start-up included (python_startup_median_s); "
                   "import_dagster_median_s: `import dagster` alone the same way; project_share_s: the difference. "
                   "dagster_definitions_validate_s / dg_check_defs_s: one run each (CLI start, code load, "
                   "validation). subprocess_peak_mb: the largest of those child processes; peak_mb is the "
                   "benchmark's own process.")
    return out
