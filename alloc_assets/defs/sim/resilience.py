"""Portfolio construction on the world model: ``resilience_portfolio`` and ``regime_allocation``
(group ``sim``, both downstream of ``scenario_models``).

The math lives in ``alloc_assets/sim/portfolio/resilience.py`` (JAX: the resilience objective, its smooth
surrogate, projected Adam, the skfolio benchmarks, the held-out comparison) and
``alloc_assets/sim/portfolio/regime_allocation.py`` (NumPy/SciPy: per-regime minimum-variance optima, the
mixture covariance, the blends, the hedge ratio). These assets read the stored world model, call
them, validate the tables (``schemas.sim``), write them in one transaction and attach the numbers.

Resources (registered by ``definitions.py``): ``simulation`` (where the world model is),
``resilience`` (:class:`ResilienceSettings`) and ``regime_settings`` (:class:`RegimeAllocationSettings`).
"""

import dagster as dg
import numpy as np

from alloc_assets.core.regime import REGIME_LABELS
from alloc_assets.defs.common import WAREHOUSE_RETRY, column_schema, require_schema
from alloc_assets.defs.sim.assets import load_world
from alloc_assets.schemas.sim import RegimeAllocationTable, ResilienceComparisonTable, ResiliencePortfolioTable
from alloc_assets.sim.portfolio.tables import heldout_summary, regime_frame, regime_markdown, resilience_frames, resilience_markdown
from alloc_assets.store.world_symbols import world_symbols
from resources.settings import alloc_home
from resources.simulation import RegimeAllocationSettings, ResilienceSettings, SimulationSettings
from resources.warehouse import DuckDBWarehouse

GROUP = "sim"
PORTFOLIO_TABLE = "resilience_portfolio"
COMPARISON_TABLE = "resilience_comparison"
REGIME_TABLE = "regime_allocation"


def _load_world(simulation: SimulationSettings) -> dict:
    return load_world(simulation.root() / "world_model.pkl")


def _symbols(saved: dict, warehouse: DuckDBWarehouse, n: int, context) -> list[str]:
    symbols, warning = world_symbols(saved, warehouse, n)
    if warning:
        context.log.warning(warning)
    return symbols


@dg.asset(
    deps=["scenario_models"],
    group_name=GROUP,
    kinds={"jax", "duckdb"},
    code_version="sim-resilience-1",
    retry_policy=WAREHOUSE_RETRY,
    metadata={"dagster/column_schema": column_schema(ResiliencePortfolioTable), "dagster/table_name": PORTFOLIO_TABLE},
)
def resilience_portfolio(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, simulation: SimulationSettings,
                         resilience: ResilienceSettings):
    """Fixed (daily-rebalanced) weights maximising E[CAGR] - l_dd P(DD > x) - l_rec E[recovery] -
    l_vc E[volatility-cluster share] over simulated paths of the world model (smooth surrogate,
    projected Adam), compared on held-out paths with skfolio's mean-variance (max Sharpe), minimum
    variance and risk parity, and equal weights, on the exact objective. Writes
    ``resilience_portfolio`` (weights per symbol and method) and ``resilience_comparison`` (per
    method: held-out and training objective and components, the paired gain of w*)."""
    from alloc_assets.sim.engine.kernel import enable_compilation_cache
    from alloc_assets.sim.portfolio.resilience import OptimiserSettings
    from alloc_assets.sim.portfolio.resilience_comparison import run_resilience

    enable_compilation_cache(alloc_home() / "jax-cache")

    saved = _load_world(simulation)
    model = saved["model"]
    try:
        result = run_resilience(model, n_paths=resilience.n_paths, n_heldout_paths=resilience.n_heldout_paths,
                                horizon=resilience.horizon_days, seed=resilience.seed, objective=resilience.objective(),
                                lo=resilience.min_weight, hi=resilience.max_weight,
                                optimiser=OptimiserSettings(iterations=resilience.iterations, learning_rate=resilience.learning_rate),
                                dtype=resilience.dtype)
    except ValueError as exc:  # infeasible bounds, a horizon shorter than the volatility window
        raise dg.Failure(allow_retries=False, description=f"resilience_portfolio: {exc}") from None
    with warehouse.session():
        symbols = _symbols(saved, warehouse, model.n_assets, context)
        weights, comparison = resilience_frames(result, symbols)
        require_schema(ResiliencePortfolioTable, weights, PORTFOLIO_TABLE)
        require_schema(ResilienceComparisonTable, comparison, COMPARISON_TABLE)
        warehouse.replace_table(PORTFOLIO_TABLE, weights)
        warehouse.replace_table(COMPARISON_TABLE, comparison)

    tables = resilience_markdown(result, symbols)
    return dg.MaterializeResult(metadata={
        "weights": dg.MetadataValue.md(tables["weights"]),
        "comparison": dg.MetadataValue.md(tables["comparison"]),
        "note": dg.MetadataValue.md(result.note()),
        "heldout": dg.MetadataValue.json(heldout_summary(result)),
        "surrogate_train": float(result.optimiser.surrogate),
        "settings": dg.MetadataValue.json(result.settings),
        "timings_s": dg.MetadataValue.json(result.timings_s),
        "calibrated_through": str(saved.get("last_date", "")),
        "dagster/row_count": weights.height,
    })


