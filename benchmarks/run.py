"""``make bench``: run every ``bench_*`` function of ``benchmarks/bench_*.py`` and write results.json.

Each benchmark runs in its own subprocess so its ``peak_mb`` (peak resident memory of that process,
from ``getrusage``) is its own. ``python -m benchmarks.run [substring ...]`` runs a subset; entries
not run keep their previous values in results.json.
"""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"

CHILD = """
import json, resource, sys
from benchmarks.{module} import {func} as f
out = f()
out["peak_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
print("BENCH_RESULT " + json.dumps(out))
"""


def discover() -> list[tuple[str, str]]:
    found = []
    for path in sorted(HERE.glob("bench_*.py")):
        module = importlib.import_module(f"benchmarks.{path.stem}")
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("bench_") and fn.__module__ == module.__name__:
                found.append((path.stem, name))
    return found


def machine() -> dict:
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "system": platform.system()}


def main(argv: list[str]) -> int:
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    failed = []
    for module, func in discover():
        entry = func.removeprefix("bench_")
        if argv and not any(a in entry for a in argv):
            continue
        print(f"[bench] {entry} ...", flush=True)
        load_before = os.getloadavg()[0]
        proc = subprocess.run([sys.executable, "-c", CHILD.format(module=module, func=func)],
                              capture_output=True, text=True, cwd=HERE.parent)
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            failed.append(entry)
            continue
        out = json.loads(line.removeprefix("BENCH_RESULT "))
        out["measured_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        out["machine"] = machine()
        # other processes on the machine (2 cores) slow every figure: the 1-minute load average
        # when the benchmark started and when it ended says how busy it was
        out["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
        if "target_s" in out:
            out["meets_target"] = bool(out["median_s"] < out["target_s"])
        results[entry] = out
        print(f"[bench] {entry}: median {out['median_s']:.4g} s, peak {out['peak_mb']} MB"
              + (f", target {out['target_s']} s" if "target_s" in out else ""), flush=True)
        RESULTS.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    if failed:
        print(f"[bench] FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
