"""The error every market-data reader raises: what is wrong, where (file, row, column), what to do.

Row numbers count data rows from 1 (the header is line 1, so row ``r`` is line ``r+1``).
"""

from __future__ import annotations

from pathlib import Path

INDEX_HINT = ("Move it to indicators/ (a regime input, never traded) or name it benchmark_<name>.csv to use it as "
              "the benchmark.")
BENCHMARK_HINT = ("Extend the benchmark file, or remove it to use the equal-weight index of the universe (stated as "
                  "a fallback in the report).")


class MarketDataError(ValueError):
    """Bad market data input; the message says what, where (file, row, column) and what to do."""

    def __init__(self, problem: str, file: str | Path | None = None, row: int | None = None,
                 column: str | None = None, hint: str = "Fix the file and run again; nothing was stored."):
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.problem = problem
        where = []
        if file is not None:
            where.append(f"file {self.file}")
        if row is not None:
            where.append(f"row {row} (line {row + 1})")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {problem}. {hint}" if prefix else f"{problem}. {hint}")



def plural(n: int, word: str) -> str:
    """``1 row``, ``2 rows``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
