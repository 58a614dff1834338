"""Portfolio construction on the world model: ``resilience_portfolio`` and ``regime_allocation``
(group ``sim``, both downstream of ``scenario_models``).

The math lives in ``alloc_assets/sim/resilience.py`` (JAX: the resilience objective, its smooth
surrogate, projected Adam, the skfolio benchmarks, the held-out comparison) and
``alloc_assets/sim/regime_allocation.py`` (NumPy/SciPy: per-regime minimum-variance optima, the
mixture covariance, the blends, the hedge ratio). These assets read the stored world model, call
them, validate the tables (pandera), write them in one transaction and attach the numbers.

Resources (registered by ``definitions.py``): ``simulation`` (where the world model is),
``resilience`` (:class:`ResilienceSettings`) and ``regime_settings`` (:class:`RegimeAllocationSettings`).
"""

import math

import dagster as dg
import numpy as np
import pandera.polars as pa
import polars as pl
from pydantic import Field

from alloc_assets.core.regime import REGIME_KEYS
from alloc_assets.defs.common import WAREHOUSE_RETRY, column_schema, require_schema
from alloc_assets.defs.sim.assets import load_world_file
from resources.simulation import RegimeAllocationSettings, ResilienceSettings, SimulationSettings
from resources.settings import alloc_home
from resources.warehouse import DuckDBWarehouse

GROUP = "sim"
PORTFOLIO_TABLE = "resilience_portfolio"
COMPARISON_TABLE = "resilience_comparison"
REGIME_TABLE = "regime_allocation"
_METHODS = ("resilience", "mean_variance", "min_variance", "risk_parity", "equal_weight")  # = sim.resilience.METHODS


class ResiliencePortfolioTable(pa.DataFrameModel):
    """``resilience_portfolio``: one row per stock, its weight under every method (rows sum to 1)."""

    symbol: str = pa.Field(unique=True, description="Stock (the world model's asset order).")
    weight_resilience: float = pa.Field(ge=0, le=1, description="w*: the resilience optimum (training paths).")
    weight_mean_variance: float = pa.Field(ge=0, le=1, description="skfolio MeanRisk, maximum Sharpe ratio on variance.")
    weight_min_variance: float = pa.Field(ge=0, le=1, description="skfolio MeanRisk, minimum variance.")
    weight_risk_parity: float = pa.Field(ge=0, le=1, description="skfolio RiskBudgeting on variance, equal budgets.")
    weight_equal_weight: float = pa.Field(ge=0, le=1, description="1/N within the bounds.")

    @pa.dataframe_check(name="weights_sum_to_one")
    def sums_to_one(cls, data: pa.PolarsData) -> pl.LazyFrame:
        cols = [f"weight_{m}" for m in _METHODS]
        return data.lazyframe.select([((pl.col(c).sum() - 1.0).abs() <= 1e-5).alias(c) for c in cols])


class ResilienceComparisonTable(pa.DataFrameModel):
    """``resilience_comparison``: one row per method, the exact objective and its components (path
    means) on the held-out and on the training paths, and the paired held-out gain of w*."""

    method: str = pa.Field(unique=True, isin=list(_METHODS), description="Portfolio method.")
    heldout_objective: float = pa.Field(description="Exact objective on the held-out paths.")
    heldout_annual_return: float = pa.Field(description="Mean CAGR on the held-out paths.")
    heldout_p_drawdown: float = pa.Field(ge=0, le=1, description="P(max drawdown > threshold), held-out paths.")
    heldout_recovery_days: float = pa.Field(ge=0, description="Mean recovery days (censored at the horizon), held out.")
    heldout_vol_cluster_share: float = pa.Field(ge=0, le=1, description="Mean share of days in volatility clusters, held out.")
    heldout_gain_of_resilience: float = pa.Field(description="Mean over held-out paths of J(w*) - J(method).")
    heldout_gain_se: float = pa.Field(nullable=True, description="Its standard error over paths (paired).")

    class Config:
        strict = False  # plus heldout_objective_se and the train_* columns


class RegimeAllocationTable(pa.DataFrameModel):
    """``regime_allocation``: one row per stock: the minimum-variance weight in each regime, the
    probability-weighted blend, the optimum of Sigma_t, the hedged book, and the stock's annualised
    volatility in each regime and under Sigma_t."""

    symbol: str = pa.Field(unique=True, description="Stock (the world model's asset order).")
    weight_normal: float = pa.Field(ge=0, le=1, description="Minimum-variance weight under NORMAL's covariance.")
    weight_elevated: float = pa.Field(ge=0, le=1, description="Minimum-variance weight under ELEVATED's covariance.")
    weight_stress: float = pa.Field(ge=0, le=1, description="Minimum-variance weight under STRESS's covariance.")
    weight_crisis: float = pa.Field(ge=0, le=1, description="Minimum-variance weight under CRISIS's covariance.")
    weight_blend: float = pa.Field(ge=0, le=1, description="sum_k p_k w*_k with today's probabilities.")
    weight_mixture: float = pa.Field(ge=0, le=1, description="Minimum-variance weight under Sigma_t (exact mixture covariance).")
    weight_hedged: float = pa.Field(ge=0, le=1, description="(1 - h) x weight_mixture, h the early-warning hedge ratio.")
    vol_sigma_t: float = pa.Field(ge=0, description="Annualised volatility of the stock under Sigma_t.")

    class Config:
        strict = False  # plus vol_<regime>


