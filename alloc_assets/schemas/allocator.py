"""The allocator layers: ``latent_state``, ``regime_series``, ``risk_scalars``, ``applied_scalars``.

These tables are wide (one column per feature or contribution) and created from the first frame
written, so each model lists the contract columns only and is not strict.
"""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl

from alloc_assets.core.regime import PROBABILITY_COLUMNS, REGIME_LABELS
from alloc_assets.schemas.checks import ERROR, WARN

__all__ = ["APPLIED_CHECKS", "CHECK_LAG", "CHECK_PROBABILITIES", "CHECK_SCALAR_BOUNDS", "CHECK_SCALAR_JUMP",
    "CHECK_STATE_FINITE", "CHECK_THRASH", "REGIME_CHECKS", "RISK_CHECKS", "SCALAR_SOURCES", "STATE_CHECKS",
    "AppliedScalars", "LatentState", "RegimeSeries", "RiskScalars"]

CHECK_STATE_FINITE = "state_finite"
CHECK_PROBABILITIES = "probabilities_valid"
CHECK_THRASH = "regime_thrash"
CHECK_SCALAR_BOUNDS = "scalar_within_bounds"
CHECK_SCALAR_JUMP = "scalar_jump"
CHECK_LAG = "lag_honoured"

STATE_CHECKS = {CHECK_STATE_FINITE: (ERROR, "Every feature of every row is a finite number.")}
REGIME_CHECKS = {
    CHECK_PROBABILITIES: (ERROR, "p_normal..p_crisis each in [0, 1], summing to 1 within 1e-9; regime is a known label."),
    CHECK_THRASH: (WARN, "Regime transitions over the last 252 days stay within the thrash limit."),
}
RISK_CHECKS = {
    CHECK_SCALAR_BOUNDS: (ERROR, "risk_scalar within [floor, 1]."),
    CHECK_SCALAR_JUMP: (WARN, "The daily change of risk_scalar stays within max_step."),
}
APPLIED_CHECKS = {
    CHECK_SCALAR_BOUNDS: (ERROR, "risk_scalar_applied within [floor, 1] (overrides within [0, 1])."),
    CHECK_LAG: (ERROR, "At each rebalance r(k), a computed scalar is the risk scalar of r(k-1) (one-rebalance lag)."),
}
SCALAR_SOURCES = ("computed", "override", "missing_default")


class LatentState(pa.DataFrameModel):
    """``latent_state``: causal market features per trading day (one column per feature) and ``warm``."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Trading day; features use data through this close only.")
    warm: bool = pa.Field(nullable=False, description="False while the features still lean on their day-1 priors.")

    class Config:
        strict = False


class RegimeSeries(pa.DataFrameModel):
    """``regime_series``: P(regime | data through t) and the hysteresis label."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Trading day.")
    regime: str = pa.Field(isin=list(REGIME_LABELS), description="Label after hysteresis.")
    p_normal: float = pa.Field(ge=0, le=1, description="P(NORMAL | data through t).")
    p_elevated: float = pa.Field(ge=0, le=1, description="P(ELEVATED | data through t).")
    p_stress: float = pa.Field(ge=0, le=1, description="P(STRESS | data through t).")
    p_crisis: float = pa.Field(ge=0, le=1, description="P(CRISIS | data through t).")
    score: float = pa.Field(nullable=True, description="Stress score (weighted standardised features).")

    @pa.dataframe_check(name="probabilities_sum_to_one")
    def sums_to_one(cls, data: pa.PolarsData) -> pl.LazyFrame:
        total = pl.sum_horizontal(*(pl.col(c) for c in PROBABILITY_COLUMNS))
        return data.lazyframe.select(((total - 1.0).abs() <= 1e-9).alias("ok"))

    class Config:
        strict = False


class RiskScalars(pa.DataFrameModel):
    """``risk_scalars``: the daily scalar computed from the regime probabilities."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Trading day.")
    regime: str = pa.Field(isin=list(REGIME_LABELS), description="Regime label of the day.")
    risk_scalar: float = pa.Field(ge=0, le=1, description="Scalar in [floor, 1] computed with data through the close.")

    class Config:
        strict = False


class AppliedScalars(pa.DataFrameModel):
    """``applied_scalars``: the scalar in force from each rebalance date (computed at the previous one)."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Rebalance date r(k).")
    risk_scalar_applied: float = pa.Field(ge=0, le=1, description="Scalar applied from r(k).")
    source_date: dt.date = pa.Field(nullable=True, description="r(k-1), the date the scalar was computed (computed rows).")
    source: str = pa.Field(isin=list(SCALAR_SOURCES), description="computed | override | missing_default.")

    class Config:
        strict = False
