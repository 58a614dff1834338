"""Performance and risk measures of a daily return series (pure; no Dagster import).

One small function per measure. Conventions are those of empyrical-reloaded (``empyrical.stats``),
which quantstats shares for every measure used here except the ones noted:

* daily simple returns as decimals; 252 periods a year (``PERIODS_PER_YEAR``);
* sample standard deviation (``ddof=1``);
* returns must be finite: :func:`compute_metrics` raises on NaN/inf (a backtest never produces them),
  the single-measure functions do not check;
* a measure that is undefined for the input (empty, one observation, zero dispersion, no drawdown)
  is ``nan`` (empyrical's choice); the report turns ``nan`` into JSON ``null``.

Every function takes ``returns`` of shape (T,); the ones without calendar grouping also accept
(T, K) and return one value per column (axis 0 is time).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np

from alloc_assets.core.report.calendar_returns import worst_month, worst_quarter

PERIODS_PER_YEAR = 252
VAR_CUTOFF = 0.05


class Metric(str, Enum):
    """The measures of the two-pass report, in contract order (``metrics.baseline`` keys)."""

    CAGR = "cagr"
    ANN_VOL = "ann_vol"
    SHARPE = "sharpe"
    SORTINO = "sortino"
    MAX_DRAWDOWN = "max_drawdown"
    CALMAR = "calmar"
    WORST_MONTH = "worst_month"
    WORST_QUARTER = "worst_quarter"
    VAR_95 = "var_95"
    CVAR_95 = "cvar_95"
    TURNOVER = "turnover"


METRIC_KEYS: tuple[str, ...] = tuple(m.value for m in Metric)


def _as_float_array(returns) -> np.ndarray:
    return np.asarray(returns, dtype=np.float64)


def _undefined(r: np.ndarray):
    """``nan`` for a series (T,), one ``nan`` per column for a panel (T, K)."""
    return np.nan if r.ndim == 1 else np.full(r.shape[1:], np.nan)


def cagr(returns, periods_per_year: int = PERIODS_PER_YEAR):
    """Compound annual growth rate.

    ``growth ** (periods_per_year / n) - 1`` with ``growth = prod(1 + r)`` and ``n`` the number of
    returns (empyrical ``annual_return``/``cagr``; quantstats ``cagr``). ``nan`` for an empty series
    or a terminal wealth below zero.

    Parameters
    ----------
    returns : array (T,) or (T, K), daily simple returns.

    Returns
    -------
    float, or array (K,).
    """
    r = _as_float_array(returns)
    n = r.shape[0]
    if n < 1:
        return _undefined(r)
    growth = np.prod(1.0 + r, axis=0)
    with np.errstate(invalid="ignore"):
        out = np.where(growth < 0, np.nan, growth ** (periods_per_year / n) - 1.0)
    return float(out) if r.ndim == 1 else out


def annual_volatility(returns, periods_per_year: int = PERIODS_PER_YEAR):
    """Annualised volatility: sample standard deviation (``ddof=1``) times ``sqrt(periods_per_year)``.

    Parameters
    ----------
    returns : array (T,) or (T, K), daily simple returns.

    Returns
    -------
    float (``nan`` for fewer than two returns), or array (K,).
    """
    r = _as_float_array(returns)
    if r.shape[0] < 2:
        return _undefined(r)
    out = np.std(r, axis=0, ddof=1) * np.sqrt(periods_per_year)
    return float(out) if r.ndim == 1 else out


def _sample_std_exact_zero(r: np.ndarray) -> np.ndarray:
    """Sample std, exactly 0 for a column of identical values (empyrical ``_zero_dispersion_std``)."""
    std = np.std(r, axis=0, ddof=1)
    constant = np.max(r, axis=0) == np.min(r, axis=0)
    return np.where(constant, 0.0, std)


def sharpe_ratio(returns, risk_free: float = 0.0, periods_per_year: int = PERIODS_PER_YEAR):
    """Annualised Sharpe ratio on the arithmetic mean.

    ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year)``; ``risk_free`` is a constant
    **daily** rate subtracted from every return (empyrical ``sharpe_ratio``; for an annual rate pass
    :func:`daily_rate` of it, which is what quantstats does with its annual ``rf``). ``nan`` for fewer
    than two returns; ``+-inf``/``nan`` for zero dispersion, as empyrical.

    Parameters
    ----------
    returns : array (T,) or (T, K), daily simple returns.
    risk_free : daily risk-free return.

    Returns
    -------
    float, or array (K,).
    """
    r = _as_float_array(returns) - risk_free
    if r.shape[0] < 2:
        return _undefined(r)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.mean(r, axis=0) / _sample_std_exact_zero(r) * np.sqrt(periods_per_year)
    return float(out) if r.ndim == 1 else out


def downside_deviation(returns, required_return: float = 0.0, periods_per_year: int = PERIODS_PER_YEAR):
    """Annualised downside deviation below ``required_return`` over **all** n returns.

    ``sqrt(mean(min(r - required_return, 0) ** 2)) * sqrt(periods_per_year)``: the mean runs over
    every observation, not only the losing ones (empyrical ``downside_risk``; quantstats ``sortino``
    computes the same ``sqrt(sum(neg ** 2) / count)``).

    Parameters
    ----------
    returns : array (T,) or (T, K), daily simple returns.
    required_return : daily minimum acceptable return.

    Returns
    -------
    float (``nan`` when empty), or array (K,).
    """
    r = _as_float_array(returns) - required_return
    if r.shape[0] < 1:
        return _undefined(r)
    out = np.sqrt(np.mean(np.minimum(r, 0.0) ** 2, axis=0)) * np.sqrt(periods_per_year)
    return float(out) if r.ndim == 1 else out


def sortino_ratio(returns, required_return: float = 0.0, periods_per_year: int = PERIODS_PER_YEAR):
    """Annualised Sortino ratio.

    ``mean(r - required_return) * periods_per_year / downside_deviation(r)`` (empyrical
    ``sortino_ratio``). quantstats gives the same value when the downside deviation is positive;
    where it is zero empyrical (and this function) returns ``inf`` and quantstats ``nan``.

    Parameters
    ----------
    returns : array (T,) or (T, K), daily simple returns.
    required_return : daily minimum acceptable return.

    Returns
    -------
    float (``nan`` for fewer than two returns), or array (K,).
    """
    r = _as_float_array(returns)
    if r.shape[0] < 2:
        return _undefined(r)
    mean_annual = np.mean(r - required_return, axis=0) * periods_per_year
    with np.errstate(divide="ignore", invalid="ignore"):
        out = mean_annual / downside_deviation(r, required_return, periods_per_year)
    return float(out) if r.ndim == 1 else out


def wealth_index(returns) -> np.ndarray:
    """Wealth after each return, starting from 1 before the first: ``cumprod(1 + r)``, shape of ``returns``."""
    return np.cumprod(1.0 + _as_float_array(returns), axis=0)


def drawdown_series(returns, *, is_wealth: bool = False) -> np.ndarray:
    """Drawdown after each return, as a fraction ``<= 0`` of the running peak.

    The running peak starts at wealth 1 **before** the first return, so a first-day loss is a
    drawdown (empyrical ``drawdown_series``; quantstats ``to_drawdown_series``).

    Parameters
    ----------
    returns : array (T,) or (T, K), daily simple returns; with ``is_wealth`` the wealth after each
        day instead (an equity curve that started at 1).

    Returns
    -------
    array of the shape of ``returns``.
    """
    wealth = np.asarray(returns, dtype=np.float64) if is_wealth else wealth_index(returns)
    peak = np.maximum(np.maximum.accumulate(wealth, axis=0), 1.0)
    return wealth / peak - 1.0


def max_drawdown(returns):
    """Maximum drawdown, a negative fraction (0 when wealth never falls below a previous peak).

    Anchored at wealth 1 before the first return (empyrical ``max_drawdown``, quantstats
    ``max_drawdown`` on returns). ``nan`` for an empty series.

    Parameters
    ----------
    returns : array (T,) or (T, K), daily simple returns.

    Returns
    -------
    float, or array (K,).
    """
    r = _as_float_array(returns)
    if r.shape[0] < 1:
        return _undefined(r)
    out = np.min(drawdown_series(r), axis=0)
    return float(out) if r.ndim == 1 else out


def calmar_ratio(returns, periods_per_year: int = PERIODS_PER_YEAR):
    """Calmar ratio ``cagr / |max_drawdown|`` over the whole series.

    ``nan`` when there is no drawdown (empyrical ``calmar_ratio``; quantstats divides anyway and
    returns ``inf``).

    Parameters
    ----------
    returns : array (T,), daily simple returns.

    Returns
    -------
    float.
    """
    r = _as_float_array(returns)
    mdd = max_drawdown(r)
    if not mdd < 0:
        return np.nan
    out = cagr(r, periods_per_year) / abs(mdd)
    return float(out) if np.isfinite(out) else np.nan


def value_at_risk(returns, cutoff: float = VAR_CUTOFF) -> float:
    """Historical one-day Value at Risk: the ``cutoff`` quantile of the returns (negative = a loss).

    ``np.percentile(r, 100 * cutoff)`` with linear interpolation between order statistics
    (empyrical ``value_at_risk``). quantstats' ``var`` is a *parametric* (normal) VaR and is not used.

    Parameters
    ----------
    returns : array (T,), daily simple returns.
    cutoff : tail probability, 0.05 for the 95 % VaR.

    Returns
    -------
    float (``nan`` when empty).
    """
    r = _as_float_array(returns)
    if r.size < 1:
        return np.nan
    return float(np.percentile(r, 100.0 * cutoff))


def conditional_value_at_risk(returns, cutoff: float = VAR_CUTOFF) -> float:
    """Historical one-day CVaR (expected shortfall): mean of the worst ``floor((n - 1) * cutoff) + 1`` returns.

    Exactly empyrical ``conditional_value_at_risk``. quantstats' ``cvar(method="historical")``
    averages the returns ``<=`` the interpolated quantile, which is the same set unless returns tie
    at the cut.

    Parameters
    ----------
    returns : array (T,), daily simple returns.
    cutoff : tail probability, 0.05 for the 95 % CVaR.

    Returns
    -------
    float (``nan`` when empty).
    """
    r = _as_float_array(returns).ravel()
    if r.size < 1:
        return np.nan
    k = int((r.size - 1) * cutoff)
    return float(np.mean(np.partition(r, k)[: k + 1]))


def annual_turnover(turnover, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Mean annualised one-way turnover.

    ``turnover`` is the backtest's daily traded notional ``sum_i |w_new - w_drifted|`` as a fraction
    of wealth (buys plus sells, the base costs are charged on). One-way turnover is half of it, so
    the measure is ``0.5 * mean(turnover) * periods_per_year``: selling one whole portfolio and
    buying another once a year is 1.0. Days without a trade count as zero.

    Parameters
    ----------
    turnover : array (T,), daily traded notional.

    Returns
    -------
    float (``nan`` when empty).
    """
    t = _as_float_array(turnover)
    if t.size < 1:
        return np.nan
    return float(0.5 * np.mean(t) * periods_per_year)


