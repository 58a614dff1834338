"""Compounded returns per calendar month, quarter or year, and the worst of them (pure; no Dagster
import). Conventions of empyrical ``aggregate_returns`` (quantstats with ``"ME"``/``"QE"``): a
partial first or last period is a group like any other."""

from __future__ import annotations

from enum import Enum

import numpy as np
import pandas as pd


class CalendarPeriod(str, Enum):
    """Calendar buckets for compounded period returns."""

    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


def _period_codes(dates, period: CalendarPeriod) -> np.ndarray:
    d = pd.DatetimeIndex(np.asarray(dates, dtype="datetime64[ns]"))
    if period is CalendarPeriod.MONTH:
        return np.asarray(d.year * 12 + (d.month - 1))
    if period is CalendarPeriod.QUARTER:
        return np.asarray(d.year * 4 + (d.month - 1) // 3)
    return np.asarray(d.year)


def period_returns(returns, dates, period: CalendarPeriod | str) -> np.ndarray:
    """Compounded returns per calendar period, in date order.

    Groups by calendar (year, month), (year, quarter) or year of ``dates`` and compounds
    ``prod(1 + r) - 1`` inside each group; a partial first or last period is a group like any other
    (empyrical ``aggregate_returns``; quantstats ``aggregate_returns`` with ``"ME"``/``"QE"``).

    Parameters
    ----------
    returns : array (T,), daily simple returns.
    dates : array (T,) of dates (anything ``pd.DatetimeIndex`` takes), sorted ascending.
    period : ``CalendarPeriod`` or its value.

    Returns
    -------
    array (P,), one compounded return per period present.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.shape[0] != len(dates):
        raise ValueError(f"returns ({r.shape[0]}) and dates ({len(dates)}) differ in length")
    if r.shape[0] == 0:
        return np.zeros(0)
    codes = _period_codes(dates, CalendarPeriod(period))
    if np.any(np.diff(codes) < 0):
        raise ValueError("dates must be sorted ascending")
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return np.multiply.reduceat(1.0 + r, starts) - 1.0


def worst_month(returns, dates) -> float:
    """Lowest compounded calendar-month return (see :func:`period_returns`); ``nan`` when empty."""
    p = period_returns(returns, dates, CalendarPeriod.MONTH)
    return float(p.min()) if p.size else np.nan


def worst_quarter(returns, dates) -> float:
    """Lowest compounded calendar-quarter return (see :func:`period_returns`); ``nan`` when empty."""
    p = period_returns(returns, dates, CalendarPeriod.QUARTER)
    return float(p.min()) if p.size else np.nan
