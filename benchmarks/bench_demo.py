"""``make demo`` end to end: what a person sees on a fresh clone (after ``make setup``).

``bench_demo_end_to_end``: ``python -m alloc_assets.demo`` in a subprocess on a fresh ``ALLOC_HOME``
(``DAGSTER_HOME`` = ``$ALLOC_HOME/dagster``, as the Makefile sets it): wall seconds and the number of
lines it prints. It takes about a minute and a half on 2 cores, so it runs ONCE (median_s is that
one run), not a median of repeats.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bench_demo_end_to_end() -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    env = {**os.environ, "ALLOC_HOME": str(root / "alloc"), "DAGSTER_HOME": str(root / "alloc" / "dagster")}
    env.pop("ALLOC_DEMO_PATHS", None)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "alloc_assets.demo"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    wall = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stdout, stderr = proc.stdout.splitlines(), proc.stderr.splitlines()
    phases = [ln.strip() for ln in stdout if re.match(r"^\s+.*\(\d+(\.\d+)? s\)$", ln)]
    scenarios = [" ".join(ln.split()) for ln in stdout if re.match(r"^\s+\S+\s+\d+(\.\d+)? s$", ln)]
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "median_s": wall,
        "times_s": [wall],
        "target_s": 90.0,
        "printed_lines": len(stdout) + len(stderr),
        "stdout_lines": len(stdout),
        "stderr_lines": len(stderr),
        "target_lines": 200,
        "meets_lines_target": bool(len(stdout) + len(stderr) < 200),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "phases": phases,
        "scenario_times": scenarios,
        "stderr": proc.stderr[-500:],
        "demo_total_line": next((ln for ln in stdout if ln.startswith("total ")), ""),
        "subprocess_peak_mb": round(usage.ru_maxrss / 1024, 1),
        "note": "ONE run of `python -m alloc_assets.demo` (what `make demo` runs after setup) in a fresh "
                "subprocess on a fresh ALLOC_HOME, default settings (ALLOC_DEMO_PATHS unset: 2,000 paths); "
                "median_s is that single wall time (not a median: the demo takes ~1.5 min). printed_lines: "
                "stdout + stderr lines. cpu_s: user + system CPU seconds of the demo process (all its threads; "
                "less sensitive than the wall time to other load on the machine). subprocess_peak_mb: the demo "
                "process; peak_mb is the benchmark's own.",
    }
