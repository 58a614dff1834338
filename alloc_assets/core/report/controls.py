"""Simple controls the governor is judged against (pure; numpy only, no Dagster import).

Each control is a daily *risk scalar* computed at the close of day t from data through t. It goes
through exactly what the governor's scalar goes through: ``core.scalars.applied_scalars`` at the
same overlay cadence (the value computed at one overlay date acts from the next), then
``core.backtest.run_overlay`` on the same strategy book, with the same costs and cash rate.

- ``exposure_matched``: a constant scalar equal to the governor's mean exposure, i.e. the mean of
  the governor's scalar in force over the days the strategy is invested (from its first trade).
  It is matched on the evaluation window by construction: the question it answers is "would simply
  holding less risk all the time have done as well?", not a strategy one could have run ex ante.
- ``vol_cap``: ``clip(target_t / sigma_t, floor, 1)`` with ``sigma_t`` the annualised standard
  deviation (ddof 1) of the strategy book's last ``window`` daily returns through t and
  ``target_t`` the annualised standard deviation of all its returns through t (expanding, from the
  first invested day): the book is cut when its recent volatility runs above its own long-run
  volatility. The target is therefore set from data before the scalar acts, never fixed by looking
  at the evaluation window. Until ``min_history`` invested days exist the scalar is 1.
- ``jump_model``: a peer's regime method (``core.jump_model``), bull -> 1, bear -> floor.
"""

from __future__ import annotations

import numpy as np

from alloc_assets.core.report.metrics import PERIODS_PER_YEAR

CONTROLS: tuple[str, ...] = ("exposure_matched", "vol_cap", "jump_model")
VOL_CAP_WINDOW = 21
VOL_CAP_MIN_HISTORY = 252


def exposure_matched_scalar(governor_daily: np.ndarray, first_invested: int) -> float:
    """The governor's mean scalar in force from the strategy's first trade to the end.

    Parameters
    ----------
    governor_daily : (T,) the governor's scalar in force at each close.
    first_invested : row of the strategy's first trade.
    """
    s = np.asarray(governor_daily, dtype=np.float64)[first_invested:]
    return float(s.mean()) if s.size else 1.0


def vol_cap_scalar(book_returns: np.ndarray, first_invested: int, floor: float, *,
                   window: int = VOL_CAP_WINDOW, min_history: int = VOL_CAP_MIN_HISTORY,
                   periods_per_year: int = PERIODS_PER_YEAR) -> np.ndarray:
    """Daily volatility-cap scalar (module docstring) computed at each close from data through it.

    Parameters
    ----------
    book_returns : (T,) daily returns of the unscaled strategy book.
    first_invested : row of the strategy's first trade (returns before it are cash and ignored).
    floor : least scalar (the governor's floor).
    window : days of the recent volatility.
    min_history : invested days needed before the cap acts (scalar 1 before).

    Returns
    -------
    (T,) scalars in [floor, 1].
    """
    r = np.asarray(book_returns, dtype=np.float64)
    out = np.ones(r.size)
    x = r[first_invested + 1:]  # returns earned by the invested book
    n = x.size
    if n < max(window, min_history, 2):
        return out
    ann = np.sqrt(periods_per_year)
    c1 = np.cumsum(x)
    c2 = np.cumsum(x * x)
    k = np.arange(1, n + 1, dtype=np.float64)
    long_var = (c2 - c1 * c1 / k) / np.maximum(k - 1, 1)
    s1 = c1 - np.concatenate((np.zeros(window), c1[:-window]))
    s2 = c2 - np.concatenate((np.zeros(window), c2[:-window]))
    short_var = (s2 - s1 * s1 / window) / (window - 1)
    long_sd = np.sqrt(np.maximum(long_var, 0.0)) * ann
    short_sd = np.sqrt(np.maximum(short_var, 0.0)) * ann
    with np.errstate(divide="ignore", invalid="ignore"):
        cap = np.where(short_sd > 0, long_sd / short_sd, 1.0)
    cap = np.clip(cap, floor, 1.0)
    cap[: max(window, min_history) - 1] = 1.0
    out[first_invested + 1:] = cap
    return out


def regime_scalar(bear: np.ndarray, floor: float) -> np.ndarray:
    """A two-state regime mapped to the governor's scalar range: 1 in the good state, ``floor`` in
    the bad one (``bear`` True or 1)."""
    return np.where(np.asarray(bear).astype(bool), float(floor), 1.0)
