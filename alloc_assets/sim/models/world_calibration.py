"""Estimating a ``WorldModel`` from history and reading it under regime probabilities.

:func:`calibrate_world_model` takes daily log returns and a daily regime label series: either
:func:`realised_vol_labels` (causal expanding-window quantiles of the equal-weight index's realised
volatility, independent of the allocator: the simulation assets' default) or the pipeline's
``regime_series`` (the allocator's own labels, which flatters it). :func:`regime_weighted_covariance`
is the covariance a strategy expects given the regime probabilities, ``Sigma_t = sum_k P(k | z_t) Sigma_k``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from alloc_assets.sim.models.world import N_REGIMES, WorldModel

def calibrate_world_model(
    returns: np.ndarray,
    labels: np.ndarray,
    n_regimes: int = N_REGIMES,
    p0: np.ndarray | None = None,
    min_days: int | None = None,
    ridge: float = 1e-10,
) -> WorldModel:
    """Estimate a regime-switching model from daily log returns and a daily regime label series.

    Parameters
    ----------
    returns : (T, N) daily log returns (rows with any non-finite value are dropped, with their label).
    labels : (T,) integer regime of each day (0 = NORMAL .. n_regimes - 1 = CRISIS), aligned with
        ``returns``; e.g. ``RegimeFrame.label`` of the pipeline.
    n_regimes : K.
    p0 : (K,) probabilities of today's regime; default: the label of the last day (one-hot).
    min_days : a regime seen on fewer days has its covariance shrunk towards the pooled one,
        ``(n_k S_k + m S) / (n_k + m)`` with ``m = min_days - n_k``; default ``2 N + 2``.
    ridge : added to the diagonal of every covariance (numerical safety of the Cholesky factor).

    Returns
    -------
    ``WorldModel`` (float64 arrays). The transition matrix is the maximum-likelihood estimate from
    consecutive label pairs (counts / row sums); a regime never left (or never seen) keeps itself
    with probability 1. Means and covariances (``ddof=1``) are those of the days with each label; a
    regime never seen gets the pooled moments.
    """
    r = np.asarray(returns, dtype=np.float64)
    lab = np.asarray(labels).astype(np.int64)
    if r.ndim != 2 or lab.shape != (r.shape[0],):
        raise ValueError(f"returns must be (T, N) and labels (T,); got {r.shape} and {lab.shape}")
    if np.any((lab < 0) | (lab >= n_regimes)):
        raise ValueError(f"labels must lie in [0, {n_regimes})")
    ok = np.all(np.isfinite(r), axis=1)
    counts = np.zeros((n_regimes, n_regimes))
    pair_ok = ok[1:] & ok[:-1]
    np.add.at(counts, (lab[:-1][pair_ok], lab[1:][pair_ok]), 1.0)
    r, lab_ok = r[ok], lab[ok]
    t, n = r.shape
    if t < 2:
        raise ValueError("need at least two finite return rows to calibrate")
    rows = counts.sum(axis=1, keepdims=True)
    transition = np.where(rows > 0, counts / np.where(rows > 0, rows, 1.0), np.eye(n_regimes))
    pooled_mean = r.mean(axis=0)
    pooled_cov = np.cov(r, rowvar=False, ddof=1).reshape(n, n)
    min_days = 2 * n + 2 if min_days is None else int(min_days)
    means = np.empty((n_regimes, n))
    covs = np.empty((n_regimes, n, n))
    for k in range(n_regimes):
        x = r[lab_ok == k]
        nk = x.shape[0]
        means[k] = x.mean(axis=0) if nk else pooled_mean
        s = np.cov(x, rowvar=False, ddof=1).reshape(n, n) if nk > 1 else pooled_cov
        if nk < min_days:
            m = min_days - nk
            s = (nk * s + m * pooled_cov) / (nk + m)
        covs[k] = s + ridge * np.eye(n)
    if p0 is None:
        p0 = np.eye(n_regimes)[lab[-1]]
    return WorldModel.create(transition, means, covs, p0=p0)


def regime_weighted_covariance(world: WorldModel, probs: jax.Array) -> jax.Array:
    """``Sigma_t = sum_k P(k | z_t) Sigma_k``: (K, B) probabilities -> (N, N, B) daily covariances."""
    covs = jnp.einsum("kij,klj->kil", world.chol, world.chol)
    return jnp.einsum("kij,kb->ijb", covs, probs)


def regime_weighted_variances(world: WorldModel, probs: jax.Array) -> jax.Array:
    """Diagonal of :func:`regime_weighted_covariance`: (K, B) -> (N, B) daily variances."""
    var = jnp.sum(world.chol**2, axis=2)  # (K, N)
    return var.T @ probs


def realised_vol_labels(
    log_returns: np.ndarray,
    window: int = 21,
    min_history: int = 252,
    cuts: tuple[float, ...] = (0.5, 0.8, 0.95),
) -> np.ndarray:
    """Regime labels that do not come from the allocator: causal quantiles of realised volatility.

    The equal-weight (daily rebalanced) index of the assets has the daily simple return
    ``R_t = mean_i(exp(r_ti) - 1)``; its realised volatility on day ``t`` is the standard deviation
    (``ddof=1``) of ``R`` over the ``window`` days ending on ``t`` (known at day ``t``'s close). Day
    ``t``'s label is the number of ``cuts`` quantiles of the volatilities of days ``<= t`` (an
    expanding window: no look-ahead; NumPy's default linear interpolation) that its volatility
    exceeds: 0 = NORMAL (at most the median by default), 1 = ELEVATED (to the 80th percentile),
    2 = STRESS (to the 95th), 3 = CRISIS (above). So the world model calibrated on these labels
    switches where the index's volatility does, not where the allocator's score does.

    Parameters
    ----------
    log_returns : (T, N) daily log returns (a row with a non-finite value gives the windows that
        contain it no volatility).
    window : days of each realised volatility.
    min_history : volatilities needed before the first label (earlier days: -1, unlabelled).
    cuts : increasing quantile levels in (0, 1), ``len(cuts) + 1`` labels.

    Returns
    -------
    (T,) int64 labels, -1 where unlabelled (warm-up or no volatility). Appending days never changes
    an earlier label.
    """
    r = np.asarray(log_returns, dtype=np.float64)
    if r.ndim == 1:
        r = r[:, None]
    cuts = tuple(float(c) for c in cuts)
    if window < 2 or min_history < 1 or any(not 0 < c < 1 for c in cuts) or list(cuts) != sorted(cuts):
        raise ValueError("window >= 2, min_history >= 1 and increasing cuts in (0, 1) are required")
    t = r.shape[0]
    index = np.mean(np.expm1(r), axis=1)  # NaN where any asset is missing
    labels = np.full(t, -1, dtype=np.int64)
    if t < window:
        return labels
    vol = np.full(t, np.nan)
    vol[window - 1 :] = np.std(np.lib.stride_tricks.sliding_window_view(index, window), axis=1, ddof=1)
    import bisect

    seen: list[float] = []  # the volatilities of days <= t, sorted
    for day in range(t):
        v = vol[day]
        if not np.isfinite(v):
            continue
        bisect.insort(seen, float(v))
        m = len(seen)
        if m < min_history:
            continue
        level = 0
        for c in cuts:  # np.quantile's linear interpolation between order statistics
            pos = c * (m - 1)
            lo = int(math.floor(pos))
            hi = min(lo + 1, m - 1)
            level += int(v > seen[lo] + (pos - lo) * (seen[hi] - seen[lo]))
        labels[day] = level
    return labels