def daily_rate(annual_rate: float, periods_per_year: int = PERIODS_PER_YEAR) -> float:
    """Compounded daily equivalent of an annual rate: ``(1 + annual) ** (1 / periods_per_year) - 1``."""
    return float((1.0 + annual_rate) ** (1.0 / periods_per_year) - 1.0)


def compute_metrics(returns, dates, turnover=None, risk_free: float = 0.0) -> dict[str, float]:
    """Every report measure of one return series, keyed by :data:`METRIC_KEYS` (contract order).

    Parameters
    ----------
    returns : array (T,), daily simple returns net of costs; finite.
    dates : array (T,), the dates of ``returns`` (for worst month and quarter).
    turnover : array (T,) of daily traded notional, or None (then ``turnover`` is ``nan``).
    risk_free : daily risk-free rate for the Sharpe ratio and the Sortino ratio's required return
        (0 by default; the report passes the daily cash rate when cash earns one).

    Returns
    -------
    dict of plain Python floats (``nan`` where undefined).
    """
    r = _as_float_array(returns)
    if r.ndim != 1:
        raise ValueError(f"compute_metrics takes one series of shape (T,), got {r.shape}")
    if not np.all(np.isfinite(r)):
        bad = int(np.flatnonzero(~np.isfinite(r))[0])
        raise ValueError(f"returns must be finite; position {bad} is {r[bad]}")
    values = {
        Metric.CAGR: cagr(r),
        Metric.ANN_VOL: annual_volatility(r),
        Metric.SHARPE: sharpe_ratio(r, risk_free),
        Metric.SORTINO: sortino_ratio(r, risk_free),
        Metric.MAX_DRAWDOWN: max_drawdown(r),
        Metric.CALMAR: calmar_ratio(r),
        Metric.WORST_MONTH: worst_month(r, dates),
        Metric.WORST_QUARTER: worst_quarter(r, dates),
        Metric.VAR_95: value_at_risk(r, VAR_CUTOFF),
        Metric.CVAR_95: conditional_value_at_risk(r, VAR_CUTOFF),
        Metric.TURNOVER: np.nan if turnover is None else annual_turnover(turnover),
    }
    return {m.value: float(values[m]) for m in Metric}


def metric_delta(baseline: dict[str, float], scaled: dict[str, float], keys: Sequence[str] = METRIC_KEYS) -> dict[str, float]:
    """``scaled - baseline`` per key (``nan`` where either side is ``nan``)."""
    return {k: float(scaled[k]) - float(baseline[k]) for k in keys}
