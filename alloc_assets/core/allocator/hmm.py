"""A Gaussian hidden Markov model with diagonal covariances (pure; numpy only, no Dagster import).

Written here rather than taken from a library so that every step is visible and deterministic:

* ``fit_hmm``: Baum-Welch (EM) from a deterministic start (states seeded by quantiles of the first
  feature, the volatility), a fixed iteration cap and a tolerance on the per-observation
  log-likelihood gain; states are then ordered by the mean of the first feature, so state 0 is the
  calmest and labels never swap between refits.
* ``forward_filter`` / ``filter_step``: the forward (filtering) recursion
  ``p_t ∝ (p_{t-1} A) ⊙ N(x_t; mu, var)``: p_t uses observations through t only. The model is never
  smoothed when it produces probabilities for a date; the backward pass exists only inside EM, on
  data before the fit date.

The forward-backward pass inside EM runs over thousands of days per iteration, so it is computed in
blocks (about sqrt(T) blocks of about sqrt(T) days, vectorised across blocks): about 3 sqrt(T)
small numpy steps instead of T. It is exact up to rounding; the reference tests compare it with a
step-by-step recursion and with a brute-force sum over all state paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class HMMParams:
    """Parameters of a K-state HMM with diagonal Gaussian emissions in D dimensions.

    start : (K,) initial state probabilities.
    trans : (K, K) row-stochastic transition matrix, ``trans[i, j] = P(s_t = j | s_{t-1} = i)``.
    means : (K, D) emission means.
    variances : (K, D) emission variances (diagonal covariance).
    """

    start: np.ndarray
    trans: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    @property
    def n_states(self) -> int:
        return self.trans.shape[0]

    def to_dict(self) -> dict:
        """JSON-serialisable form (Python floats round-trip exactly through JSON)."""
        return {
            "start": self.start.tolist(),
            "trans": self.trans.tolist(),
            "means": self.means.tolist(),
            "variances": self.variances.tolist(),
        }

    @staticmethod
    def from_dict(d: dict) -> "HMMParams":
        arr = lambda k: np.asarray(d[k], dtype=np.float64)  # noqa: E731
        return HMMParams(arr("start"), arr("trans"), arr("means"), arr("variances"))


@dataclass(frozen=True)
class FitInfo:
    """How an EM fit ended: iterations run, final log-likelihood (total), whether the tolerance was met."""

    n_iter: int
    log_likelihood: float
    converged: bool
    n_obs: int


def log_emissions(params: HMMParams, x: np.ndarray) -> np.ndarray:
    """Log densities ``log N(x_t; means_k, diag(variances_k))``, shape (T, K) from x of shape (T, D).

    Each row is computed independently of the others (elementwise, then a sum over the D axis), so a
    row gives the same number whether it is evaluated alone or within a long array.
    """
    x = np.asarray(x, dtype=np.float64)
    diff = x[:, None, :] - params.means[None, :, :]
    terms = np.log(params.variances)[None, :, :] + diff * diff / params.variances[None, :, :]
    return -0.5 * (np.add.reduce(terms, axis=2) + x.shape[1] * _LOG_2PI)


def _log_emissions_matmul(params: HMMParams, x: np.ndarray) -> np.ndarray:
    """``log_emissions`` through matrix products (faster; used inside EM only, where rows need not
    be reproducible one at a time)."""
    inv = 1.0 / params.variances  # (K, D)
    quad = (x * x) @ inv.T - 2.0 * (x @ (params.means * inv).T) + np.sum(params.means**2 * inv, axis=1)[None, :]
    return -0.5 * (quad + np.sum(np.log(params.variances), axis=1)[None, :] + x.shape[1] * _LOG_2PI)


def filter_step(params: HMMParams, prev: np.ndarray, log_b: np.ndarray) -> np.ndarray:
    """One forward step: ``p_t ∝ (prev @ trans) * exp(log_b)``; ``log_b`` shape (K,). Returns (K,)."""
    pred = prev @ params.trans
    post = pred * np.exp(log_b - log_b.max())
    return post / post.sum()


def forward_filter(params: HMMParams, x: np.ndarray, prior: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Filtered state probabilities P(s_t | x_1..x_t), shape (T, K), and the log-likelihood.

    ``prior`` is the state distribution the day before ``x[0]`` (then the first step applies a
    transition); None means ``x[0]`` is the first observation and ``params.start`` is its prior.
    Step-by-step reference recursion (used for the regime output and to check the block version).
    """
    log_b = log_emissions(params, x)
    out = np.empty_like(log_b)
    loglik = 0.0
    for t in range(len(log_b)):
        shift = log_b[t].max()
        b = np.exp(log_b[t] - shift)
        pred = params.start if (t == 0 and prior is None) else (prior if t == 0 else out[t - 1]) @ params.trans
        post = pred * b
        c = post.sum()
        loglik += math.log(c) + shift
        out[t] = post / c
    return out, loglik


