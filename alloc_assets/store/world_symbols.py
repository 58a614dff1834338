"""The asset names of the saved world model, read through the warehouse when the file has none."""

from __future__ import annotations

import polars as pl

from resources.warehouse import DuckDBWarehouse


def world_symbols(saved: dict, warehouse: DuckDBWarehouse, n: int) -> tuple[list[str], str | None]:
    """The world model's asset names and a warning (None when they are known): stored with the
    model, else the sorted symbols of ``market_prices`` (``scenario_models`` calibrates on
    ``load_panel``, whose columns are the sorted symbols), else ``asset_0..``."""
    if saved.get("symbols") is not None and len(saved["symbols"]) == n:
        return [str(s) for s in saved["symbols"]], None
    rows = warehouse.query("SELECT DISTINCT symbol FROM market_prices ORDER BY symbol") \
        if warehouse.table_exists("market_prices") else pl.DataFrame()
    if rows.height == n:
        return [str(s) for s in rows["symbol"].to_list()], None
    return [f"asset_{i}" for i in range(n)], f"the world model has {n} assets and market_prices {rows.height} symbols: naming them asset_0.."
