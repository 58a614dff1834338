"""The JAX Monte Carlo engine: pure functions of arrays and explicit PRNG keys (no Dagster import).

Modules: ``models`` (GBM, Heston, the regime-switching ``WorldModel`` and its calibration),
``engine`` (the jit-compiled scan over days, blocks/chunks/devices, ``run_strategies``,
``provenance``), ``allocator`` (the pipeline's state -> regime -> scalar logic as a daily step),
``strategies`` (the baseline and allocator books), ``metrics`` (per-path measures), ``calendar``
(simulated rebalance/refresh days), ``scenarios`` (named scenarios, stress shocks, the dashboard,
figures) and ``numpy_kernel`` (the NumPy reference of the benchmark).

Entry point for the Dagster assets: :func:`run_scenario` (one scenario partition) and
:func:`stress_dashboard` (rows over the scenario results).
"""

from alloc_assets.sim.allocator import AllocatorConfig, AllocatorStart, fresh_state, start_from_panel, state_from_carries
from alloc_assets.sim.calendar import SimCalendar, calendar_from_dates, future_calendar, regular_calendar
from alloc_assets.sim.engine import SimSettings, StrategyRun, enable_compilation_cache, provenance, run_strategies, simulate_log_returns, simulate_terminal_log_returns
from alloc_assets.sim.metrics import PATH_METRICS, PathMetric, path_metrics
from alloc_assets.sim.models import GBM, Heston, WorldModel, calibrate_world_model, regime_weighted_covariance
from alloc_assets.sim.scenarios import (
    SCENARIO_NAMES,
    SCENARIOS,
    MarketShock,
    ScenarioResult,
    ScenarioSpec,
    drawdown_distribution_png,
    fan_chart_png,
    get_scenario,
    run_all_scenarios,
    run_scenario,
    scenario_world_model,
    stress_dashboard,
)
from alloc_assets.sim.strategies import BaselineKind, StrategyConfig

__all__ = [
    "AllocatorConfig", "AllocatorStart", "BaselineKind", "GBM", "Heston", "MarketShock", "PATH_METRICS", "PathMetric",
    "SCENARIOS", "SCENARIO_NAMES", "ScenarioResult", "ScenarioSpec", "SimCalendar", "SimSettings", "StrategyConfig",
    "StrategyRun", "WorldModel", "calendar_from_dates", "calibrate_world_model", "drawdown_distribution_png",
    "fan_chart_png", "fresh_state", "future_calendar", "get_scenario", "path_metrics", "provenance",
    "regime_weighted_covariance", "regular_calendar", "run_all_scenarios", "run_scenario", "run_strategies",
    "scenario_world_model", "simulate_log_returns", "simulate_terminal_log_returns", "start_from_panel",
    "state_from_carries", "stress_dashboard",
]
