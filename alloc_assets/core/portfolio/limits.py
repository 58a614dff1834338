"""Risk limits on target weights (pure; numpy only).

:func:`apply_risk_limits` cuts names above ``max_weight`` and scales sectors above
``max_sector_weight``, redistributing the cut pro rata to the names neither capped nor in a capped
sector until nothing is breached (what cannot be placed goes to cash), then scales the whole book
down to ``max_total_risk`` (annualised ex-ante volatility ``sqrt(252 w' S w)``).
:func:`clip_to_limits` cuts every breach to cash without redistribution. Batched over leading axes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from alloc_assets.core.portfolio.profiles import RiskLimits
from alloc_assets.core.report.metrics import PERIODS_PER_YEAR


_EPS = 1e-12


def sector_onehot(sector_id: np.ndarray) -> np.ndarray:
    sid = np.asarray(sector_id, dtype=np.int64)
    onehot = np.zeros((sid.size, int(sid.max()) + 1 if sid.size else 0))
    onehot[np.arange(sid.size), sid] = 1.0
    return onehot


def ex_ante_volatility(weights: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Annualised ex-ante volatility ``sqrt(252 w' S w)`` of each book, shape ``weights.shape[:-1]``."""
    var = np.einsum("...i,...ij,...j->...", weights, cov, weights)
    return np.sqrt(np.maximum(var, 0.0) * PERIODS_PER_YEAR)


def _cap_total_risk(w: np.ndarray, cov: np.ndarray | None, max_total_risk: float | None) -> np.ndarray:
    if max_total_risk is None or cov is None:
        return w
    vol = ex_ante_volatility(w, cov)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(vol > max_total_risk, max_total_risk / vol, 1.0)
    return w * factor[..., None]


def clip_to_limits(weights: np.ndarray, sector_id: np.ndarray, limits: RiskLimits, cov: np.ndarray | None = None) -> np.ndarray:
    """Cut every breach **to cash** (no redistribution): names to ``max_weight``, sectors scaled to
    ``max_sector_weight``, then the whole book to ``max_total_risk``. Batched over leading axes."""
    onehot = None if limits.max_sector_weight is None else sector_onehot(sector_id)
    return clip_with_onehot(np.array(weights, dtype=np.float64), onehot, limits, cov)


def clip_with_onehot(w: np.ndarray, onehot: np.ndarray | None, limits: RiskLimits, cov: np.ndarray | None) -> np.ndarray:
    """:func:`clip_to_limits` with the sector one-hot matrix given (None when there is no sector cap)."""
    if limits.max_weight is not None:
        w = np.minimum(w, limits.max_weight)
    if limits.max_sector_weight is not None:
        tot = w @ onehot
        over = tot > limits.max_sector_weight
        if over.any():
            factor = np.ones_like(tot)
            np.divide(limits.max_sector_weight, tot, out=factor, where=over)
            w = w * (factor @ onehot.T)
    return _cap_total_risk(w, cov, limits.max_total_risk)


def apply_risk_limits(weights: np.ndarray, sector_id: np.ndarray, limits: RiskLimits, cov: np.ndarray | None = None) -> np.ndarray:
    """Enforce :class:`RiskLimits`, redistributing capped weight pro rata to the uncapped names.

    Batched: ``weights`` (..., N), ``cov`` (..., N, N) or None (then ``max_total_risk`` is not
    checked). Each round cuts names above ``max_weight`` and scales sectors above
    ``max_sector_weight``, freezes them (and every name of a capped sector), and hands the cut to the
    other names holding weight, pro rata; at most N + sectors rounds. What no eligible name can take
    stays in cash. Finally the book is scaled down to ``max_total_risk`` (to cash).

    Returns
    -------
    (..., N) weights within the limits, summing to at most the input's sum.
    """
    w0 = np.asarray(weights, dtype=np.float64)
    shape = w0.shape
    n = shape[-1]
    w = w0.reshape(-1, n).copy()
    onehot = sector_onehot(sector_id)
    sid = np.asarray(sector_id, dtype=np.int64)
    budget = w.sum(axis=1)
    frozen = np.zeros_like(w, dtype=bool)
    max_w = np.inf if limits.max_weight is None else limits.max_weight
    max_s = np.inf if limits.max_sector_weight is None else limits.max_sector_weight
    for _ in range(n + onehot.shape[1] + 2):
        over_name = w > max_w + _EPS
        sec_tot = w @ onehot
        over_sec = sec_tot > max_s + _EPS
        if not (over_name.any() or over_sec.any()):
            break
        w = np.where(over_name, max_w, w)
        sec_tot = w @ onehot
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(sec_tot > max_s, max_s / sec_tot, 1.0)
        w = w * factor[:, sid]
        sec_tot = w @ onehot
        frozen |= (w >= max_w - _EPS) | (sec_tot >= max_s - _EPS)[:, sid]
        excess = budget - w.sum(axis=1)
        free = ~frozen & (w > 0)
        free_tot = np.sum(np.where(free, w, 0.0), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            grow = np.where(free_tot > 0, excess / free_tot, 0.0)
        w = np.where(free, w * (1.0 + grow[:, None]), w)
    # remove residual breaches of order _EPS exactly (to cash)
    w = clip_to_limits(w, sid, replace(limits, max_total_risk=None))
    w = w.reshape(shape)
    return _cap_total_risk(w, cov, limits.max_total_risk)
