"""The portfolio artifacts: target weights, backtests, and the report's contract check."""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa

from alloc_assets.schemas.checks import ERROR

__all__ = ["BACKTEST_CHECKS", "CHECK_BACKTEST_FINITE", "CHECK_REPORT_KEYS", "CHECK_SCALED_CONSISTENT",
    "CHECK_WEIGHTS_VALID", "REPORT_CHECKS", "WEIGHT_CHECKS", "Backtest", "Weights"]

CHECK_WEIGHTS_VALID = "weights_valid"
CHECK_SCALED_CONSISTENT = "scaled_equals_scalar_times_raw"
CHECK_BACKTEST_FINITE = "backtest_finite"
CHECK_REPORT_KEYS = "report_has_contract_keys"

WEIGHT_CHECKS = {CHECK_WEIGHTS_VALID: (ERROR, "Weights in [0, 1], each date summing to at most 1 (the rest is cash).")}
BACKTEST_CHECKS = {
    CHECK_BACKTEST_FINITE: (ERROR, "Every daily return is finite and equity stays > 0."),
    CHECK_SCALED_CONSISTENT: (ERROR, "Each scaled weight equals the applied scalar times the raw weight."),
}
REPORT_CHECKS = {CHECK_REPORT_KEYS: (ERROR, "The report holds every key of the contract.")}


class Weights(pa.DataFrameModel):
    """``weights_raw`` / ``weights_scaled``: target weights at trade dates."""

    date: dt.date = pa.Field(nullable=False, description="Trade date (close); the weights earn returns from the next day.")
    symbol: str = pa.Field(nullable=False, description="Stock of the universe.")
    weight: float = pa.Field(ge=0, le=1, description="Target weight; 1 - sum over symbols is cash.")

    class Config:
        strict = False


class Backtest(pa.DataFrameModel):
    """``baseline_backtest`` / ``scaled_backtest``: one row per trading day."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Trading day.")
    portfolio_return: float = pa.Field(description="Daily return net of costs.")
    equity: float = pa.Field(gt=0, description="Wealth after the day, 1 before the first day.")
    turnover: float = pa.Field(ge=0, description="Traded notional sum |w_new - w_drifted| on the day.")
    cost: float = pa.Field(ge=0, description="Cost charged on the day, bps x turnover / 1e4.")

    class Config:
        strict = False
