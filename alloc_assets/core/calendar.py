"""Trading calendar and rebalance schedules (pure; no Dagster import).

The exchange calendar is the NYSE (``XNYS``) from the maintained ``exchange_calendars`` package:
weekdays minus the exchange's full-day holidays and special closures (e.g. 2001-09-11..14,
2012-10-29..30, national days of mourning). The bundled data set has exactly these sessions.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from enum import Enum
from functools import lru_cache

import numpy as np
import pandas as pd

EXCHANGE = "XNYS"
EXCHANGE_TIMEZONE = "America/New_York"
CALENDAR_START = "1990-01-02"


@lru_cache(maxsize=1)
def _calendar():
    import exchange_calendars as xc

    return xc.get_calendar(EXCHANGE, start="1990-01-01")


@lru_cache(maxsize=1)
def trading_sessions() -> pd.DatetimeIndex:
    """All NYSE sessions from ``CALENDAR_START`` to the calendar's end (about a year ahead)."""
    cal = _calendar()
    return cal.sessions[cal.sessions >= pd.Timestamp(CALENDAR_START)]


@lru_cache(maxsize=1)
def non_trading_weekdays() -> tuple[dt.datetime, ...]:
    """Weekdays on which the exchange is closed, as naive midnight datetimes (partition exclusions)."""
    sessions = trading_sessions()
    weekdays = pd.bdate_range(sessions[0], sessions[-1])
    closed = weekdays.difference(sessions)
    return tuple(ts.to_pydatetime() for ts in closed)


def is_trading_day(day: dt.date | str | pd.Timestamp) -> bool:
    """Whether ``day`` is an NYSE session."""
    return pd.Timestamp(day).normalize() in trading_sessions()


def sessions_between(start: dt.date | str, end: dt.date | str) -> pd.DatetimeIndex:
    """NYSE sessions in the closed interval [start, end]."""
    s = trading_sessions()
    return s[(s >= pd.Timestamp(start)) & (s <= pd.Timestamp(end))]


def stored_sessions_after(day: dt.date | str, stored: Iterable[str]) -> list[str]:
    """The sessions right after ``day`` that are all in ``stored`` (ISO keys), up to the first gap.

    After an earlier day lands late (or is corrected), these later days hold data whose derived
    layers were computed without it (or from the old values): they are the range to recompute. The
    range stops at the first session without data, since the layers cannot run across a hole.
    """
    have = {str(k) for k in stored}
    later = sorted(k for k in have if k > str(pd.Timestamp(day).date()))
    if not later:
        return []
    out: list[str] = []
    for ts in sessions_between(pd.Timestamp(day) + pd.Timedelta(days=1), later[-1]):
        key = ts.strftime("%Y-%m-%d")
        if key not in have:
            break
        out.append(key)
    return out


class RebalanceFrequency(str, Enum):
    """How often the portfolio is rebalanced; a rebalance happens at the close of the day."""

    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"


def rebalance_mask(dates: np.ndarray | pd.DatetimeIndex, frequency: RebalanceFrequency | str) -> np.ndarray:
    """Boolean mask of rebalance dates among ``dates`` (sorted trading days).

    A rebalance date is the last trading day of its period (calendar month, ISO week) *that appears
    in ``dates``*, decided with ``dates`` alone. The last date of ``dates`` is a rebalance date only
    if the next trading day (from the exchange calendar) starts a new period, so the mask computed on
    a prefix of the history agrees with the mask computed on the whole history (no look-ahead in the
    calendar: the exchange calendar is known in advance).
    """
    freq = RebalanceFrequency(frequency)
    idx = pd.DatetimeIndex(dates)
    if len(idx) == 0:
        return np.zeros(0, dtype=bool)
    if freq is RebalanceFrequency.DAILY:
        return np.ones(len(idx), dtype=bool)
    sessions = trading_sessions()
    pos = sessions.searchsorted(idx[-1], side="right")
    nxt = sessions[pos] if pos < len(sessions) else idx[-1] + pd.Timedelta(days=40)
    extended = idx.append(pd.DatetimeIndex([nxt]))
    if freq is RebalanceFrequency.MONTHLY:
        period = extended.year * 12 + extended.month
    else:
        iso = extended.isocalendar()
        period = (iso["year"].to_numpy() * 100 + iso["week"].to_numpy())
    period = np.asarray(period)
    return period[:-1] != period[1:]


def rebalance_indices(dates: np.ndarray | pd.DatetimeIndex, frequency: RebalanceFrequency | str) -> np.ndarray:
    """Integer positions of the rebalance dates among ``dates``."""
    return np.flatnonzero(rebalance_mask(dates, frequency))
