"""Smooth transitions between rebalance targets and the drift of the traded book (pure; numpy only).

The book drifts between trades exactly as ``core.portfolio.backtest`` drifts it
(``w_i <- w_i G_i / (sum_j w_j G_j + cash G_cash)``). ``max_change`` caps how far a target moves from
the previous one, ``min_change`` is a no-trade band relative to each name's drifted weight, limits
are re-checked after the band (excess to cash), and ``spread_days`` spreads a move over several
trading days. The exact rules, and why the band is relative and on the drifted book, are in
``docs/notes/report.md``.
"""

from __future__ import annotations

import numpy as np

from alloc_assets.core.portfolio.limits import clip_with_onehot, sector_onehot
from alloc_assets.core.portfolio.profiles import RiskLimits, StrategyWeights, Transition


def smooth_transition(
    prev: np.ndarray,
    new: np.ndarray,
    transition: Transition,
    sector_id: np.ndarray,
    limits: RiskLimits,
    cov: np.ndarray | None = None,
    drifted: np.ndarray | None = None,
) -> np.ndarray:
    """One rebalance of the transition rules (docs/notes/report.md, step 3; no spreading), batched.

    Parameters
    ----------
    prev : (..., N) previous final targets (zeros for a book in cash); ``max_change`` is measured
        from them.
    new : (..., N) new targets within the limits.
    transition, sector_id, limits, cov : settings, (N,) sector codes, (..., N, N) covariances or None.
    drifted : (..., N) the book's weights just before this trade: ``prev`` as traded, drifted with
        the returns since (:func:`drift_weights`). The ``min_change`` band is measured from them and
        a held name keeps them. None: the book is ``prev`` itself (a single step with no time
        between the trades, as in :func:`reallocate_sleeves`).

    Returns
    -------
    (..., N) the targets actually set.
    """
    onehot = None if limits.max_sector_weight is None else sector_onehot(sector_id)
    out, _ = _transition_step(prev, new, transition, onehot, limits, cov, drifted)
    return out