# --------------------------------------------------------------------------------------------------
# shared


def _load_world(simulation: SimulationSettings) -> dict:
    return load_world_file(simulation.root() / "world_model.pkl")


def _symbols(saved: dict, warehouse: DuckDBWarehouse, n: int, context) -> list[str]:
    """The world model's asset names: stored with it, else the sorted symbols of ``market_prices``
    (``scenario_models`` calibrates on ``load_panel``, whose columns are the sorted symbols)."""
    if saved.get("symbols") is not None and len(saved["symbols"]) == n:
        return [str(s) for s in saved["symbols"]]
    rows = warehouse.query("SELECT DISTINCT symbol FROM market_prices ORDER BY symbol") \
        if warehouse.table_exists("market_prices") else pl.DataFrame()
    if rows.height == n:
        return [str(s) for s in rows["symbol"].to_list()]
    context.log.warning(f"the world model has {n} assets and market_prices {rows.height} symbols: naming them asset_0..")
    return [f"asset_{i}" for i in range(n)]


def _md_table(header: list[str], rows: list[list]) -> str:
    def cell(x):
        if isinstance(x, float):
            return "n/a" if not math.isfinite(x) else f"{x:.4f}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# resilience_portfolio


def resilience_frames(result, symbols: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The two stored tables of a ``ResilienceResult``: weights per symbol, comparison per method."""
    weights = pl.DataFrame({"symbol": symbols} | {f"weight_{m}": np.asarray(result.weights[m], dtype=np.float64)
                                                   for m in _METHODS})
    comparison = pl.DataFrame({k: (v if k == "method" else np.asarray(v, dtype=np.float64)) for k, v in result.table().items()})
    return weights, comparison


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
    from alloc_assets.sim.portfolio.resilience import OptimiserSettings, run_resilience

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

    w_rows = [[s] + [float(result.weights[m][i]) for m in _METHODS] for i, s in enumerate(symbols)]
    h = result.heldout
    c_rows = [[m, h[m]["objective"], h[m]["objective_se"], h[m]["annual_return"], h[m]["p_drawdown"], h[m]["recovery_days"],
               h[m]["vol_cluster_share"], result.train[m]["objective"], result.paired[m]["diff"], result.paired[m]["se"]]
              for m in _METHODS]
    held = {m: {k: round(v, 6) for k, v in h[m].items()} | {"gain_of_resilience": round(result.paired[m]["diff"], 6),
                                                           "gain_se": round(result.paired[m]["se"], 6)} for m in _METHODS}
    return dg.MaterializeResult(metadata={
        "weights": dg.MetadataValue.md(_md_table(["symbol", *_METHODS], w_rows)),
        "comparison": dg.MetadataValue.md(_md_table(
            ["method", "held-out objective", "s.e.", "CAGR", "P(DD > x)", "recovery days", "cluster share",
             "train objective", "gain of w*", "gain s.e."], c_rows)),
        "note": dg.MetadataValue.md(result.note()),
        "heldout": dg.MetadataValue.json(held),
        "surrogate_train": float(result.optimiser.surrogate),
        "settings": dg.MetadataValue.json(result.settings),
        "timings_s": dg.MetadataValue.json(result.timings_s),
        "calibrated_through": str(saved.get("last_date", "")),
        "dagster/row_count": weights.height,
    })


# --------------------------------------------------------------------------------------------------
# regime_allocation


def regime_frame(alloc, symbols: list[str]) -> pl.DataFrame:
    """The stored table of a ``RegimeAllocation``."""
    cols = {"symbol": symbols} | {k: np.asarray(v, dtype=np.float64) for k, v in alloc.portfolios().items()}
    for k, r in enumerate(REGIME_KEYS):
        cols[f"vol_{r}"] = np.sqrt(np.diag(alloc.covs[k]))
    cols["vol_sigma_t"] = np.sqrt(np.diag(alloc.sigma_mixture))
    return pl.DataFrame(cols)


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
    from alloc_assets.sim.portfolio.regime_allocation import REGIMES
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

    names = list(alloc.portfolios())
    w_rows = [[s] + [float(alloc.portfolios()[n][i]) for n in names] for i, s in enumerate(symbols)]
    vols = alloc.volatilities()
    v_rows = [[n] + [vols[n][c] for c in (*REGIMES, "sigma_t")] for n in names]
    return dg.MaterializeResult(metadata={
        "weights": dg.MetadataValue.md(_md_table(["symbol", *names], w_rows)),
        "portfolio_vols": dg.MetadataValue.md(_md_table(["portfolio", *REGIMES, "Sigma_t"], v_rows)),
        "p_today": dg.MetadataValue.json({r: round(float(p), 6) for r, p in zip(REGIMES, alloc.probs)}),
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
