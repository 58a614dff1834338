"""Trailing covariances of the strategy layer (pure; numpy only).

Covariances are Ledoit-Wolf shrunk (scikit-learn's ``LedoitWolf`` with its defaults, computed here
batched over rebalance dates); single-name variances are the sample ones (``ddof=1``). Only returns
of rows up to and including each end row enter (causal). A name with zero variance in a window is
left out of that window's estimate.
"""

from __future__ import annotations

import numpy as np


def first_valid_row(returns: np.ndarray) -> int:
    finite = np.all(np.isfinite(returns), axis=1)
    if not finite.any():
        raise ValueError("returns have no finite row")
    first = int(np.argmax(finite))
    if not finite[first:].all():
        bad = first + int(np.argmin(finite[first:]))
        raise ValueError(f"returns must be finite after row {first}; row {bad} has NaN/inf")
    return first


# values per chunk of the batched covariance estimate: the (B, window, N) working copies stay
# small enough to be reused from cache (2M values per chunk was 1.8x slower on the bundled data)
_COV_CHUNK_VALUES = 150_000


def trailing_moments(
    returns: np.ndarray, end_idx: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ledoit-Wolf covariances, sample variances, rows used and shrinkage intensities of the trailing
    windows (rules in :func:`trailing_covariances`).

    Returns
    -------
    cov : (R, N, N) Ledoit-Wolf covariances (NaN where fewer than 2 rows).
    var : (R, N) sample variances (``ddof=1``), exactly 0 for a name whose return is constant over
        the window (NaN where fewer than 2 rows).
    n_obs : (R,) rows used.
    shrinkage : (R,) Ledoit-Wolf intensity in [0, 1] (NaN where fewer than 2 rows).
    """
    r = np.asarray(returns, dtype=np.float64)
    first = first_valid_row(r)
    end_idx = np.asarray(end_idx, dtype=np.int64)
    n_win, n = end_idx.size, r.shape[1]
    cov = np.full((n_win, n, n), np.nan)
    var = np.full((n_win, n), np.nan)
    shrink = np.full(n_win, np.nan)
    lo = np.maximum(first, end_idx - window + 1)
    n_obs = np.maximum(end_idx - lo + 1, 0)
    diag = np.arange(n)
    # a name is constant over rows lo..e when its return never changes from one row to the next:
    # count the changes once (prefix sums) instead of comparing every window's rows
    changes = np.zeros((r.shape[0], n), dtype=np.int32)
    changes[first + 1 :] = np.cumsum(r[first + 1 :] != r[first:-1], axis=0, dtype=np.int32)
    # windows of equal length are estimated together (all but the first few have the full length)
    for length in np.unique(n_obs[n_obs >= 2]):
        rows = np.flatnonzero(n_obs == length)
        step = max(1, _COV_CHUNK_VALUES // (int(length) * max(n, 1)))
        for c0 in range(0, rows.size, step):
            k = rows[c0 : c0 + step]
            x = r[lo[k, None] + np.arange(length)]  # (B, L, N), each window's rows in time order
            const = changes[end_idx[k]] == changes[lo[k]]  # (B, N) the same return every day: zero variance
            xc = x - x.mean(axis=1, keepdims=True)
            if const.any():
                xc *= ~const[:, None, :]
            gram = np.matmul(xc.transpose(0, 2, 1), xc)  # (B, N, N)
            # contiguous (B, N) so that the reductions below add in the same order whatever B is:
            # a window's estimate does not depend on the other windows of its batch, to the last bit
            gdiag = np.ascontiguousarray(np.einsum("bii->bi", gram))
            var[k] = gdiag / (length - 1)
            emp = gram / length  # centred maximum-likelihood covariance (scikit-learn's empirical_covariance)
            p = np.sum(~const, axis=1)  # names with variance: the estimate is theirs alone
            trace = gdiag.sum(axis=1) / length
            with np.errstate(divide="ignore", invalid="ignore"):
                mu = np.where(p > 0, trace / p, 0.0)
                # Ledoit and Wolf (2004), as in sklearn.covariance.ledoit_wolf_shrinkage:
                # beta_ = sum_ij <x_i^2, x_j^2> = sum_t (sum_i x_ti^2)^2, delta_ = ||emp||_F^2
                beta_ = np.sum(np.einsum("bti,bti->bt", xc, xc) ** 2, axis=1)
                delta_ = np.sum(emp * emp, axis=(1, 2))
                beta = (beta_ / length - delta_) / (p * length)
                delta = (delta_ - 2.0 * mu * trace + p * mu**2) / p
                s = np.where((p > 1) & (delta > 0), np.minimum(beta, delta) / delta, 0.0)
            s = np.clip(s, 0.0, 1.0)
            out = emp * (1.0 - s)[:, None, None]
            out[:, diag, diag] += (s * mu)[:, None] * ~const
            cov[k] = out
            shrink[k] = s
    return cov, var, n_obs, shrink


def trailing_covariances(returns: np.ndarray, end_idx: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Ledoit-Wolf shrunk covariances of the ``window`` returns up to and including each end row.

    The estimator is scikit-learn's ``sklearn.covariance.LedoitWolf()`` (defaults) fitted on the
    window's rows, computed here in batched numpy (the tests compare it with scikit-learn to 1e-12):
    returns are **centred** on the window mean (``assume_centered=False``), the empirical covariance
    ``S`` divides by the number of rows (maximum likelihood, not ``ddof=1``), and the estimate is
    ``(1 - d) S + d mu I`` with ``mu = trace(S) / p`` and Ledoit and Wolf's (2004) intensity ``d``
    in [0, 1]. It is positive definite whenever ``d > 0``, also with more names than rows.

    A name whose return is the same on every row of the window (zero variance, e.g. a stale price)
    is left out of the estimate: its row and column are exactly 0 and ``p``, ``mu``, ``d`` are those
    of the other names (their block equals ``LedoitWolf`` fitted on their columns alone).

    Parameters
    ----------
    returns : (T, N) daily returns; leading non-finite rows (row 0 of ``PricePanel.returns()``)
        are skipped, later ones are an error.
    end_idx : (R,) end rows (rebalance dates).
    window : number of rows in a full window; early windows are shorter.

    Returns
    -------
    cov : (R, N, N) daily covariances (NaN where fewer than 2 rows).
    n_obs : (R,) rows used.
    """
    cov, _, n_obs, _ = trailing_moments(returns, end_idx, window)
    return cov, n_obs
