"""Strategy sleeves reallocated together (pure; numpy only).

:func:`sleeve_inputs` prepares, once, the trailing covariances and the limits a batch of sleeves
shares; :func:`reallocate_sleeves` solves the ERC targets of every sleeve at once, applies the risk
limits and the smooth transition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alloc_assets.core.portfolio.covariance import trailing_covariances
from alloc_assets.core.portfolio.limits import apply_risk_limits
from alloc_assets.core.portfolio.profiles import RiskLimits, Transition
from alloc_assets.core.portfolio.risk_parity import risk_parity_weights
from alloc_assets.core.portfolio.transitions import smooth_transition


@dataclass(frozen=True)
class SleeveInputs:
    """Inputs of :func:`reallocate_sleeves` for S sleeves over one N-name universe.

    cov : (C, N, N) distinct covariance matrices; cov_index : (S,) which one each sleeve uses;
    universe : (S, N) bool, the names each sleeve may hold; prev : (S, N) current targets.
    """

    cov: np.ndarray
    cov_index: np.ndarray
    universe: np.ndarray
    prev: np.ndarray


def reallocate_sleeves(
    cov: np.ndarray,
    universe: np.ndarray | None,
    prev: np.ndarray | None,
    sector_id: np.ndarray,
    limits: RiskLimits = RiskLimits(),
    transition: Transition = Transition(),
    cov_index: np.ndarray | None = None,
) -> np.ndarray:
    """New targets of many risk-parity sleeves at once (the ``reallocation_10000_strategies`` core).

    Per sleeve: risk parity on its own universe and covariance (batched Newton), risk limits with
    redistribution, then one smooth-transition step from ``prev`` (max change, min-change threshold,
    limits re-checked to cash). Spreading over days does not apply to a single step.

    Parameters
    ----------
    cov : (S, N, N) covariances, or (C, N, N) with ``cov_index`` (S,) picking one per sleeve.
    universe : (S, N) bool names each sleeve may hold, or None (all).
    prev : (S, N) current targets, or None (from cash).
    sector_id : (N,) sector codes.

    Returns
    -------
    (S, N) targets.
    """
    c = np.asarray(cov, dtype=np.float64)
    if cov_index is not None:
        c = c[np.asarray(cov_index)]
    s, n = c.shape[0], c.shape[-1]
    p = np.zeros((s, n)) if prev is None else np.asarray(prev, dtype=np.float64)
    w = risk_parity_weights(c, mask=universe)
    w = apply_risk_limits(w, sector_id, limits, c)
    return smooth_transition(p, w, transition, sector_id, limits, c)


def sleeve_inputs(
    returns: np.ndarray,
    rebalance_idx: np.ndarray,
    sector_id: np.ndarray,
    n_sleeves: int = 10_000,
    lookback: int = 126,
    min_names: int = 8,
    seed: int = 0,
    limits: RiskLimits = RiskLimits(),
) -> SleeveInputs:
    """A reproducible set of sleeves from real history: each sleeve draws a universe of
    ``min_names..N`` names and a rebalance date, and starts from the risk-parity targets of the
    same universe at the previous rebalance date (so the transition rules have work to do)."""
    rng = np.random.default_rng(seed)
    r = np.asarray(returns, dtype=np.float64)
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    idx = idx[idx >= lookback]
    cov, _ = trailing_covariances(r, idx, lookback)
    n = r.shape[1]
    size = rng.integers(min_names, n + 1, size=n_sleeves)
    keys = rng.random((n_sleeves, n))
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    universe = rank < size[:, None]
    cov_index = rng.integers(1, idx.size, size=n_sleeves)
    prev = reallocate_sleeves(cov, universe, None, sector_id, limits, Transition(min_change=0.0), cov_index - 1)
    return SleeveInputs(cov=cov, cov_index=cov_index, universe=universe, prev=prev)
