"""The market layer: ``market_prices``, one partition per calendar year (see ``partitions.py``).

A partition's rows are a pure function of the configured source and the accepted landing copies
of its days (``landing/accepted/<day>/``; a landing copy replaces the source's row for its day):
re-materialising a year is idempotent, and a new or corrected day re-materialises its year. Only
the days whose closes actually changed are recorded in the change log, so the allocator layers
recompute from the earliest changed day and no further back.
"""

import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from alloc_assets.core.market.benchmark_checks import benchmark_every_day, merge_outcomes
from alloc_assets.core.market.calendar import sessions_between
from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.market.landing import (
    consume_originals,
    current_copies,
    is_accepted_copy,
    move_aside,
    unchanged_originals,
    withdraw,
)
from alloc_assets.core.market.landing_merge import (
    indicator_names,
    overlay_landing,
    split_benchmark_columns,
    split_indicator_columns,
)
from alloc_assets.core.market.preview import preview_closes
from alloc_assets.defs.common import (
    WAREHOUSE_POOL,
    WAREHOUSE_RETRY,
    check_result,
    column_schema,
    raise_on_blocking,
)
from alloc_assets.store.readers import history_span, stored_indicator_names
from alloc_assets.defs.market.partitions import market_partitions
from alloc_assets.schemas import (
    CHECK_PRICES_VALID,
    MARKET_CHECKS,
    CheckOutcome,
    MarketPrices,
    describe_first_failure,
    indicator_checks,
    market_price_checks,
)
from alloc_assets.store.changes import first_change
from alloc_assets.store.market import benchmark_names, previous_close, stored_universe
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.run_config import MarketPricesConfig
from resources.settings import sessions
from resources.warehouse import Change, DuckDBWarehouse

MARKET_TABLES = ("market_prices",)  # sql/market_prices.sql: prices, benchmark, sectors, indicators


