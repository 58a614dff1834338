"""The market layer: ``market_prices``, one partition per calendar year (see ``partitions.py``).

A partition's rows are a pure function of the configured source and the accepted landing copies
of its days (``landing/accepted/<day>/``; a landing copy replaces the source's row for its day):
re-materialising a year is idempotent, and a new or corrected day re-materialises its year. Only
the days whose closes actually changed are recorded in the change log, so the allocator layers
recompute from the earliest changed day and no further back.
"""

import dataclasses
import datetime as dt
from pathlib import Path

import dagster as dg
import polars as pl

from alloc_assets.core.market.calendar import sessions_between
from alloc_assets.core.market.landing import current_copies, is_accepted_copy, move_aside, sha256_file, withdraw
from alloc_assets.core.market.market_io import MarketData, MarketDataError, indicator_name
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
    CHECK_NO_MISSING_SESSIONS,
    CHECK_PRICES_VALID,
    MARKET_CHECKS,
    CheckOutcome,
    MarketPrices,
    describe_first_failure,
    indicator_checks,
    market_price_checks,
)
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.run_config import MarketPricesConfig
from resources.warehouse import Change, DuckDBWarehouse

MARKET_TABLES = ("market_prices",)  # sql/market_prices.sql: prices, benchmark, sectors, indicators


def _merge(a: CheckOutcome, b: CheckOutcome) -> CheckOutcome:
    if b.passed:
        return a
    failures = b.failures if a.failures.height == 0 else pl.concat([a.failures, b.failures], how="diagonal_relaxed")
    return CheckOutcome(a.name, False, a.severity, a.description, failures)


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
            bench_names = _stored_benchmark_names(warehouse, src)
            stored_indicators = set(stored_indicator_names(warehouse))
            if copies:
                try:
                    landed = market_source.load([str(p) for p in sorted(copies.values())])
                except MarketDataError as exc:
                    raise _fail(exc) from None
                landed = _split_benchmark_columns(landed, bench_names)
                landed = _split_indicator_columns(landed, stored_indicators | _source_indicator_names(data))
                src = _overlay(src, landed, set(copies))
            universe = (config.symbols or _stored_universe(warehouse, start, end)
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
                                           previous_close=_previous_close(warehouse, start),
                                           jump_threshold=config.jump_threshold)
            bench = src.benchmark
            if bench is not None and bench.height == 0:
                bench = None
            if bench is not None:
                as_prices = bench.rename({"name": "symbol"})
                bench_outcomes = market_price_checks(as_prices, start, end, required, None)
                by_name = {o.name: o for o in bench_outcomes}
                outcomes = [_merge(o, by_name[o.name]) if o.severity == "ERROR" else o for o in outcomes]
            outcomes = _benchmark_every_day(outcomes, window, bench, bench_names)
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
            stale_names = sorted(stored_indicators - _source_indicator_names(data) - _source_indicator_names(src))
            if indicators is not None:
                writes["market_indicators"] = indicators.select("date", "name", "value").sort("date", "name")
                # replaced per name: an indicator stored but absent from this run keeps its rows
                scoped = {"market_indicators": ("name", sorted(set(indicators["name"].to_list())))}
            if stale_names:
                context.log.warning(
                    f"indicator(s) {stale_names} are stored but not in the source: their stored values stay and the "
                    "latent state carries the last one forward. To drop one: DELETE FROM market_indicators WHERE "
                    "name = '<name>' (the state then recomputes from day one on the next run).")
            changed_from = _first_change(warehouse, "market_prices", stored, ["date", "symbol"], start, end)
            others = [("market_benchmark", ["date"], "close"), ("market_indicators", ["date", "name"], "value")]
            for table, keys, value in others:
                if table in writes:
                    d = _first_change(warehouse, table, writes[table], keys, start, end, value)
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
        removed = _consume(config.consume)

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
                "preview": dg.MetadataValue.md(_preview(last)),
            },
        )
        for o in outcomes:
            yield check_result(o, "market_prices")

    return market_prices


market_prices = build_market_prices()


def _overlay(src: MarketData, landed: MarketData, days: set[dt.date]) -> MarketData:
    """The source's rows for days without a landing copy, and the landing rows for the others."""
    keep = ~pl.col("date").is_in(sorted(days))
    prices = pl.concat([src.prices.filter(keep), landed.prices], how="diagonal_relaxed").sort("date", "symbol")
    benches = [b for b in (src.benchmark.filter(keep) if src.benchmark is not None else None, landed.benchmark)
               if b is not None]
    bench = pl.concat(benches, how="diagonal_relaxed").sort("date") if benches else None
    # indicators: a landing file replaces only the (date, name) values it carries; the source's other
    # indicator values of a landing day stay (a landing file of prices does not erase that day's VIX)
    ind = src.indicators
    if landed.indicators is not None and landed.indicators.height:
        kept = ind.join(landed.indicators.select("date", "name"), on=["date", "name"], how="anti") \
            if ind is not None else None
        ind = pl.concat([x for x in (kept, landed.indicators) if x is not None], how="diagonal_relaxed")
    ind = ind.sort("date", "name") if ind is not None else None
    return MarketData(prices, bench, {**src.sectors, **landed.sectors}, src.files + landed.files,
                      indicators=ind, notes=src.notes + landed.notes)


