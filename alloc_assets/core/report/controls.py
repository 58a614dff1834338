"""Simple controls the governor is judged against (pure; numpy only, no Dagster import).

Each control is a daily *risk scalar* computed at the close of day t from data through t. It goes
through exactly what the governor's scalar goes through: ``core.allocator.scalars.applied_scalars`` at the
same overlay cadence (the value computed at one overlay date acts from the next), then
``core.portfolio.backtest.run_overlay`` on the same strategy book, with the same costs and cash rate.

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
- ``jump_model``: a peer's regime method (``core.allocator.jump_model``), bull -> 1, bear -> floor.
"""

from __future__ import annotations

import numpy as np

from alloc_assets.core.report.metrics import PERIODS_PER_YEAR

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


def control_scalars(dates: np.ndarray, book_returns: np.ndarray, first: int, governor_daily: np.ndarray,
                    bench_returns: np.ndarray, floor: float,
                    jump_cache: dict[str, dict]) -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, dict], list[dict]]:
    """Daily risk scalars of each control, computed at each close from data through it, their
    settings, and the jump-model refits fitted now (new cache entries) with the list of refits in
    force. The governor's own applied scalars give ``exposure_matched``.

    Parameters
    ----------
    dates : (T,) market days.
    book_returns : (T,) daily returns of the unscaled strategy book.
    first : row of the strategy's first trade.
    governor_daily : (T,) the governor's scalar in force at each close.
    bench_returns : (T,) daily benchmark returns (the first one is ignored).
    floor : the governor's floor.
    jump_cache : stored jump-model refits by key.
    """
    from alloc_assets.core.allocator import jump_model as jm  # imported when used (slow import)

    level = exposure_matched_scalar(governor_daily, first)
    risk = {"exposure_matched": np.full(len(dates), level),
            "vol_cap": vol_cap_scalar(book_returns, first, floor)}
    r = bench_returns.copy()
    r[0] = np.nan  # the first day has no earlier close
    state, _, new, fits = jm.cached_walk_forward(dates, r, jump_cache)
    risk["jump_model"] = jm.jump_model_scalars(state, floor)
    first_fit = int(np.searchsorted(dates, np.datetime64(fits[0]["fit_date"]))) if fits else len(dates)
    fitted = np.arange(len(dates)) >= first_fit
    settings = {
        "exposure_matched": {"scalar": level, "rule": "mean of the governor's scalar in force from the strategy's first trade"},
        "vol_cap": {"floor": floor, "window_days": VOL_CAP_WINDOW, "min_history_days": VOL_CAP_MIN_HISTORY,
                    "target": "expanding volatility of the strategy book through the date"},
        "jump_model": {"floor": floor, "penalty": jm.DEFAULT_PENALTY, "refit": jm.DEFAULT_REFIT.value,
                       "n_init": jm.DEFAULT_N_INIT, "min_train_days": jm.DEFAULT_MIN_TRAIN_DAYS, "fits": len(fits),
                       "first_fit": fits[0]["fit_date"] if fits else None,
                       "switches_per_year": float(jm.switches_per_year(state, fitted)),
                       "input": "benchmark index daily returns", "package": "jumpmodels (online inference only)"},
    }
    return risk, settings, new, fits