def _window(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    tw = context.partition_time_window
    return tw.start.date(), (tw.end - dt.timedelta(days=1)).date()


def _fail(exc: MarketDataError) -> dg.Failure:
    return dg.Failure(description=str(exc), metadata={"file": exc.file or "", "row": exc.row or 0,
                                                      "column": exc.column or ""}, allow_retries=False)


def build_market_prices(partitions_def: dg.PartitionsDefinition = market_partitions) -> dg.AssetsDefinition:
    """The ``market_prices`` asset on a partitions definition (yearly in the definitions; the
    benchmark builds a monthly one to measure the choice)."""

    @dg.asset(
        name="market_prices",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        group_name="market",
        kinds={"duckdb", "polars", "pandera"},
        code_version="market-2",
        pool=WAREHOUSE_POOL,
        retry_policy=WAREHOUSE_RETRY,
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
        landing: LandingZone,
    ):
        """Daily adjusted closes of the strategy universe (the stocks), one row per (date, symbol).

        Source: the bundled US equities set (20 stocks, 1990-2022) unless ``ALLOC_MARKET_DATA``
        names a file or directory, plus the accepted landing copies of the window's days (a copy
        replaces the source's row for its day). The S&P 500 index (the benchmark) is stored beside
        it in ``market_benchmark`` and sectors in ``market_sectors``.

        Every row is validated before anything is written (table ``market_prices``, DuckDB); a
        failed blocking check leaves the warehouse exactly as it was. A range run (backfill) writes
        the whole window in one transaction, with its entry in the change log.
        """
        start, end = _window(context)
        sessions()  # the exchange calendar, loaded from $ALLOC_HOME/cache before the core needs it
        try:
            data = market_source.load()
        except MarketDataError as exc:
            raise _fail(exc) from None
        copies = current_copies(landing.accepted(), start, end)
        for f in config.files:
            path = Path(f)
            if not is_accepted_copy(path, landing.accepted()):
                raise dg.Failure(description=f"{f} is not an accepted landing copy under {landing.accepted()} "
                                             "(runs read only the immutable copies the sensor made).",
                                 allow_retries=False)
            day = dt.date.fromisoformat(path.parent.name)
            if start <= day <= end:
                copies[day] = path
        src = data.window(start, end)
        src_last = src.prices["date"].max() if src.prices.height else None
        with warehouse.session():  # one DuckDB connection for the whole step
            warehouse.ensure_tables(*MARKET_TABLES)
            bench_names = benchmark_names(warehouse, src)
            stored_indicators = set(stored_indicator_names(warehouse))
            if copies:
                try:
                    landed = market_source.load([str(p) for p in sorted(copies.values())])
                except MarketDataError as exc:
                    raise _fail(exc) from None
                landed = split_benchmark_columns(landed, bench_names)
                landed = split_indicator_columns(landed, stored_indicators | indicator_names(data))
                src = overlay_landing(src, landed, set(copies))
            universe = (config.symbols or stored_universe(warehouse)
                        or sorted(data.prices["symbol"].unique().to_list()) or sorted(src.prices["symbol"].unique().to_list()))
            window = src.prices
            if window.height == 0:
                raise dg.Failure(allow_retries=False, description=(
                    f"market_prices: no market data for {start} .. {end} in {market_source.describe()} and no "
                    f"accepted landing file: nothing to store (the partition stays as it was)."))
            # the source must be complete over its own span; landing days may arrive with gaps
            src_first = data.prices.filter(pl.col("date") >= start)["date"].min() if src_last is not None else None
            required = list(sessions_between(max(start, src_first), src_last).date) if src_last is not None else []
            outcomes = market_price_checks(window, start, end, required, universe,
                                           previous_close=previous_close(warehouse, start),
                                           jump_threshold=config.jump_threshold)
            bench = src.benchmark
            if bench is not None and bench.height == 0:
                bench = None
            if bench is not None:
                as_prices = bench.rename({"name": "symbol"})
                bench_outcomes = market_price_checks(as_prices, start, end, required, None)
                by_name = {o.name: o for o in bench_outcomes}
                outcomes = [merge_outcomes(o, by_name[o.name]) if o.severity == "ERROR" else o for o in outcomes]
            outcomes = benchmark_every_day(outcomes, window, bench, bench_names)
            indicators = src.indicators if src.indicators is not None and src.indicators.height else None
            outcomes.append(indicator_checks(indicators if indicators is not None else pl.DataFrame(), start, end,
                                             set(sessions_between(start, end).date)))
            if any(o.blocking_failure for o in outcomes) and (config.files or config.consume):
                _reject_landing(config, landing, outcomes)
            yield from raise_on_blocking(context, outcomes, asset="market_prices")

            stored = window.select("date", "symbol", "close").sort("date", "symbol")
            writes = {"market_prices": stored}
            if bench is not None:
                writes["market_benchmark"] = bench.select("date", "name", "close").sort("date")
            scoped = None
            stale_names = sorted(stored_indicators - indicator_names(data) - indicator_names(src))
            if indicators is not None:
                writes["market_indicators"] = indicators.select("date", "name", "value").sort("date", "name")
                # replaced per name: an indicator stored but absent from this run keeps its rows
                scoped = {"market_indicators": ("name", sorted(set(indicators["name"].to_list())))}
            if stale_names:
                context.log.warning(
                    f"indicator(s) {stale_names} are stored but not in the source: their stored values stay and the "
                    "latent state carries the last one forward. To drop one: DELETE FROM market_indicators WHERE "
                    "name = '<name>' (the state then recomputes from day one on the next run).")
            changed_from = first_change(warehouse, "market_prices", stored, ["date", "symbol"], "close", start, end)
            others = [("market_benchmark", ["date"], "close"), ("market_indicators", ["date", "name"], "value")]
            for table, keys, value in others:
                if table in writes:
                    d = first_change(warehouse, table, writes[table], keys, value, start, end)
                    changed_from = min(x for x in (changed_from, d) if x is not None) if (changed_from or d) else None
            sectors = data.sectors
            whole = {"market_sectors": pl.DataFrame({"symbol": list(sectors), "sector": list(sectors.values())},
                                                    schema={"symbol": pl.Utf8, "sector": pl.Utf8})} if sectors else None
            last_day = stored["date"].max() if stored.height else None
            version = warehouse.replace_window(
                writes, start, end, whole_tables=whole, scoped=scoped,
                change=Change("market_prices", changed_from, last_day, context.run_id))
            _, contiguous = history_span(warehouse)
        have = set(stored["date"].unique().to_list())
        gaps = [d for d in sessions_between(start, last_day).date if d not in have] if last_day is not None else []
        removed = consume_originals(config.consume)

        last = stored.filter(pl.col("date") == last_day).sort("symbol") if last_day else stored
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": stored.height,
                "window": f"{start} .. {end}",
                "dates": stored["date"].n_unique(),
                "symbols": len(universe),
                "source": market_source.describe(),
                "landing_copies": dg.MetadataValue.md("\n".join(f"- {d}: `{p}`" for d, p in sorted(copies.items()))
                                                      or "_none_"),
                "changed_from": str(changed_from) if changed_from else "nothing changed",
                "change_version": version or 0,
                "gaps_in_window": dg.MetadataValue.md(", ".join(map(str, gaps)) or "_none_"),
                "last_contiguous_day": str(contiguous) if contiguous else "none",
                "landing_files_removed": len(removed),
                "benchmark": "none (the equal-weight index of the universe stands in)" if bench is None
                else f"{bench['name'][0]} in market_benchmark",
                "indicators": ", ".join(sorted(set(indicators["name"].to_list()))) if indicators is not None
                else "none",
                "indicators_stored_not_in_source": ", ".join(stale_names) or "none",
                "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in data.notes) or "_none_"),
                "last_date": str(last_day),
                "preview": dg.MetadataValue.md(preview_closes(last)),
            },
        )
        for o in outcomes:
            yield check_result(o, "market_prices")

    return market_prices


market_prices = build_market_prices()


def _reject_landing(config: MarketPricesConfig, landing: LandingZone, outcomes: list[CheckOutcome]) -> None:
    """The run's landing files failed a blocking check (e.g. a symbol missing): their copies leave
    force (the day's previous copy, if any, is CURRENT again) and the originals go to rejected/
    with the reason, so one bad file never blocks later runs of its year."""
    reason = "; ".join(describe_first_failure(o) for o in outcomes if o.blocking_failure)
    for f in config.files:
        withdraw(Path(f))
    for path in unchanged_originals(config.consume):
        try:
            move_aside(path, landing.rejected(), f"rejected by the run: {reason}")
        except OSError:
            continue


__all__ = ["market_prices", "build_market_prices", "MarketPricesConfig", "CHECK_PRICES_VALID"]
