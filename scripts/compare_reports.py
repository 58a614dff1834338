"""Compare two comparison-report JSON files number for number.

    python scripts/compare_reports.py BEFORE.json AFTER.json [--ignore KEY ...]

Exit 0 when every key and value is equal (floats bit for bit, unless ``--rtol`` is given), else 1
with one line per difference (its JSON path, both values). Keys named in ``--ignore`` (anywhere in
the tree; by default the ones that hold timestamps or file paths) are skipped. Used to show that a
refactor left the report of ``make demo`` unchanged.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

DEFAULT_IGNORED = ("generated_at", "created_at", "run_id", "path", "paths", "log", "reports_dir")


def differences(a, b, path: str = "$", ignored: frozenset[str] = frozenset(), rtol: float = 0.0) -> list[str]:
    """Every place where ``a`` and ``b`` differ, as ``path: a != b`` lines."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key in ignored:
                continue
            if key not in a or key not in b:
                out.append(f"{path}.{key}: only in {'after' if key not in a else 'before'}")
                continue
            out += differences(a[key], b[key], f"{path}.{key}", ignored, rtol)
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} items != {len(b)} items"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]", ignored, rtol)]
    if isinstance(a, float) and isinstance(b, float):
        same = (a == b) or (math.isnan(a) and math.isnan(b)) or (rtol > 0 and math.isclose(a, b, rel_tol=rtol))
        return [] if same else [f"{path}: {a!r} != {b!r}"]
    return [] if (type(a) is type(b) and a == b) else [f"{path}: {a!r} != {b!r}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--ignore", nargs="*", default=list(DEFAULT_IGNORED), help="keys skipped anywhere in the tree")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance for floats (default: bit for bit)")
    args = parser.parse_args(argv)
    before, after = (json.loads(p.read_text()) for p in (args.before, args.after))
    diffs = differences(before, after, ignored=frozenset(args.ignore), rtol=args.rtol)
    for line in diffs[:200]:
        print(line)
    n_values = sum(1 for _ in _leaves(before))
    print(f"{len(diffs)} difference(s) over {n_values} values" + ("" if diffs else ": the same numbers"))
    return 1 if diffs else 0


def _leaves(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _leaves(v)
    elif isinstance(x, list):
        for v in x:
            yield from _leaves(v)
    else:
        yield x


if __name__ == "__main__":
    sys.exit(main())
