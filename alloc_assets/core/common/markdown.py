"""Markdown tables for the reports and the Dagster UI's metadata."""

from __future__ import annotations

import math
from collections.abc import Sequence


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]], align_right_from: int = 1) -> str:
    """A GitHub markdown table; columns from ``align_right_from`` on are right-aligned (numbers).
    Cells are written with ``str``: format numbers before calling."""
    sep = ["---" if i < align_right_from else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def number_cell(x: object, spec: str = ".4f") -> str:
    """A float formatted with ``spec`` (``n/a`` when it is not finite); anything else as ``str``."""
    if isinstance(x, float):
        return format(x, spec) if math.isfinite(x) else "n/a"
    return str(x)
