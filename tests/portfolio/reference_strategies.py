"""Reference implementations the strategy tests compare the weights with (not used by the library)."""

from __future__ import annotations

import numpy as np


def risk_contributions(weights: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Fraction of portfolio variance from each name: ``w_i (S w)_i / (w' S w)``, shape of ``weights``."""
    w = np.asarray(weights, dtype=np.float64)
    sw = np.einsum("...ij,...j->...i", cov, w)
    return w * sw / np.sum(w * sw, axis=-1, keepdims=True)


def spread_path(
    rebalance_idx: np.ndarray, targets: np.ndarray, spread_days: int, n_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily target path of changes spread over ``spread_days`` trading days (docs/notes/report.md, step 3):
    the plain linear spread of final targets that ``transitions.transition_path`` follows when no
    name is held by the band.

    Returns
    -------
    trade_idx (M,), trade_target (M, N), trade_source (M,) (row of ``rebalance_idx`` per trade).
    """
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    tgt = np.asarray(targets, dtype=np.float64)
    if spread_days <= 1:
        return idx.copy(), tgt.copy(), np.arange(idx.size)
    nxt = np.append(idx[1:], n_days)
    days, rows, src = [], [], []
    position = np.zeros(tgt.shape[1])
    for k, r in enumerate(idx):
        steps = int(min(spread_days, nxt[k] - r))
        frac = np.arange(1, steps + 1)[:, None] / spread_days
        path = position + frac * (tgt[k] - position)
        days.append(r + np.arange(steps))
        rows.append(path)
        src.append(np.full(steps, k))
        position = path[-1]
    return np.concatenate(days), np.concatenate(rows), np.concatenate(src)
