"""What every data check shares: the outcome record, severities, and pandera failures as rows.

A check is named by a module constant and described by a ``(severity, description)`` entry in a
per-artifact dict (``MARKET_CHECKS``, ``REGIME_CHECKS``...). ERROR failures block the write (the
warehouse keeps what it had); WARN failures are reported and the data is stored. Failures carry
the offending input rows, with provenance (``source_file``, ``source_row``) where the input had it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandera.polars as pa
import polars as pl

__all__ = ["ERROR", "MAX_FAILURE_ROWS", "WARN", "CheckOutcome", "failures_markdown", "mask_outcome",
    "offending_rows", "pandera_failures", "pandera_outcome", "polars_schema"]

ERROR = "ERROR"
WARN = "WARN"
MAX_FAILURE_ROWS = 20  # offending rows shown in check metadata (the count is always complete)


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one named data check on one artifact."""

    name: str
    passed: bool
    severity: str
    description: str
    failures: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def blocking_failure(self) -> bool:
        return not self.passed and self.severity == ERROR


def pandera_failures(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    """pandera's lazy failure cases (``check, column, failure_case, index``); empty if valid."""
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return pl.DataFrame()


def offending_rows(frame: pl.DataFrame, index: list[int], problem: list[str]) -> pl.DataFrame:
    """The offending input rows (with provenance) and what is wrong with each."""
    if not index:
        return pl.DataFrame()
    lookup = dict(zip(index, problem))
    rows = frame.with_row_index("_i").filter(pl.col("_i").is_in(index))
    return rows.with_columns(pl.Series("problem", [lookup[int(i)] for i in rows["_i"]])).drop("_i")


def mask_outcome(name: str, checks: dict[str, tuple[str, str]], frame: pl.DataFrame, bad: list[bool] | pl.Series,
                 problem: str, columns: list[str] | None = None) -> CheckOutcome:
    """A check outcome from a boolean mask of offending rows."""
    sev, desc = checks[name]
    bad_series = pl.Series(bad, dtype=pl.Boolean) if not isinstance(bad, pl.Series) else bad
    rows = frame.filter(bad_series)
    if columns:
        rows = rows.select([c for c in columns if c in rows.columns])
    rows = rows.with_columns(pl.lit(problem).alias("problem")) if rows.height else rows
    return CheckOutcome(name, rows.height == 0, sev, desc, rows)


def pandera_outcome(name: str, checks: dict[str, tuple[str, str]], model: type[pa.DataFrameModel],
                    frame: pl.DataFrame) -> CheckOutcome:
    """A check outcome from a pandera model: every failure case with its row."""
    fc = pandera_failures(model, frame)
    sev, desc = checks[name]
    if fc.height == 0:
        return CheckOutcome(name, True, sev, desc)
    indexed = fc.filter(pl.col("index").is_not_null())
    index = [int(i) for i in indexed["index"].to_list()]
    problems = [f"{c} {k}: {v}" for c, k, v in zip(indexed["column"], indexed["check"], indexed["failure_case"])]
    first: dict[int, str] = {}
    for i, p in zip(index, problems):
        first.setdefault(i, p)
    rows = offending_rows(frame, list(first), list(first.values()))
    if rows.height == 0:  # schema-level failure (missing column, dtype)
        rows = fc.select(pl.col("column").cast(pl.Utf8), pl.col("check").cast(pl.Utf8).alias("problem"))
    return CheckOutcome(name, False, sev, desc, rows)


def failures_markdown(frame: pl.DataFrame, limit: int = MAX_FAILURE_ROWS) -> str:
    """Offending rows as a markdown table (first ``limit``), for check metadata in the UI."""
    if frame.height == 0:
        return "_none_"
    head = frame.head(limit)
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    if frame.height > limit:
        lines.append(f"\n_{frame.height - limit} more rows not shown_")
    return "\n".join(lines)


def polars_schema(model: type[pa.DataFrameModel]) -> dict[str, pl.DataType]:
    """The model's columns as a polars dtype dict (``{"date": pl.Date, ...}``), in model order: the
    one declaration of a table's columns, for building or casting frames that the model validates."""
    return {name: column.dtype.type for name, column in model.to_schema().columns.items()}
