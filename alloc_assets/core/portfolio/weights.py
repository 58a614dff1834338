"""Target weights of the strategy profiles at their trade dates (pure; no Dagster).

Pipeline at each rebalance row ``r``, using returns of rows ``<= r`` only: the profile's raw weights
(:func:`raw_weights`; equal weight until a kind has the history it needs), then the risk limits
(``limits``), then the smooth transition from the previous target and the drifted book
(``transitions``). :func:`weights_raw` returns :class:`~.profiles.StrategyWeights`; cash earns
``cash_rate_annual`` (pass the backtest's rate for an exact match). Rules in ``docs/notes/report.md``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from alloc_assets.core.market.calendar import rebalance_indices
from alloc_assets.core.portfolio.covariance import first_valid_row, trailing_covariances, trailing_moments
from alloc_assets.core.portfolio.limits import apply_risk_limits, ex_ante_volatility
from alloc_assets.core.portfolio.profiles import DEFAULT_PROFILE, SIGMOID_STEEPNESS, StrategyKind, StrategyProfile, StrategyWeights, VolWeighting, limits_for_universe, sector_ids
from alloc_assets.core.portfolio.risk_parity import erc_weights
from alloc_assets.core.portfolio.transitions import transition_path
from alloc_assets.core.report.metrics import PERIODS_PER_YEAR, daily_rate


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / x.sum(axis=-1, keepdims=True)


def _momentum_weights(returns: np.ndarray, rebalance_idx: np.ndarray, first: int, profile: StrategyProfile) -> tuple[np.ndarray, np.ndarray]:
    """(R, N) momentum weights and (R,) bool "has enough history"."""
    r = np.where(np.isfinite(returns), returns, 0.0)
    r[:first] = 0.0
    log_wealth = np.cumsum(np.log1p(r), axis=0)  # log wealth at each close, relative to the start
    n = returns.shape[1]
    start = rebalance_idx - profile.momentum_lookback
    ready = start >= first - 1
    start_c = np.clip(start, 0, None)
    score = log_wealth[np.clip(rebalance_idx - profile.momentum_skip, 0, None)] - log_wealth[start_c]
    top = max(1, int(np.ceil(profile.momentum_top_fraction * n)))
    order = np.argsort(-score, axis=1, kind="stable")[:, :top]
    w = np.zeros((rebalance_idx.size, n))
    np.put_along_axis(w, order, 1.0 / top, axis=1)
    return w, ready


def _vol_target_weights(cov: np.ndarray, var: np.ndarray, valid: np.ndarray, profile: StrategyProfile) -> np.ndarray:
    vol = np.where(valid, np.sqrt(var * PERIODS_PER_YEAR), np.inf)
    kind = profile.vol_weighting
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if kind is VolWeighting.INVERSE_VOL:
            base = 1.0 / vol
        elif kind is VolWeighting.INVERSE_VOL_SQUARED:
            base = 1.0 / vol**2
        elif kind is VolWeighting.LINEAR_DECAY:
            rank = np.argsort(np.argsort(vol, axis=1, kind="stable"), axis=1, kind="stable")
            base = np.where(valid, vol.shape[1] - rank, 0).astype(np.float64)
        else:
            median = np.nanmedian(np.where(valid, vol, np.nan), axis=1, keepdims=True)
            base = np.where(valid, 1.0 / (1.0 + np.exp(SIGMOID_STEEPNESS * (vol / median - 1.0))), 0.0)
    base = _normalise(base)
    book_vol = ex_ante_volatility(base, cov)
    with np.errstate(divide="ignore"):
        exposure = np.minimum(1.0, profile.target_vol / book_vol)
    return base * exposure[:, None]


def raw_weights(returns: np.ndarray, rebalance_idx: np.ndarray, profile: StrategyProfile) -> np.ndarray:
    """Step 1 only: the profile's raw weights (R, N) at the rebalance rows, before limits.

    Parameters
    ----------
    returns : (T, N) simple daily returns (leading NaN row allowed).
    rebalance_idx : (R,) rebalance rows.
    profile : the strategy profile.
    """
    r = np.asarray(returns, dtype=np.float64)
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    first = first_valid_row(r)
    n = r.shape[1]
    equal = np.full((idx.size, n), 1.0 / n)
    kind = profile.kind
    if kind is StrategyKind.EQUAL_WEIGHT:
        return equal

    def cov_based(window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Ledoit-Wolf covariances, sample variances, shrinkage intensities, rows ready, and names
        with a positive variance (a stale price series has none; such a name gets no weight from
        the covariance-based kinds on that date)."""
        cov, var, n_obs, shrink = trailing_moments(r, idx, window)
        ready = n_obs >= max(profile.min_history, 2)
        cov = np.where(ready[:, None, None], cov, np.eye(n))
        var = np.where(ready[:, None], var, 1.0)
        valid = var > 0
        ready &= valid.any(axis=1)
        valid |= ~ready[:, None]
        shrink = np.where(ready, shrink, 1.0)
        return cov, var, shrink, ready, valid

    if kind is StrategyKind.VOL_TARGET:
        cov, var, _, ready, valid = cov_based(profile.vol_window)
        return np.where(ready[:, None], _vol_target_weights(cov, var, valid, profile), equal)
    if kind is StrategyKind.MOMENTUM:
        w, ready = _momentum_weights(r, idx, first, profile)
        return np.where(ready[:, None], w, equal)
    cov, var, shrink, ready, valid = cov_based(profile.lookback)
    sd = np.sqrt(var)
    if kind is StrategyKind.INVERSE_VOL:
        with np.errstate(divide="ignore"):
            w = _normalise(np.where(valid, 1.0 / sd, 0.0))
    elif kind is StrategyKind.RISK_PARITY:
        w = erc_weights(cov, valid, shrink)
    elif kind is StrategyKind.PERFORMANCE_WEIGHTED:
        means = np.zeros((idx.size, n))
        for k, e in enumerate(idx):
            lo = max(first, e - profile.lookback + 1)
            if e >= lo:
                means[k] = r[lo : e + 1].mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpe = np.where(valid, np.maximum(means / sd * np.sqrt(PERIODS_PER_YEAR), 0.0), 0.0)
        total = sharpe.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(total > 0, sharpe / total, 1.0 / n)
    elif kind is StrategyKind.HYBRID:
        rp = erc_weights(cov, valid, shrink)
        mom, mom_ready = _momentum_weights(r, idx, first, profile)
        mom = np.where(mom_ready[:, None], mom, equal)
        a = profile.hybrid_risk_parity_share
        w = a * rp + (1.0 - a) * mom
    else:  # pragma: no cover - every kind is handled above
        raise ValueError(f"unhandled strategy kind {kind}")
    return np.where(ready[:, None], w, equal)


