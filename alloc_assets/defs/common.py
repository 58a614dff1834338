"""Wiring shared by the asset modules: pool, retry policy, check results, column schemas."""

from __future__ import annotations

import datetime as dt
import typing
from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandera.polars as pa
import polars as pl

from alloc_assets.schemas import CheckOutcome, describe_first_failure, failures_markdown, pandera_failures

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


def stored_indicator_names(warehouse) -> list[str]:
    """The indicators stored beside the prices (``market_indicators``), sorted: they enter the
    latent state as exogenous features, never the traded universe."""
    if not warehouse.table_exists("market_indicators"):
        return []
    return warehouse.query("SELECT DISTINCT name FROM market_indicators ORDER BY name")["name"].to_list()


def history_span(warehouse) -> tuple[dt.date | None, dt.date | None]:
    """First stored market day and the last one reached from it without a gap: the span every
    derived layer, the backtests and the world model cover."""
    from alloc_assets.core.market.calendar import last_contiguous_session

    if not warehouse.table_exists("market_prices"):
        return None, None
    days = warehouse.query("SELECT DISTINCT date FROM market_prices ORDER BY date")["date"].to_list()
    if not days:
        return None, None
    return days[0], last_contiguous_session(days[0], days)


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


JUMP_FITS_TABLE = "jump_model_fits"
_FITS_SCHEMA = {"key": pl.String, "fit_date": pl.String, "record": pl.String}


def jump_fit_rows(warehouse) -> pl.DataFrame:
    """The cached jump-model refits (``key, fit_date, record``): each a pure function of its
    settings and training returns (the key hashes both), so a restated day only misses the keys
    whose training data it is part of. Shared by the ``jump_model`` control and regime method."""
    if not warehouse.table_exists(JUMP_FITS_TABLE):
        return pl.DataFrame(schema=_FITS_SCHEMA)
    return warehouse.query(f"SELECT key, fit_date, record FROM {JUMP_FITS_TABLE}").cast(_FITS_SCHEMA)


def new_fit_rows(fits: list[dict], new: dict[str, dict]) -> pl.DataFrame:
    """The rows of the refits fitted now, in refit order."""
    import json

    keep = [f for f in fits if f["key"] in new]
    return pl.DataFrame({"key": [f["key"] for f in keep], "fit_date": [f["fit_date"] for f in keep],
                         "record": [json.dumps(new[f["key"]]) for f in keep]}, schema=_FITS_SCHEMA)


def benchmark_jump_states(warehouse, dates: np.ndarray) -> tuple[np.ndarray, list[dict], dict[str, dict]]:
    """The jump model's online state on each of ``dates`` (0 bull, 1 bear, -1 before its first
    fit) from the benchmark's closes, with the refits in force and those fitted now."""
    import json

    from alloc_assets.core.allocator import jump_model as jm

    if not warehouse.table_exists("market_benchmark"):
        raise dg.Failure(allow_retries=False, description="the jump_model method needs a benchmark (market_benchmark is "
                         "missing: the data set has no benchmark column or file); use another regime_method.")
    b = warehouse.query("SELECT date, close FROM market_benchmark WHERE date BETWEEN ? AND ? ORDER BY date",
                        [str(dates[0]), str(dates[-1])])
    if b["date"].to_numpy().astype("datetime64[D]").tolist() != np.asarray(dates).astype("datetime64[D]").tolist():
        raise dg.Failure(allow_retries=False, description="the jump_model method needs the benchmark's close on every stored day "
                         "(market_benchmark); land the missing days or use another regime_method.")
    close = b["close"].to_numpy().astype(np.float64)
    r = np.full(len(close), np.nan)
    r[1:] = close[1:] / close[:-1] - 1.0
    rows = jump_fit_rows(warehouse)
    cache = {k: json.loads(v) for k, v in zip(rows["key"].to_list(), rows["record"].to_list())}
    state, fit_date, new, fits = jm.cached_walk_forward(np.asarray(dates).astype("datetime64[D]"), r, cache)
    return np.where(np.isnat(fit_date), -1, state.astype(np.int64)), fits, new


def require_schema(model: type[pa.DataFrameModel], frame: pl.DataFrame, table: str) -> None:
    """Validate a frame about to replace ``table`` (pandera, lazily: every failure); a Failure
    listing the first ten failure cases when it does not hold, before anything is stored."""
    failures = pandera_failures(model, frame)
    if failures.height:
        raise dg.Failure(allow_retries=False, description=f"{table}: the table failed its schema, nothing stored.\n"
                         f"{failures.head(10)}")
