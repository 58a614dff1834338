"""Warehouse reads of the market layer: what is stored, and from which day a new window differs."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING


from alloc_assets.core.market.frames import MarketData

if TYPE_CHECKING:
    from resources.warehouse import DuckDBWarehouse



def benchmark_names(warehouse: DuckDBWarehouse, src: MarketData) -> list[str]:
    """The benchmark names of the source and of the stored benchmark, sorted."""
    names = set(src.benchmark["name"].unique().to_list()) if src.benchmark is not None and src.benchmark.height else set()
    if warehouse.table_exists("market_benchmark"):
        names |= set(warehouse.query("SELECT DISTINCT name FROM market_benchmark")["name"].to_list())
    return sorted(names)


def stored_universe(warehouse: DuckDBWarehouse) -> list[str]:
    """The symbols already stored (any date): a source or landing file that drops one is an error
    (``expected_symbols``) unless the run names its universe (``config.symbols``)."""
    if not warehouse.table_exists("market_prices"):
        return []
    rows = warehouse.query("SELECT DISTINCT symbol FROM market_prices ORDER BY symbol")
    return rows["symbol"].to_list() if rows.height else []


def previous_close(warehouse: DuckDBWarehouse, start: dt.date) -> dict[str, float]:
    """Each symbol's close on the last stored day before ``start`` (the jump check's reference)."""
    if not warehouse.table_exists("market_prices"):
        return {}
    rows = warehouse.query(
        """SELECT symbol, close FROM market_prices
           WHERE date = (SELECT max(date) FROM market_prices WHERE date < ?)""", [start])
    return dict(zip(rows["symbol"].to_list(), rows["close"].to_list())) if rows.height else {}