def _source_indicator_names(src: MarketData) -> set[str]:
    return set(src.indicators["name"].unique().to_list()) if src.indicators is not None else set()


def _split_indicator_columns(data: MarketData, names: set[str]) -> MarketData:
    """A landing file may carry a stored indicator as one more column (e.g. ``VIX``): store it as
    that indicator (never traded), not as a stock."""
    if not names or data.prices.height == 0:
        return data
    keys = {s: indicator_name(s, strict=False) for s in data.prices["symbol"].unique().to_list()}
    moved = [s for s, k in keys.items() if k in names]
    if not moved:
        return data
    rows = data.prices.filter(pl.col("symbol").is_in(moved))
    ind = rows.with_columns(pl.col("symbol").replace_strict(keys, return_dtype=pl.Utf8).alias("name"),
                            pl.col("close").alias("value")).select(
        "date", "name", "value", "source_file", "source_row", "source_column")
    if data.indicators is not None:
        ind = pl.concat([data.indicators, ind], how="diagonal_relaxed")
    return dataclasses.replace(data, prices=data.prices.filter(~pl.col("symbol").is_in(moved)), indicators=ind)


def _first_change(warehouse: DuckDBWarehouse, table: str, new: pl.DataFrame, keys: list[str],
                  start: dt.date, end: dt.date, value: str = "close") -> dt.date | None:
    """The earliest date in [start, end] whose stored rows differ from ``new`` (None: identical;
    NaN equals NaN: a missing indicator value stays missing)."""
    if not warehouse.table_exists(table):
        return new["date"].min() if new.height else None
    old = warehouse.query(f"SELECT {', '.join(keys)}, {value} FROM {table} WHERE date BETWEEN ? AND ?", [start, end])
    if old.height == 0:
        return new["date"].min() if new.height else None
    both = new.select(*keys, value).join(old, on=keys, how="full", coalesce=True, suffix="_old")
    a, b = pl.col(value), pl.col(f"{value}_old")
    same = (a == b) | (a.is_nan() & b.is_nan())
    diff = both.filter(a.is_null() | b.is_null() | ~same)
    return diff["date"].min() if diff.height else None


def _benchmark_every_day(outcomes: list[CheckOutcome], window: pl.DataFrame, bench: pl.DataFrame | None,
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


def _reject_landing(config: MarketPricesConfig, landing: LandingZone, outcomes: list[CheckOutcome]) -> None:
    """The run's landing files failed a blocking check (e.g. a symbol missing): their copies leave
    force (the day's previous copy, if any, is CURRENT again) and the originals go to rejected/
    with the reason, so one bad file never blocks later runs of its year."""
    reason = "; ".join(describe_first_failure(o) for o in outcomes if o.blocking_failure)
    for f in config.files:
        withdraw(Path(f))
    for path in _unchanged_originals(config.consume):
        try:
            move_aside(path, landing.rejected(), f"rejected by the run: {reason}")
        except OSError:
            continue


def _unchanged_originals(entries: list[str]) -> list[Path]:
    """The original landing files (``<path>::<sha256>``) still there with the content the sensor accepted."""
    out = []
    for entry in entries:
        path_s, _, sha = entry.rpartition("::")
        path = Path(path_s)
        try:
            if path.is_file() and not path.is_symlink() and sha256_file(path) == sha:
                out.append(path)
        except OSError:
            continue
    return out


def _consume(entries: list[str]) -> list[str]:
    """Remove the original landing files the run stored (only if their content is unchanged)."""
    removed = []
    for path in _unchanged_originals(entries):
        try:
            path.unlink()
            removed.append(str(path))
        except OSError:
            continue
    return removed


def _stored_benchmark_names(warehouse: DuckDBWarehouse, src: MarketData) -> list[str]:
    names = set(src.benchmark["name"].unique().to_list()) if src.benchmark is not None and src.benchmark.height else set()
    if warehouse.table_exists("market_benchmark"):
        names |= set(warehouse.query("SELECT DISTINCT name FROM market_benchmark")["name"].to_list())
    return sorted(names)


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
    return dataclasses.replace(data, prices=data.prices.filter(~is_bench), benchmark=bench)


def _stored_universe(warehouse: DuckDBWarehouse, start: dt.date, end: dt.date) -> list[str]:
    """The symbols already stored (any date): a source or landing file that drops one is an error
    (``expected_symbols``) unless the run names its universe (``config.symbols``)."""
    if not warehouse.table_exists("market_prices"):
        return []
    rows = warehouse.query("SELECT DISTINCT symbol FROM market_prices ORDER BY symbol")
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


__all__ = ["market_prices", "build_market_prices", "MarketPricesConfig", "CHECK_PRICES_VALID"]
