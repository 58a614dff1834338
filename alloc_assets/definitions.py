"""The one Definitions object of regime-allocator: it only assembles."""

from __future__ import annotations

import warnings

import dagster as dg

# single_run backfill policy and pools are marked beta; we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from alloc_assets.defs.allocator import ALLOCATOR_ASSETS
from alloc_assets.defs.automation import catch_up_sensor, daily_schedule, new_market_data_sensor, run_watchdog_sensor
from alloc_assets.defs.backtest import BACKTEST_ASSETS, BacktestSettings
from alloc_assets.defs.calibration import regime_calibration
from alloc_assets.defs.jobs import derive_job, refresh_job
from alloc_assets.defs.market import market_prices
from alloc_assets.defs.resilience import RESILIENCE_ASSETS, RESILIENCE_RESOURCES
from alloc_assets.defs.search import SEARCH_JOBS, SearchSettings, strategy_search
from alloc_assets.defs.sim import SIM_ASSETS, SimulationSettings
from resources.allocator import AllocatorSettings
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

RESOURCES = {
    "warehouse": DuckDBWarehouse(),
    "market_source": MarketDataSource(),
    "allocator": AllocatorSettings(),
    "backtest": BacktestSettings(),
    "landing": LandingZone(),
    "simulation": SimulationSettings(),
    "search": SearchSettings(),
    **RESILIENCE_RESOURCES,
}

defs = dg.Definitions(
    assets=[market_prices, *ALLOCATOR_ASSETS, *BACKTEST_ASSETS, regime_calibration, *SIM_ASSETS, strategy_search, *RESILIENCE_ASSETS],
    jobs=[refresh_job, derive_job, *SEARCH_JOBS],
    schedules=[daily_schedule],
    sensors=[new_market_data_sensor, catch_up_sensor, run_watchdog_sensor],
    resources=RESOURCES,
    # Every step of a run executes in the run's own process: warehouse runs are serialised (pool
    # "warehouse" at run granularity), so step subprocesses would buy no parallelism, only a Python
    # start and a code load per step (about 12 s each on 2 cores).
    executor=dg.in_process_executor,
)
