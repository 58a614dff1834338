"""Dagster resources of regime-allocator: the DuckDB warehouse and the market data source."""

from resources.market_source import MarketDataError, MarketDataSource
from resources.settings import alloc_home, default_warehouse_path
from resources.warehouse import DuckDBWarehouse

__all__ = ["DuckDBWarehouse", "MarketDataError", "MarketDataSource", "alloc_home", "default_warehouse_path"]
