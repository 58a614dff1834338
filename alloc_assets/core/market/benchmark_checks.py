"""The market checks' outcomes combined across prices and benchmark (pure)."""

from __future__ import annotations

import polars as pl

from alloc_assets.schemas import CHECK_NO_MISSING_SESSIONS, CheckOutcome


def merge_outcomes(a: CheckOutcome, b: CheckOutcome) -> CheckOutcome:
    """``a`` with ``b``'s failures added (``a`` unchanged when ``b`` passed)."""
    if b.passed:
        return a
    failures = b.failures if a.failures.height == 0 else pl.concat([a.failures, b.failures], how="diagonal_relaxed")
    return CheckOutcome(a.name, False, a.severity, a.description, failures)


def benchmark_every_day(outcomes: list[CheckOutcome], window: pl.DataFrame, bench: pl.DataFrame | None,
                         names: list[str]) -> list[CheckOutcome]:
    """With a benchmark in the data set, every day with prices needs its close (``no_missing_sessions``):
    a landing file without the benchmark column is an error, never a silent switch to the
    equal-weight index downstream."""
    if not names:
        return outcomes
    have = set(bench["date"].to_list()) if bench is not None else set()
    missing = sorted(d for d in window["date"].unique().to_list() if d not in have)
    if not missing:
        return outcomes
    files = (window.filter(pl.col("date").is_in(missing)).group_by("date").agg(pl.col("source_file").first())
             if "source_file" in window.columns else None)
    where = dict(zip(files["date"].to_list(), files["source_file"].to_list())) if files is not None else {}
    rows = pl.DataFrame({"date": missing, "source_file": [where.get(d, "") for d in missing],
                         "problem": [f"benchmark {', '.join(names)} has no close on this day "
                                     f"(add a {names[0]} column)"] * len(missing)},
                        schema={"date": pl.Date, "source_file": pl.Utf8, "problem": pl.Utf8})
    out = []
    for o in outcomes:
        if o.name == CHECK_NO_MISSING_SESSIONS:
            failures = rows if o.failures.height == 0 else pl.concat([o.failures, rows], how="diagonal_relaxed")
            o = CheckOutcome(o.name, False, o.severity, o.description, failures)
        out.append(o)
    return out

