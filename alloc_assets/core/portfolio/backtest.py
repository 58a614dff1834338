"""The one backtest engine of both passes (pure; no Dagster import).

``returns[t]`` is the return from the close of ``t - 1`` to the close of ``t``; weights decided at
the close of ``t`` earn ``returns[t + 1]`` onwards. The book starts in cash (wealth 1) and trades at
the close of each trade date from its *drifted* weights to ``scalar * target``; the remainder earns
the daily cash rate. ``turnover = sum |w_new - w_drifted|`` and ``cost = turnover * bps / 1e4`` are
charged on the trade day, so costs lower that day's return by exactly ``bps * turnover``.
``equity[t] = prod_{s <= t} (1 + portfolio_return[s])``. The full accounting rules are in
``docs/notes/report.md`` (section "Backtest engine"). Vectorised per segment between trade dates;
the only Python loop runs over trade dates.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from alloc_assets.core.report.metrics import PERIODS_PER_YEAR, daily_rate


class AllocatorMode(str, Enum):
    """How the regime scalars reach the scaled pass.

    ``off``: scalars are computed and stored but not applied (the scaled pass equals the baseline);
    ``compute``: scalars computed inside the backtest run; ``precomputed``: scalars read from the
    stored ``applied_scalars``. The engine treats ``compute`` and ``precomputed`` identically: both
    multiply the targets by the scalars they are given.
    """

    OFF = "off"
    COMPUTE = "compute"
    PRECOMPUTED = "precomputed"


@dataclass(frozen=True)
class BacktestResult:
    """Daily output of :func:`run_backtest`; arrays only, aligned with the rows of ``returns``.

    Attributes
    ----------
    portfolio_return : (T,) daily return net of costs.
    equity : (T,) wealth after each day, 1 before the first.
    turnover : (T,) traded notional ``sum |w_new - w_drifted|`` (0 on days without a trade).
    cost : (T,) cost charged on the day, as a return (``turnover * bps / 1e4``).
    weights : (T, N) end-of-day asset weights (after the close trade); cash is ``1 - sum``.
    """

    portfolio_return: np.ndarray
    equity: np.ndarray
    turnover: np.ndarray
    cost: np.ndarray
    weights: np.ndarray

    @property
    def cash_weight(self) -> np.ndarray:
        """(T,) end-of-day cash weight ``1 - sum(weights)``."""
        return 1.0 - self.weights.sum(axis=1)


def scaled_weights(target_weights: np.ndarray, scalars: np.ndarray | None, mode: AllocatorMode | str) -> np.ndarray:
    """Targets of the scaled pass: ``scalars[:, None] * target_weights`` unless the mode is ``off``.

    Parameters
    ----------
    target_weights : (R, N) targets at the trade dates.
    scalars : (R,) applied scalars (for ``off`` they may be None and are ignored).
    mode : ``AllocatorMode`` or its value.

    Returns
    -------
    (R, N) new array.
    """
    mode = AllocatorMode(mode)
    w = np.asarray(target_weights, dtype=np.float64)
    if mode is AllocatorMode.OFF:
        return w.copy()
    if scalars is None:
        raise ValueError(f"allocator mode {mode.value!r} needs scalars; got None")
    s = np.asarray(scalars, dtype=np.float64)
    if s.shape != (w.shape[0],):
        raise ValueError(f"scalars shape {s.shape} does not match {w.shape[0]} trade dates")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("scalars must be finite and >= 0")
    return w * s[:, None]


def _validate(returns: np.ndarray, rebalance_idx: np.ndarray, target: np.ndarray) -> None:
    t, n = returns.shape
    if rebalance_idx.ndim != 1 or target.shape != (rebalance_idx.shape[0], n):
        raise ValueError(
            f"target_weights shape {target.shape} must be (len(rebalance_idx)={rebalance_idx.shape[0]}, N={n})"
        )
    if rebalance_idx.size:
        if rebalance_idx[0] < 0 or rebalance_idx[-1] >= t:
            raise ValueError(f"rebalance_idx must lie in [0, {t}); got {rebalance_idx[0]}..{rebalance_idx[-1]}")
        if np.any(np.diff(rebalance_idx) <= 0):
            raise ValueError("rebalance_idx must be strictly increasing")
    if not np.all(np.isfinite(target)):
        raise ValueError("target_weights must be finite")
    first_held = rebalance_idx[0] + 1 if rebalance_idx.size else t
    tail = returns[first_held:]
    if not np.all(np.isfinite(tail)):
        row, col = np.argwhere(~np.isfinite(tail))[0]
        raise ValueError(
            f"returns must be finite once the portfolio holds assets; row {first_held + row}, column {col} is {tail[row, col]}"
        )


def run_backtest(
    returns: np.ndarray,
    rebalance_idx: np.ndarray,
    target_weights: np.ndarray,
    scalars: np.ndarray | None = None,
    cost_bps: float = 0.0,
    cash_rate_annual: float = 0.0,
) -> BacktestResult:
    """Backtest target weights traded at the close of the given dates (rules in the module docstring).

    Parameters
    ----------
    returns : (T, N) simple daily asset returns.
    rebalance_idx : (R,) strictly increasing row positions of the trade dates.
    target_weights : (R, N) target weights at those dates (before scaling).
    scalars : (R,) risk scalars multiplying the targets, or None for the unscaled pass.
    cost_bps : cost per unit of traded notional, in basis points.
    cash_rate_annual : annual rate earned by the cash remainder (decimal).

    Returns
    -------
    BacktestResult with (T,) and (T, N) arrays.
    """
    r_all = np.asarray(returns, dtype=np.float64)
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    target = np.asarray(target_weights, dtype=np.float64)
    if r_all.ndim != 2:
        raise ValueError(f"returns must be (T, N); got {r_all.shape}")
    _validate(r_all, idx, target)
    if scalars is not None:
        target = scaled_weights(target, scalars, AllocatorMode.COMPUTE)

    t_len, n = r_all.shape
    rc = daily_rate(cash_rate_annual, PERIODS_PER_YEAR)
    port = np.full(t_len, rc)  # all cash until the first trade
    weights = np.zeros((t_len, n))
    turnover = np.zeros(t_len)
    cost = np.zeros(t_len)
    fee = cost_bps / 1e4

    ends = np.append(idx[1:], t_len - 1)
    for k in range(idx.size):
        start, end = idx[k], ends[k]
        w_new = target[k]
        traded = np.abs(w_new - weights[start]).sum()  # weights[start] holds the drifted weights
        turnover[start] = traded
        cost[start] = traded * fee
        port[start] -= cost[start]
        weights[start] = w_new
        length = end - start
        if length <= 0:
            continue
        # value of the post-trade book relative to its value at the close of `start`, minus 1,
        # accumulated as growth - 1 so a one-day segment gives exactly sum(w * r) + cash * rc
        growth_m1 = np.cumprod(1.0 + r_all[start + 1 : end + 1], axis=0) - 1.0  # (L, N)
        cash = 1.0 - w_new.sum()
        cash_m1 = (1.0 + rc) ** np.arange(1, length + 1) - 1.0
        value_m1 = growth_m1 @ w_new + cash * cash_m1  # (L,)
        prev_m1 = np.concatenate(([0.0], value_m1[:-1]))
        port[start + 1 : end + 1] = (value_m1 - prev_m1) / (1.0 + prev_m1)
        weights[start + 1 : end + 1] = (1.0 + growth_m1) * w_new / (1.0 + value_m1)[:, None]

    equity = np.cumprod(1.0 + port)
    return BacktestResult(portfolio_return=port, equity=equity, turnover=turnover, cost=cost, weights=weights)


def run_two_passes(
    returns: np.ndarray,
    rebalance_idx: np.ndarray,
    target_weights: np.ndarray,
    scalars: np.ndarray | None,
    mode: AllocatorMode | str,
    cost_bps: float = 0.0,
    cash_rate_annual: float = 0.0,
) -> tuple[BacktestResult, BacktestResult]:
    """Baseline and scaled pass with the same engine, costs and calendar.

    The scaled pass trades :func:`scaled_weights` of the targets; with mode ``off`` it is the
    baseline itself (the same object).
    """
    baseline = run_backtest(returns, rebalance_idx, target_weights, None, cost_bps, cash_rate_annual)
    if AllocatorMode(mode) is AllocatorMode.OFF:
        return baseline, baseline
    scaled_target = scaled_weights(target_weights, scalars, mode)
    scaled = run_backtest(returns, rebalance_idx, scaled_target, None, cost_bps, cash_rate_annual)
    return baseline, scaled


def scalar_in_force(dates: np.ndarray, applied_dates: np.ndarray, applied_values: np.ndarray,
                    missing: float = 1.0) -> np.ndarray:
    """The overlay scalar in force at the close of each day: the value of the latest overlay date on
    or before it (``missing`` before the first).

    Parameters
    ----------
    dates : (T,) sorted days of the backtest (datetime64[D]).
    applied_dates, applied_values : (K,) the overlay dates and the scalar applied from each (the one
        computed at the previous overlay date: ``core.allocator.scalars.applied_scalars``).
    missing : scalar before the first overlay date.

    Returns
    -------
    (T,) float array.
    """
    d = np.asarray(dates).astype("datetime64[D]")
    a = np.asarray(applied_dates).astype("datetime64[D]")
    v = np.asarray(applied_values, dtype=np.float64)
    if a.size == 0:
        return np.full(d.size, float(missing))
    pos = np.searchsorted(a, d, side="right") - 1
    return np.where(pos >= 0, v[np.maximum(pos, 0)], float(missing))


@dataclass(frozen=True)
class OverlayTrades:
    """The trades of an overlaid book: at ``idx`` the book trades to ``targets``.

    ``strategy[k]`` is True where the strategy itself trades (a rebalance or a spread day), False
    for an overlay-only trade (the scalar changed between strategy trades); ``scalar[k]`` is the
    scalar in force after the trade.
    """

    idx: np.ndarray
    targets: np.ndarray
    scalar: np.ndarray
    strategy: np.ndarray


def overlay_trades(baseline_weights: np.ndarray, rebalance_idx: np.ndarray, scalar_daily: np.ndarray) -> OverlayTrades:
    """Trades of the book "scalar x the strategy's book", the overlay acting at its own cadence.

    The overlaid book trades (a) at every strategy trade date and (b) on every later day whose
    scalar in force differs from the previous day's (an overlay date whose scalar changed). At each
    such close it trades to ``scalar_t * w_base_t``, where ``w_base_t`` are the strategy's end-of-day
    weights (after its own trade, so the target itself on a strategy trade date, the drifted book
    otherwise). Between trades both books drift with the same asset returns, so the overlaid
    book's risky part keeps the strategy's composition. With an overlay calendar whose dates are all
    strategy trade dates, this is exactly ``scalar x target`` at the strategy's trades.

    Parameters
    ----------
    baseline_weights : (T, N) end-of-day weights of the unscaled strategy (``BacktestResult.weights``).
    rebalance_idx : (R,) the strategy's trade rows.
    scalar_daily : (T,) scalar in force at each close (:func:`scalar_in_force`).

    Returns
    -------
    OverlayTrades (nothing before the strategy's first trade: until then both books hold cash).
    """
    w = np.asarray(baseline_weights, dtype=np.float64)
    s = np.asarray(scalar_daily, dtype=np.float64)
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    if s.shape != (w.shape[0],):
        raise ValueError(f"scalar_daily shape {s.shape} does not match {w.shape[0]} days")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("scalars must be finite and >= 0")
    if idx.size == 0:
        return OverlayTrades(idx, np.zeros((0, w.shape[1])), np.zeros(0), np.zeros(0, dtype=bool))
    changed = np.flatnonzero(np.diff(s) != 0) + 1
    overlay = changed[changed > idx[0]]
    all_idx = np.union1d(idx, overlay)
    strategy = np.isin(all_idx, idx)
    targets = w[all_idx] * s[all_idx, None]
    return OverlayTrades(all_idx, targets, s[all_idx], strategy)


def run_overlay(
    returns: np.ndarray,
    baseline: BacktestResult,
    rebalance_idx: np.ndarray,
    scalar_daily: np.ndarray,
    cost_bps: float = 0.0,
    cash_rate_annual: float = 0.0,
) -> tuple[BacktestResult, OverlayTrades]:
    """Backtest of the overlaid book (:func:`overlay_trades`) with the same engine, costs and cash
    rate as the strategy's own backtest ``baseline``."""
    trades = overlay_trades(baseline.weights, rebalance_idx, scalar_daily)
    result = run_backtest(returns, trades.idx, trades.targets, None, cost_bps, cash_rate_annual)
    return result, trades
