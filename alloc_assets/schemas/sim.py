"""Pandera models of the tables the simulation's portfolio assets write (``resilience_portfolio``,
``resilience_comparison``, ``regime_allocation``)."""

import pandera.polars as pa
import polars as pl

from alloc_assets.sim.portfolio.resilience_comparison import METHODS


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
        cols = [f"weight_{m}" for m in METHODS]
        return data.lazyframe.select([((pl.col(c).sum() - 1.0).abs() <= 1e-5).alias(c) for c in cols])


class ResilienceComparisonTable(pa.DataFrameModel):
    """``resilience_comparison``: one row per method, the exact objective and its components (path
    means) on the held-out and on the training paths, and the paired held-out gain of w*."""

    method: str = pa.Field(unique=True, isin=list(METHODS), description="Portfolio method.")
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
