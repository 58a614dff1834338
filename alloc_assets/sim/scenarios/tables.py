"""The stored tables of a scenario run (``stress_dashboard``, ``stress_paths``) as polars frames, and
their markdown for the Dagster UI."""

from __future__ import annotations

import polars as pl

from alloc_assets.core.common.markdown import md_table

DASHBOARD_COLUMNS = ("book", "baseline_sharpe", "stressed_sharpe", "p_drawdown_20", "p_drawdown_30", "median_recovery_months",
                     "cvar_95")


def dashboard_frame(rows: list[dict], calibrated_through: str) -> pl.DataFrame:
    """The scenario's ``stress_dashboard`` rows (``ScenarioResult.dashboard_rows``) with the world
    model's last calibration date; a column that is None in every row (e.g. no path recovered) is
    still a number column."""
    frame = pl.DataFrame(rows, infer_schema_length=None).with_columns(pl.lit(calibrated_through).alias("calibrated_through"))
    return frame.with_columns([pl.col(c).cast(pl.Float64) for c, t in frame.schema.items() if t == pl.Null])


def dashboard_md(rows: list[dict]) -> str:
    """Markdown of the dashboard rows: floats to 4 decimals, None as ``n/a``."""
    def cell(x):
        return "n/a" if x is None else (f"{x:.4f}" if isinstance(x, float) else str(x))

    return md_table(DASHBOARD_COLUMNS, [[cell(r[c]) for c in DASHBOARD_COLUMNS] for r in rows],
                    align_right_from=len(DASHBOARD_COLUMNS))


def stress_path_frame(result, base) -> pl.DataFrame:
    """The scenario's month-by-month path against ``base`` on the same random numbers (table
    ``stress_paths``): per book and month, ``vol_annual`` (cross-path volatility of the month's
    return, annualised) and ``drawdown_median`` (median drawdown at the month's end), with the base
    scenario's values beside them (``*_base``)."""
    own = pl.DataFrame(result.path_rows(), infer_schema_length=None)
    ref = pl.DataFrame(base.path_rows(), infer_schema_length=None).select(
        "book", "month", pl.col("vol_annual").alias("vol_annual_base"), pl.col("drawdown_median").alias("drawdown_median_base"))
    return own.join(ref, on=["book", "month"], how="left").sort("book", "month")


def path_table_md(paths: pl.DataFrame, months: int = 12) -> str:
    """Markdown: the first ``months`` months of both books, shocked vs base (month right-aligned,
    book left-aligned, numbers right-aligned)."""
    lines = ["| month | book | vol (ann.) | vol base | median drawdown | drawdown base |", "|---:|---|---:|---:|---:|---:|"]
    for r in paths.filter(pl.col("month") <= months).sort("month", "book").iter_rows(named=True):
        lines.append(f"| {r['month']} | {r['book']} | {r['vol_annual']:.1%} | {r['vol_annual_base']:.1%} | "
                     f"{r['drawdown_median']:.1%} | {r['drawdown_median_base']:.1%} |")
    return "\n".join(lines)
