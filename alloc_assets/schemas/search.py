"""The stored table of the strategy search (``strategy_search``)."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl

from alloc_assets.sim.search.rule import WEIGHT_FUNCTIONS


class StrategySearchTable(pa.DataFrameModel):
    """``strategy_search``: one row per configuration evaluated, its parameters, and per scenario
    ``<scenario>_objective|sharpe|vol|max_drawdown|var_95|cvar_95|cost_per_year|annual_return``
    (path means), ``mean_objective`` and ``robustness``."""

    config: int = pa.Field(unique=True, ge=0, description="Configuration number, in evaluation order.")
    batch: int = pa.Field(ge=0, description="Batch (slice of the Latin hypercube) the configuration was evaluated in.")
    target_vol: pl.Float32 = pa.Field(ge=0, description="Target volatility tau (annual, decimal).")
    window_months: pl.Float32 = pa.Field(gt=0, description="EWMA volatility window (months; half-life 21 x window / 2 days).")
    risk_aversion: pl.Float32 = pa.Field(gt=0, description="lambda of the linear_taper and logistic_taper weight functions.")
    weight_fn: pl.Int32 = pa.Field(isin=list(range(len(WEIGHT_FUNCTIONS))), description="Index of the weight function.")
    cost_bps: pl.Float32 = pa.Field(ge=0, description="Cost per unit of turnover (basis points).")
    weight_fn_name: str = pa.Field(isin=list(WEIGHT_FUNCTIONS), description="Name of the weight function.")
    mean_objective: float = pa.Field(nullable=True, description="Mean of the per-scenario objectives.")
    robustness: float = pa.Field(ge=0, le=1, description="Share of scenarios where the objective is within 20 % of that scenario's best.")

    class Config:
        strict = False  # plus the per-scenario columns
