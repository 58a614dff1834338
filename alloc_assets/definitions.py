"""The one Definitions object of regime-allocator: it only assembles."""

from __future__ import annotations

import warnings

import dagster as dg

# single_run backfill policy and pools are marked beta; we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from alloc_assets.defs.allocator import ALLOCATOR_ASSETS
from alloc_assets.defs.automation import LandingZone, daily_schedule, new_market_data_sensor, report_after_history
from alloc_assets.defs.backtest import BACKTEST_ASSETS, BacktestSettings
from alloc_assets.defs.jobs import history_job, report_job
from alloc_assets.defs.market import market_prices
from alloc_assets.defs.sim import SIM_ASSETS, SimulationSettings
from resources.allocator import AllocatorSettings
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

defs = dg.Definitions(
    assets=[market_prices, *ALLOCATOR_ASSETS, *BACKTEST_ASSETS, *SIM_ASSETS],
    jobs=[history_job, report_job],
    schedules=[daily_schedule],
    sensors=[new_market_data_sensor, report_after_history],
    resources={
        "warehouse": DuckDBWarehouse(),
        "market_source": MarketDataSource(),
        "allocator": AllocatorSettings(),
        "backtest": BacktestSettings(),
        "landing": LandingZone(),
        "simulation": SimulationSettings(),
    },
    # Every step of a run executes in the run's own process: the warehouse admits one writer at a
    # time (pool "warehouse"), so step subprocesses would buy no parallelism, only a Python start
    # and a code load per step (about 12 s each on 2 cores). Pools still apply in process.
    executor=dg.in_process_executor,
)