def weights_raw(
    returns: np.ndarray,
    rebalance_idx: np.ndarray,
    profile: StrategyProfile = DEFAULT_PROFILE,
    sector_id: np.ndarray | None = None,
    cash_rate_annual: float = 0.0,
) -> StrategyWeights:
    """Final (unscaled) targets of a profile: raw weights, risk limits, smooth transition.

    Parameters
    ----------
    returns : (T, N) simple daily returns (``PricePanel.returns()``; a leading NaN row is fine).
    rebalance_idx : (R,) rebalance rows (``rebalance_indices(dates, profile.frequency)``).
    profile : the strategy profile.
    sector_id : (N,) sector codes (:func:`sector_ids`), or None (each name its own sector).
    cash_rate_annual : annual rate of the cash remainder, used only to drift the book between trade
        dates for the ``min_change`` band; pass the backtest's own rate (default 0, the backtest
        settings' default) for the held names to have exactly zero turnover there.

    Returns
    -------
    StrategyWeights (targets at rebalance dates and, when spreading, the daily trade path).
    """
    r = np.asarray(returns, dtype=np.float64)
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    n = r.shape[1]
    sid = np.arange(n) if sector_id is None else np.asarray(sector_id, dtype=np.int64)
    if sid.shape != (n,):
        raise ValueError(f"sector_id shape {sid.shape} != ({n},)")
    fitted, notes = limits_for_universe(profile.limits, n, int(np.unique(sid).size))
    if notes:
        profile = dataclasses.replace(profile, limits=fitted)
    raw = raw_weights(r, idx, profile)
    risk_cov = None
    if profile.limits.max_total_risk is not None and idx.size:
        risk_cov, n_obs = trailing_covariances(r, idx, profile.lookback)
        # too little history to judge risk: no cap (zero covariance gives zero ex-ante vol)
        risk_cov = np.where((n_obs >= max(profile.min_history, 2))[:, None, None], risk_cov, 0.0)
    limited = apply_risk_limits(raw, sid, profile.limits, risk_cov)
    out = transition_path(r, idx, limited, profile.transition, sid, profile.limits, risk_cov,
                           daily_rate(cash_rate_annual, PERIODS_PER_YEAR))
    return dataclasses.replace(out, limits=profile.limits, limit_notes=notes)


def profile_weights(
    panel, profile: StrategyProfile = DEFAULT_PROFILE, cash_rate_annual: float = 0.0
) -> StrategyWeights:
    """:func:`weights_raw` on a :class:`~alloc_assets.core.market.panel.PricePanel` with its own calendar and
    sectors (``cash_rate_annual``: see :func:`weights_raw`)."""
    idx = rebalance_indices(panel.dates, profile.frequency)
    return weights_raw(panel.returns(), idx, profile, sector_ids(panel.symbols, panel.sectors), cash_rate_annual)
