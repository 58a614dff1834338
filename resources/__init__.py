"""Every Dagster resource and settings class of regime-allocator (the instances are in ``alloc_assets/defs/resources.py``)."""

from resources.market_source import MarketDataError, MarketDataSource
from resources.settings import alloc_home, default_warehouse_path
from resources.warehouse import DuckDBWarehouse

__all__ = ["DuckDBWarehouse", "MarketDataError", "MarketDataSource", "alloc_home", "default_warehouse_path"]