# --------------------------------------------------------------------------------------------------
# regime_allocation


@dg.asset(
    deps=["scenario_models"],
    group_name=GROUP,
    kinds={"numpy", "duckdb"},
    code_version="sim-regime-allocation-1",
    retry_policy=WAREHOUSE_RETRY,
    metadata={"dagster/column_schema": column_schema(RegimeAllocationTable), "dagster/table_name": REGIME_TABLE},
)
def regime_allocation(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, simulation: SimulationSettings,
                      regime_settings: RegimeAllocationSettings):
    """Per-regime covariances of the world model and their long-only minimum-variance optima, the
    regime-probability-weighted (exact mixture) covariance Sigma_t with today's probabilities, the
    blended weights (probability-weighted optima and the optimum of Sigma_t) and the early-warning
    hedge ratio h = min(1, 1.5 x (p_stress + p_crisis)). Writes ``regime_allocation``."""
    from alloc_assets.sim.portfolio.regime_allocation import regime_allocation as allocate

    saved = _load_world(simulation)
    model = saved["model"]
    probs = np.asarray(saved.get("p_today", model.p0), dtype=np.float64)
    try:
        alloc = allocate(model, probs, regime_settings.min_weight, regime_settings.max_weight, regime_settings.hedge_multiplier)
    except ValueError as exc:
        raise dg.Failure(allow_retries=False, description=f"regime_allocation: {exc}") from None
    with warehouse.session():
        symbols = _symbols(saved, warehouse, model.n_assets, context)
        frame = regime_frame(alloc, symbols)
        require_schema(RegimeAllocationTable, frame, REGIME_TABLE)
        warehouse.replace_table(REGIME_TABLE, frame)

    tables = regime_markdown(alloc, symbols)
    return dg.MaterializeResult(metadata={
        "weights": dg.MetadataValue.md(tables["weights"]),
        "portfolio_vols": dg.MetadataValue.md(tables["portfolio_vols"]),
        "p_today": dg.MetadataValue.json({r: round(float(p), 6) for r, p in zip(REGIME_LABELS, alloc.probs)}),
        "stress": float(alloc.stress),
        "hedge_ratio": float(alloc.hedge),
        "between_regime_share": float(alloc.between_share),
        "settings": dg.MetadataValue.json({"min_weight": regime_settings.min_weight, "max_weight": regime_settings.max_weight,
                                           "hedge_multiplier": regime_settings.hedge_multiplier,
                                           "optimum": "long-only minimum variance (SLSQP + exact KKT polish)",
                                           "sigma_t": "exact mixture covariance (between-regime mean term included), x 252",
                                           "stress": "p_STRESS + p_CRISIS"}),
        "calibrated_through": str(saved.get("last_date", "")),
        "dagster/row_count": frame.height,
    })


RESILIENCE_ASSETS = [resilience_portfolio, regime_allocation]