_RESCALE_EVERY = 4  # steps between rescalings inside _scan: each step shrinks a sum by >= ~1e-6 at worst


def _scan(v0: np.ndarray, mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``v_k ∝ v_{k-1} @ mats[:, k-1]`` for k = 1..m, for S sequences at once, in about sqrt(m) blocks.

    ``v0`` (S, K) sums to 1 by row; ``mats`` (S, m, K, K). Returns the vectors normalised to sum 1,
    shape (S, m, K), and per sequence the log of the total growth ``sum_k log c_k``, where ``c_k`` is
    the sum of ``v_{k-1} @ mats[:, k-1]`` (so for the forward pass it is the log-likelihood).
    """
    s, m, k = mats.shape[0], mats.shape[1], mats.shape[2]
    if m == 0:
        return np.empty((s, 0, k)), np.zeros(s)
    block = max(1, int(math.ceil(math.sqrt(m))))
    n_blocks = -(-m // block)
    pad = n_blocks * block - m
    if pad:  # identity steps at the end change nothing
        mats = np.concatenate([mats, np.broadcast_to(np.eye(k), (s, pad, k, k))], axis=1)
    mats = mats.reshape(s * n_blocks, block, k, k)  # row s * n_blocks + b: block b of sequence s
    # 1. the product of each block's matrices (rescaled now and then: only directions matter)
    prod = mats[:, 0].copy()
    for j in range(1, block):
        prod = prod @ mats[:, j]
        if j % _RESCALE_EVERY == 0:
            prod /= prod.sum(axis=(1, 2), keepdims=True)
    prod = prod.reshape(s, n_blocks, k, k)
    # 2. the normalised vector entering each block, block after block
    starts = np.empty((s, n_blocks, k))
    v = v0[:, None, :]
    for b in range(n_blocks):
        starts[:, b] = v[:, 0]
        v = v @ prod[:, b]
        v = v / v.sum(axis=2, keepdims=True)
    # 3. every step inside the blocks, all blocks at once
    out = np.empty((s * n_blocks, block, k))
    log_growth = np.zeros(s * n_blocks)
    cur = starts.reshape(s * n_blocks, k)
    for j in range(block):
        cur = np.einsum("bi,bij->bj", cur, mats[:, j])
        out[:, j] = cur
        if j % _RESCALE_EVERY == _RESCALE_EVERY - 1:
            total = cur.sum(axis=1)
            cur = cur / total[:, None]
            log_growth += np.log(total)
    log_growth += np.log(cur.sum(axis=1))
    out = out.reshape(s, n_blocks * block, k)[:, :m]
    return out / out.sum(axis=2, keepdims=True), log_growth.reshape(s, n_blocks).sum(axis=1)


def forward_backward(params: HMMParams, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Posterior state probabilities given the whole sample (EM only).

    Returns ``gamma`` (T, K) = P(s_t | x_1..x_T), ``xi_sum`` (K, K) = sum_t P(s_{t-1}=i, s_t=j | x),
    and the log-likelihood.
    """
    log_b = _log_emissions_matmul(params, x)
    shift = log_b.max(axis=1)
    b = np.exp(log_b - shift[:, None])
    n, k = b.shape
    a0 = params.start * b[0]
    c0 = a0.sum()
    alpha0 = a0 / c0
    mats = params.trans[None, :, :] * b[1:, None, :]  # M_t = A diag(b_t), t = 1..T-1
    # forward: alpha_t ∝ alpha_{t-1} M_t; backward: beta_t ∝ M_{t+1} beta_{t+1}, i.e. a forward
    # recursion on the transposed matrices in reverse order. Both run in one blocked scan.
    both = np.stack([mats, np.transpose(mats[::-1], (0, 2, 1))])
    v0 = np.stack([alpha0, np.full(k, 1.0 / k)])
    scanned, log_growth = _scan(v0, both)
    alpha = np.vstack([alpha0[None, :], scanned[0]])
    beta = np.vstack([scanned[1][::-1], np.full((1, k), 1.0 / k)])
    loglik = float(math.log(c0) + log_growth[0] + shift.sum())
    gamma = alpha * beta
    gamma /= gamma.sum(axis=1, keepdims=True)
    u = alpha[:-1]
    v = b[1:] * beta[1:]
    norm = np.add.reduce((u @ params.trans) * v, axis=1)
    xi_sum = params.trans * ((u / norm[:, None]).T @ v)
    return gamma, xi_sum, loglik


def initial_params(x: np.ndarray, quantiles: tuple[float, ...], stay: float, var_floor: np.ndarray) -> HMMParams:
    """Deterministic start: states = groups of days cut at ``quantiles`` of feature 0 (volatility).

    Group k has the days whose feature 0 lies between the (k-1)-th and k-th quantile; its mean and
    variance seed state k. Transitions: ``stay`` on the diagonal, the rest spread evenly.
    """
    k = len(quantiles) + 1
    cuts = np.quantile(x[:, 0], quantiles)
    group = np.searchsorted(cuts, x[:, 0], side="right")
    means = np.empty((k, x.shape[1]))
    variances = np.empty((k, x.shape[1]))
    overall_mean, overall_var = x.mean(axis=0), x.var(axis=0)
    for g in range(k):
        rows = x[group == g]
        if len(rows) >= 2:
            means[g], variances[g] = rows.mean(axis=0), rows.var(axis=0)
        else:  # a tiny sample: spread the state over the overall distribution
            means[g], variances[g] = overall_mean + (g - (k - 1) / 2) * np.sqrt(overall_var), overall_var
    variances = np.maximum(variances, var_floor)
    trans = np.full((k, k), (1.0 - stay) / (k - 1))
    np.fill_diagonal(trans, stay)
    start = np.full(k, 1.0 / k)
    return HMMParams(start, trans, means, variances)


def order_states(params: HMMParams, feature: int = 0) -> HMMParams:
    """The same model with states sorted by the mean of ``feature`` (ascending; ties by index)."""
    order = np.argsort(params.means[:, feature], kind="stable")
    return HMMParams(
        params.start[order], params.trans[np.ix_(order, order)], params.means[order], params.variances[order]
    )


def fit_hmm(
    x: np.ndarray,
    n_states: int = 4,
    max_iter: int = 100,
    tol: float = 1e-6,
    init: HMMParams | None = None,
    init_quantiles: tuple[float, ...] | None = None,
    init_stay: float = 0.98,
    var_floor_fraction: float = 1e-3,
    min_transition: float = 1e-6,
    anchor: np.ndarray | None = None,
    tied: bool = False,
) -> tuple[HMMParams, FitInfo]:
    """Baum-Welch (EM) for a diagonal Gaussian HMM on ``x`` (T, D), states ordered by feature 0.

    Parameters
    ----------
    x : observations, shape (T, D), finite. Feature 0 orders the states (use the volatility).
    n_states : K.
    max_iter : iteration cap; ``tol`` stops earlier when the log-likelihood per observation improves
        by less than ``tol`` in one iteration.
    init : starting parameters (e.g. the previous fit); None starts from ``initial_params`` with
        ``init_quantiles`` (default: evenly spaced quantiles) and ``init_stay``.
    var_floor_fraction : each state's variance is at least this fraction of the sample variance of
        its feature (prevents a state collapsing onto a few days).
    min_transition : every transition probability is at least this (rows renormalised), so the
        filter can always leave a state.
    anchor : optional (K,) increasing values at which the means of feature 0 are held (not
        re-estimated); the other parameters are EM estimates given them.

    Returns
    -------
    ``(params, FitInfo)``; deterministic for given inputs.
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    n, d = x.shape
    if n < 2 * n_states or not np.isfinite(x).all():
        raise ValueError(f"fit_hmm needs at least {2 * n_states} finite observations, got shape {x.shape}")
    var_floor = np.maximum(var_floor_fraction * x.var(axis=0), 1e-12)
    if init is None:
        q = init_quantiles if init_quantiles is not None else tuple(np.arange(1, n_states) / n_states)
        params = initial_params(x, q, init_stay, var_floor)
    else:
        params = init
    if anchor is not None:
        anchor = np.asarray(anchor, dtype=np.float64)
        means0 = params.means.copy()
        means0[:, 0] = anchor
        params = HMMParams(params.start, params.trans, means0, params.variances)
    prev_ll = -math.inf
    converged = False
    it = 0
    ll = -math.inf
    for it in range(1, max_iter + 1):
        gamma, xi_sum, ll = forward_backward(params, x)
        nk = gamma.sum(axis=0)
        safe = np.maximum(nk, 1e-12)
        weighted_mean = (gamma.T @ x) / safe[:, None]
        weighted_sq = (gamma.T @ (x * x)) / safe[:, None]
        means = weighted_mean.copy()
        if anchor is not None:
            means[:, 0] = anchor
        # E[(x - mean)^2] under the state's weights (equals the weighted variance where the mean is free)
        variances = np.maximum(weighted_sq - 2.0 * means * weighted_mean + means * means, 0.0)
        empty = nk < 1e-8  # a state nobody visits keeps its emission parameters
        means[empty], variances[empty] = params.means[empty], params.variances[empty]
        if tied:
            variances = np.broadcast_to((variances * safe[:, None]).sum(axis=0) / safe.sum(), variances.shape).copy()
        variances = np.maximum(variances, var_floor)
        trans = np.maximum(xi_sum / np.maximum(xi_sum.sum(axis=1, keepdims=True), 1e-300), min_transition)
        trans /= trans.sum(axis=1, keepdims=True)
        start = np.maximum(gamma[0], min_transition)
        start /= start.sum()
        params = HMMParams(start, trans, means, variances)
        if (ll - prev_ll) / n < tol:
            converged = True
            break
        prev_ll = ll
    return order_states(params), FitInfo(it, float(ll), converged, n)
