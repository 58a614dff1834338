"""Wiring shared by the asset modules: pool, retry policy, check results, column schemas."""

from __future__ import annotations

import contextlib
import datetime as dt
import typing
from collections.abc import Iterator

import dagster as dg
import pandera.polars as pa
import polars as pl

from alloc_assets.core.market.panel import PricePanel
from alloc_assets.schemas import CheckOutcome, describe_first_failure, failures_markdown, pandera_failures
from alloc_assets.store import readers
from alloc_assets.store.readers import WarehouseDataError

#: Concurrency pool of every asset that writes the DuckDB warehouse. The instance files set the
#: pool's limit to 1 at run granularity: one warehouse-writing run at a time.
WAREHOUSE_POOL = "warehouse"

#: Transient warehouse errors (a lock held by another process past its wait) are retried; bad data
#: raises ``Failure(allow_retries=False)`` and is never retried.
#: On the unpartitioned derived assets too: a range of market years stays ONE run end to end
#: (``dg launch --job refresh_job --partition-range 2020...2022`` needs it, see docs/DAGSTER_NOTES.md).
SINGLE_RUN = dg.BackfillPolicy.single_run()

WAREHOUSE_RETRY = dg.RetryPolicy(max_retries=2, delay=2.0, backoff=dg.Backoff.EXPONENTIAL)


def check_result(outcome: CheckOutcome, asset: str) -> dg.AssetCheckResult:
    """A Dagster check result carrying the offending rows as a markdown table."""
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=outcome.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.ERROR if outcome.severity == "ERROR" else dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata={
            "failing_rows": outcome.failures.height,
            "offending_rows": dg.MetadataValue.md(failures_markdown(outcome.failures)),
        },
    )


@contextlib.contextmanager
def failing_without_retry() -> Iterator[None]:
    """A ``WarehouseDataError`` raised inside the block (an input missing upstream) becomes a
    ``Failure`` that is not retried: a retry cannot land the missing rows."""
    try:
        yield
    except WarehouseDataError as exc:
        metadata = {"missing_dates": dg.MetadataValue.md(", ".join(map(str, exc.missing[:50])))} if exc.missing else None
        raise dg.Failure(allow_retries=False, description=str(exc), metadata=metadata) from None


def load_panel(warehouse, start: dt.date, end: dt.date) -> PricePanel:
    """``store.readers.load_panel``, failing the step without retry when the prices are missing."""
    with failing_without_retry():
        return readers.load_panel(warehouse, start, end)


def asset_check_specs(asset: str, checks: dict) -> list[dg.AssetCheckSpec]:
    """The check specs of ``checks`` ({name: (severity, description)}); ERROR ones block."""
    return [dg.AssetCheckSpec(name, asset=asset, description=desc, blocking=sev == "ERROR")
            for name, (sev, desc) in checks.items()]


def raise_on_blocking(context: dg.AssetExecutionContext, outcomes: list[CheckOutcome], asset: str) -> Iterator:
    """If a blocking check failed: report every check (with offending rows) and fail before writing.

    Yielding the check results first puts them in the UI (asset checks tab) although nothing is
    materialized; the raised ``Failure`` names file, row and column of the first offending row of
    each failed check. Nothing has been written at this point.
    """
    failed = [o for o in outcomes if o.blocking_failure]
    if not failed:
        return
    for o in outcomes:
        yield check_result(o, asset)
    lines = [describe_first_failure(o) for o in failed]
    context.log.error("Input rejected, nothing stored:\n" + "\n".join(lines))
    raise dg.Failure(
        description=f"{asset}: input rejected, nothing was stored.\n" + "\n".join(lines),
        metadata={o.name: dg.MetadataValue.md(failures_markdown(o.failures)) for o in failed},
        allow_retries=False,
    )


_PY_TO_TYPE = {dt.date: "date", str: "string", float: "float64", int: "int64", bool: "bool", dt.datetime: "timestamp"}


def column_schema(model: type[pa.DataFrameModel]) -> dg.TableSchema:
    """The pandera model as a Dagster column schema (names, types, descriptions) for the UI."""
    schema = model.to_schema()
    hints = typing.get_type_hints(model)
    cols = []
    for name, col in schema.columns.items():
        hint = hints.get(name)
        inner = typing.get_args(hint)[0] if typing.get_args(hint) else hint
        cols.append(dg.TableColumn(name=name, type=_PY_TO_TYPE.get(inner, str(col.dtype)),
                                   description=col.description or ""))
    return dg.TableSchema(columns=cols)


def require_schema(model: type[pa.DataFrameModel], frame: pl.DataFrame, table: str) -> None:
    """Validate a frame about to replace ``table`` (pandera, lazily: every failure); a Failure
    listing the first ten failure cases when it does not hold, before anything is stored."""
    failures = pandera_failures(model, frame)
    if failures.height:
        raise dg.Failure(allow_retries=False, description=f"{table}: the table failed its schema, nothing stored.\n"
                         f"{failures.head(10)}")
