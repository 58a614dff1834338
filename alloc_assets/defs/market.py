"""The market layer: ``market_prices``, validated and stored one partition window at a time."""


import datetime as dt

import dagster as dg
import polars as pl

from alloc_assets.core.calendar import sessions_between
from alloc_assets.core.market_io import MarketData, MarketDataError
from alloc_assets.defs.common import (
    WAREHOUSE_POOL,
    check_result,
    column_schema,
    partition_window,
    raise_on_blocking,
)
from alloc_assets.partitions import trading_day_partitions
from alloc_assets.schemas import (
    CHECK_PRICES_VALID,
    MARKET_CHECKS,
    MarketPrices,
    CheckOutcome,
    market_price_checks,
)
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

MARKET_TABLES = ("market_prices",)


class MarketPricesConfig(dg.Config):
    """Run settings of ``market_prices``."""

    files: list[str] = []
    """Read these files (e.g. landing files picked up by the sensor) instead of the configured source."""
    symbols: list[str] = []
    """The universe; empty = the symbols already stored, else those of the source."""
    jump_threshold: float = 0.5
    """``return_jumps`` (WARN) flags a daily return with |r| above this fraction."""


def _merge(a: CheckOutcome, b: CheckOutcome) -> CheckOutcome:
    if b.passed:
        return a
    failures = b.failures if a.failures.height == 0 else pl.concat([a.failures, b.failures], how="diagonal_relaxed")
    return CheckOutcome(a.name, False, a.severity, a.description, failures)


@dg.asset(
    partitions_def=trading_day_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="market",
    kinds={"duckdb", "polars", "pandera"},
    code_version="market-1",
    pool=WAREHOUSE_POOL,
    check_specs=[
        dg.AssetCheckSpec(name, asset="market_prices", description=desc, blocking=sev == "ERROR")
        for name, (sev, desc) in MARKET_CHECKS.items()
    ],
    metadata={"dagster/column_schema": column_schema(MarketPrices), "dagster/table_name": "market_prices"},
)
def market_prices(
    context: dg.AssetExecutionContext,
    config: MarketPricesConfig,
    warehouse: DuckDBWarehouse,
    market_source: MarketDataSource,
):
    """Daily adjusted closes of the strategy universe (the stocks), one row per (date, symbol).

    Source: the bundled US equities set (20 stocks, 1990-2022) unless ``ALLOC_MARKET_DATA`` names a
    file or directory; the sensor passes landing files through ``files``. The S&P 500 index (the
    benchmark) is stored beside it in ``market_benchmark`` and sectors in ``market_sectors``.

    Every row is validated before anything is written (table ``market_prices``, DuckDB); a failed
    blocking check leaves the warehouse exactly as it was. A range run (backfill) writes the whole
    window in one transaction.
    """
    with warehouse.session():  # one DuckDB connection for the whole step
        start, end = partition_window(context)
        warehouse.ensure_tables(*MARKET_TABLES)
        try:
            data = market_source.load(config.files or None)
        except MarketDataError as exc:
            raise dg.Failure(description=str(exc), metadata={"file": exc.file or "", "row": exc.row or 0,
                                                             "column": exc.column or ""}) from exc
        data = _split_benchmark_columns(data, _stored_benchmark_names(warehouse))
        universe = config.symbols or _stored_universe(warehouse, start, end) or sorted(data.prices["symbol"].unique().to_list())
        window = data.prices.filter((pl.col("date") >= start) & (pl.col("date") <= end)) if not config.files else data.prices
        sessions = list(sessions_between(start, end).date)
        outcomes = market_price_checks(window, start, end, sessions, universe,
                                       previous_close=_previous_close(warehouse, start),
                                       jump_threshold=config.jump_threshold)
        bench = None
        if data.benchmark is not None:
            bench = data.benchmark.filter((pl.col("date") >= start) & (pl.col("date") <= end)) if not config.files else data.benchmark
            as_prices = bench.rename({"name": "symbol"})
            bench_outcomes = market_price_checks(as_prices, start, end, sessions, None)
            by_name = {o.name: o for o in bench_outcomes}
            outcomes = [_merge(o, by_name[o.name]) if o.severity == "ERROR" else o for o in outcomes]
        yield from raise_on_blocking(context, outcomes, asset="market_prices")

        stored = window.select("date", "symbol", "close").sort("date", "symbol")
        writes = {"market_prices": stored}
        if bench is not None:
            writes["market_benchmark"] = bench.select("date", "name", "close").sort("date")
        whole = {"market_sectors": pl.DataFrame({"symbol": list(data.sectors), "sector": list(data.sectors.values())},
                                                schema={"symbol": pl.Utf8, "sector": pl.Utf8})} if data.sectors else None
        warehouse.replace_window(writes, start, end, whole_tables=whole)

        last = stored.filter(pl.col("date") == stored["date"].max()).sort("symbol")
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": stored.height,
                "window": f"{start} .. {end}",
                "dates": stored["date"].n_unique(),
                "symbols": len(universe),
                "source": market_source.describe() if not config.files else ", ".join(config.files),
                "benchmark": "none (the equal-weight index of the universe stands in)" if bench is None
                else f"{bench['name'][0]} in market_benchmark",
                "last_date": str(stored["date"].max()),
                "preview": dg.MetadataValue.md(_preview(last)),
            },
        )
        for o in outcomes:
            yield check_result(o, "market_prices")


def _stored_benchmark_names(warehouse: DuckDBWarehouse) -> list[str]:
    if not warehouse.table_exists("market_benchmark"):
        return []
    return warehouse.query("SELECT DISTINCT name FROM market_benchmark")["name"].to_list()


def _split_benchmark_columns(data: MarketData, names: list[str]) -> MarketData:
    """A landing file may carry the benchmark as one more column (e.g. ``SP500``): store it as the
    benchmark, not as a stock."""
    if not names or data.benchmark is not None:
        return data
    is_bench = pl.col("symbol").is_in(names)
    bench = data.prices.filter(is_bench)
    if bench.height == 0:
        return data
    bench = bench.rename({"symbol": "name"}).select("date", "name", "close", "source_file", "source_row", "source_column")
    return MarketData(data.prices.filter(~is_bench), bench, data.sectors, data.files)


def _stored_universe(warehouse: DuckDBWarehouse, start: dt.date, end: dt.date) -> list[str]:
    if not warehouse.table_exists("market_prices"):
        return []
    rows = warehouse.query(
        "SELECT DISTINCT symbol FROM market_prices WHERE date < ? OR date > ? ORDER BY symbol", [start, end])
    return rows["symbol"].to_list() if rows.height else []


def _previous_close(warehouse: DuckDBWarehouse, start: dt.date) -> dict[str, float]:
    if not warehouse.table_exists("market_prices"):
        return {}
    rows = warehouse.query(
        """SELECT symbol, close FROM market_prices
           WHERE date = (SELECT max(date) FROM market_prices WHERE date < ?)""", [start])
    return dict(zip(rows["symbol"].to_list(), rows["close"].to_list())) if rows.height else {}


def _preview(last: pl.DataFrame) -> str:
    if last.height == 0:
        return "_no rows_"
    lines = [f"Closes on {last['date'][0]}:", "", "| symbol | close |", "|---|---:|"]
    lines += [f"| {s} | {c:.4f} |" for s, c in zip(last["symbol"], last["close"])]
    return "\n".join(lines)


__all__ = ["market_prices", "MarketPricesConfig", "CHECK_PRICES_VALID"]
