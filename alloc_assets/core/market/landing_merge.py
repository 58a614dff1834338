"""Landing copies merged into the source's window (pure).

A landing copy replaces the source's rows for its day. A landing file may carry the benchmark or a
stored indicator as one more column (e.g. ``SP500``, ``VIX``): those become the benchmark or that
indicator, never a stock.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl

from alloc_assets.core.market.frames import MarketData
from alloc_assets.core.market.indicator_files import indicator_name


def overlay_landing(src: MarketData, landed: MarketData, days: set[dt.date]) -> MarketData:
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


def indicator_names(src: MarketData) -> set[str]:
    """The names of the data's indicators."""
    return set(src.indicators["name"].unique().to_list()) if src.indicators is not None else set()


def split_indicator_columns(data: MarketData, names: set[str]) -> MarketData:
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


def split_benchmark_columns(data: MarketData, names: list[str]) -> MarketData:
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