def _transition_step(
    prev: np.ndarray,
    new: np.ndarray,
    transition: Transition,
    onehot: np.ndarray | None,
    limits: RiskLimits,
    cov: np.ndarray | None,
    drifted: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`smooth_transition` (``onehot``: sector one-hot, None without a sector cap) and the
    (..., N) bool mask of the names the band holds."""
    prev = np.asarray(prev, dtype=np.float64)
    new = np.asarray(new, dtype=np.float64)
    book = prev if drifted is None else np.asarray(drifted, dtype=np.float64)
    delta = new - prev
    if transition.max_change is not None:
        biggest = np.max(np.abs(delta), axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(biggest > transition.max_change, transition.max_change / biggest, 1.0)
        new = prev + frac * delta
    if transition.min_change <= 0:
        return new, np.zeros(new.shape, dtype=bool)
    hold = (book > 0) & (new > 0) & (np.abs(new - book) < transition.min_change * book)
    return _hold(new, book, hold, onehot, limits, cov), hold


def _hold(target: np.ndarray, book: np.ndarray, hold: np.ndarray, onehot: np.ndarray | None,
          limits: RiskLimits, cov: np.ndarray | None) -> np.ndarray:
    """Held names keep their weight in ``book``, the others take ``target``; an excess over
    ``max(sum(target), 1)`` is taken from the names that trade, pro rata (a shortfall stays in cash);
    then limits are re-checked, cutting to cash (``onehot``: sector one-hot, None without a sector cap)."""
    out = np.where(hold, book, target)
    # held names may add up to more than a fully invested book: take the excess from the traders
    excess = np.maximum(out.sum(axis=-1, keepdims=True) - np.maximum(target.sum(axis=-1, keepdims=True), 1.0), 0.0)
    if np.any(excess > 0):
        trades = ~hold & (out > 0)
        traded_total = np.sum(np.where(trades, out, 0.0), axis=-1, keepdims=True)
        ratio = np.zeros_like(traded_total)
        np.divide(excess, traded_total, out=ratio, where=traded_total > 0)
        out = np.where(trades, out * np.maximum(1.0 - ratio, 0.0), out)
    return clip_with_onehot(out, onehot, limits, cov)


def drift_weights(
    weights: np.ndarray, returns: np.ndarray, start: int, end: int, cash_rate_daily: float = 0.0
) -> np.ndarray:
    """Weights traded at the close of row ``start``, drifted to the close of row ``end`` (before any
    trade there), exactly as :func:`alloc_assets.core.portfolio.backtest.run_backtest` drifts them.

    ``w_i <- w_i G_i / (sum_j w_j G_j + cash G_cash)`` with ``G_i`` the growth of name ``i`` over
    rows ``start + 1 .. end``, ``cash = 1 - sum(w)`` and ``G_cash = (1 + cash_rate_daily) ** (end -
    start)``; the arithmetic is the engine's, operation for operation, so a name whose target is set
    to its drifted weight has a turnover of exactly 0 there.
    """
    w = np.asarray(weights, dtype=np.float64)
    length = end - start
    if length <= 0:
        return w.copy()
    growth_m1 = np.cumprod(1.0 + returns[start + 1 : end + 1], axis=0)  # (L, N)
    growth_m1 -= 1.0
    value_m1 = growth_m1 @ w  # (L,)
    if cash_rate_daily != 0.0:  # at 0 the engine adds exact zeros
        value_m1 += (1.0 - w.sum()) * ((1.0 + cash_rate_daily) ** np.arange(1, length + 1) - 1.0)
    return (1.0 + growth_m1[-1]) * w / (1.0 + value_m1[-1])


def transition_path(
    r: np.ndarray,
    idx: np.ndarray,
    limited: np.ndarray,
    transition: Transition,
    sid: np.ndarray,
    limits: RiskLimits,
    risk_cov: np.ndarray | None,
    cash_rate_daily: float,
) -> StrategyWeights:
    """Step 3 over all rebalances, following the traded book through its drift (docs/notes/report.md)."""
    n = r.shape[1]
    onehot = None if limits.max_sector_weight is None else sector_onehot(sid)
    final = np.empty_like(limited)
    prev = np.zeros(n)  # previous final target: max_change is measured from it
    book = np.zeros(n)  # weights traded at the last trade date
    last = -1  # row of the last trade (-1: none yet, the book is cash)
    spread = transition.spread_days
    nxt = np.append(idx[1:], r.shape[0])
    position = np.zeros(n)  # where the spread path stands
    days: list[int] = []
    rows: list[np.ndarray] = []
    src: list[int] = []
    for k, day in enumerate(idx):
        cov_k = None if risk_cov is None else risk_cov[k]
        drifted = np.zeros(n) if last < 0 else drift_weights(book, r, last, int(day), cash_rate_daily)
        prev, hold = _transition_step(prev, limited[k], transition, onehot, limits, cov_k, drifted)
        final[k] = prev
        if spread <= 1:
            book, last = prev, int(day)
            continue
        # day j of the spread targets start + (j + 1) / n (target - start); held names keep their
        # drifted weight on every day of it
        for j in range(int(min(spread, nxt[k] - day))):
            d = int(day) + j
            point = position + (j + 1) / spread * (prev - position)
            if hold.any():
                here = drifted if j == 0 else drift_weights(book, r, last, d, cash_rate_daily)
                point = _hold(point, here, hold, onehot, limits, cov_k)
            days.append(d)
            rows.append(point)
            src.append(k)
            book, last = point, d
        position = book
    if spread <= 1 or not days:
        return StrategyWeights(idx, final, idx.copy(), final.copy(), np.arange(idx.size))
    trade_idx, trade_source = np.asarray(days, dtype=np.int64), np.asarray(src, dtype=np.int64)
    return StrategyWeights(idx, final, trade_idx, np.vstack(rows), trade_source)
