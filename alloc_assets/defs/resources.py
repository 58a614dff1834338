"""The resources every asset, sensor and schedule of the code location is given, by name."""

from __future__ import annotations

import dagster as dg

from resources.allocator import AllocatorSettings
from resources.backtest import BacktestSettings
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.simulation import RegimeAllocationSettings, ResilienceSettings, SearchSettings, SimulationSettings
from resources.warehouse import DuckDBWarehouse

RESOURCES = {
    "warehouse": DuckDBWarehouse(),
    "market_source": MarketDataSource(),
    "allocator": AllocatorSettings(),
    "backtest": BacktestSettings(),
    "landing": LandingZone(),
    "simulation": SimulationSettings(),
    "search": SearchSettings(),
    "resilience": ResilienceSettings(),
    "regime_settings": RegimeAllocationSettings(),
}


@dg.definitions
def resources() -> dg.Definitions:
    # Every step of a run executes in the run's own process: warehouse runs are serialised (pool
    # "warehouse" at run granularity), so step subprocesses would buy no parallelism, only a Python
    # start and a code load per step (about 12 s each on 2 cores).
    return dg.Definitions(resources=RESOURCES, executor=dg.in_process_executor)
