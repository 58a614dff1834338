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
from pathlib import Path

import numpy as np
import pandas as pd

EXCHANGE = "XNYS"
EXCHANGE_TIMEZONE = "America/New_York"
CALENDAR_START = "1990-01-02"
#: The calendar's pinned end. ``exchange_calendars`` defaults its end to today + 1 year, which
#: would make the set of sessions (and anything keyed on it) depend on the day the code loads.
#: Pinned, the sessions are the same on every machine and every day; move it forward (a code
#: change) before it is reached.
CALENDAR_END = "2035-12-31"


@lru_cache(maxsize=1)
def _calendar():
    import exchange_calendars as xc

    return xc.get_calendar(EXCHANGE, start="1990-01-01", end=CALENDAR_END)


def _sessions_from_package() -> np.ndarray:
    cal = _calendar()
    return cal.sessions[cal.sessions >= pd.Timestamp(CALENDAR_START)].values.astype("datetime64[D]")


#: The sessions once built or loaded (the same list whatever folder caches it).
_loaded: pd.DatetimeIndex | None = None


def trading_sessions(cache_dir: Path | None = None) -> pd.DatetimeIndex:
    """All NYSE sessions from ``CALENDAR_START`` to the pinned ``CALENDAR_END``.

    Built by ``exchange_calendars`` (about 0.8 s). ``cache_dir``: a folder that keeps the list
    (keyed by the package's version and the pinned span), so a new process loads it in
    milliseconds; None: no disk cache. The first call in a process builds or loads the list,
    later calls return it from memory whatever their ``cache_dir``."""
    global _loaded
    if _loaded is None:
        _loaded = _load_sessions(cache_dir)
    return _loaded


def _load_sessions(cache_dir: Path | None) -> pd.DatetimeIndex:
    import hashlib
    import os
    from importlib.metadata import version

    if cache_dir is None:
        return pd.DatetimeIndex(_sessions_from_package().astype("datetime64[ns]"))
    key = hashlib.sha256(repr((EXCHANGE, CALENDAR_START, CALENDAR_END, version("exchange_calendars"), "v1"))
                         .encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"sessions-{key}.npy"
    try:
        days = np.load(cache, allow_pickle=False)
    except (OSError, ValueError):
        days = _sessions_from_package()
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, days, allow_pickle=False)
            tmp.replace(cache)
        except OSError:
            pass  # a read-only home: no cache, same sessions
    return pd.DatetimeIndex(days.astype("datetime64[ns]"))


@lru_cache(maxsize=1)
def session_days() -> frozenset:
    """The sessions as a set of ``datetime.date`` (membership tests)."""
    return frozenset(trading_sessions().date)


def is_trading_day(day: dt.date | str | pd.Timestamp) -> bool:
    """Whether ``day`` is an NYSE session."""
    return pd.Timestamp(day).normalize() in trading_sessions()


def sessions_between(start: dt.date | str, end: dt.date | str) -> pd.DatetimeIndex:
    """NYSE sessions in the closed interval [start, end]."""
    s = trading_sessions()
    return s[(s >= pd.Timestamp(start)) & (s <= pd.Timestamp(end))]


def last_contiguous_session(first: dt.date, present: Iterable[dt.date]) -> dt.date | None:
    """The last session of the unbroken run of sessions starting at ``first`` that are all in
    ``present`` (None if ``first`` itself is absent). Days stored after a gap (a later day that
    landed before an earlier one) are not reached: derived layers stop at the gap."""
    have = {d if type(d) is dt.date else pd.Timestamp(d).date() for d in present}
    if not have or first not in have:
        return None
    days = sessions_between(first, max(have)).values.astype("datetime64[D]")
    if len(days) == 0:
        return first
    missing = ~np.isin(days, np.array(sorted(have), dtype="datetime64[D]"))
    if not missing.any():
        return days[-1].astype(dt.date)
    k = int(np.argmax(missing))
    return first if k == 0 else days[k - 1].astype(dt.date)


def next_session(day: dt.date) -> dt.date | None:
    """The first session strictly after ``day`` (None past the pinned calendar end)."""
    s = trading_sessions()
    pos = s.searchsorted(pd.Timestamp(day), side="right")
    return s[pos].date() if pos < len(s) else None


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
