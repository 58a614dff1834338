"""Mean block length of the stationary bootstrap (pure; numpy only).

Default: ``max(5, ceil(b_sb))`` with ``b_sb`` the Politis-White (2004; Patton, Politis and White
2009 correction) optimal stationary-bootstrap block length, as
``arch.bootstrap.optimal_block_length(...)["stationary"]`` computes it, reproduced in numpy (importing
``arch`` costs seconds in each fresh run process; the tests compare the two); 5 when the estimate
is undefined (a constant series).
"""

from __future__ import annotations

import math

import numpy as np


MIN_DEFAULT_BLOCK_LENGTH = 5



def politis_white_block_length(x: np.ndarray) -> float:
    """Politis-White (2004) optimal mean block length of the stationary bootstrap, with the
    Patton-Politis-White (2009) correction: the algorithm of ``arch.bootstrap.optimal_block_length``
    (column ``stationary``) line for line, in numpy (``arch`` costs seconds of import, numba
    included, in every fresh run process; tests compare the two to rounding).

    ``m`` is the first lag where ``k_n = max(5, int(log10 n))`` consecutive autocorrelations are all
    inside ``+-2 sqrt(log10(n) / n)``, doubled (at least 2), capped at ``ceil(sqrt n) + k_n``; with a
    flat-top lag window ``g = sum 2 lambda_k k acv_k``, ``G = acv_0 + sum 2 lambda_k acv_k``, the block
    length is ``(2 g^2 / (2 G^2))^(1/3) n^(1/3)``, at most ``ceil(min(3 sqrt n, n / 3))``.
    """
    x = np.asarray(x, dtype=np.float64)
    nobs = x.shape[0]
    eps = x - x.mean(0)
    b_max = np.ceil(min(3 * np.sqrt(nobs), nobs / 3))
    kn = max(5, int(np.log10(nobs)))
    m_max = int(np.ceil(np.sqrt(nobs))) + kn
    cv = 2 * np.sqrt(np.log10(nobs) / nobs)
    acv = np.zeros(m_max + 1)
    abs_acorr = np.zeros(m_max + 1)
    opt_m: int | None = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(m_max + 1):
            v1 = eps[i + 1:] @ eps[i + 1:]
            v2 = eps[: -(i + 1)] @ eps[: -(i + 1)]
            cross_prod = eps[i:] @ eps[: nobs - i]
            acv[i] = cross_prod / nobs
            abs_acorr[i] = np.abs(cross_prod) / np.sqrt(v1 * v2)
            if i >= kn and opt_m is None and np.all(abs_acorr[i - kn: i] < cv):
                opt_m = i - kn
        m = 2 * max(opt_m, 1) if opt_m is not None else m_max
        m = min(m, m_max)
        g = 0.0
        lr_acv = acv[0]
        for k in range(1, m + 1):
            lam = 1 if k / m <= 1 / 2 else 2 * (1 - k / m)
            g += 2 * lam * k * acv[k]
            lr_acv += 2 * lam * acv[k]
        d_sb = 2 * lr_acv**2
        b_sb = ((2 * g**2) / d_sb) ** (1 / 3) * nobs ** (1 / 3)
    return float(min(b_sb, b_max))



def default_block_length(returns: np.ndarray) -> int:
    """Default mean block length: ``max(5, ceil(b_sb))``, ``b_sb`` the Politis-White estimate.

    ``b_sb`` is :func:`politis_white_block_length` (equal to
    ``arch.bootstrap.optimal_block_length(returns)["stationary"]``); when it is undefined (``nan``,
    e.g. a constant series) the result is 5.

    Parameters
    ----------
    returns : array (T,), daily returns (the first book's in :func:`bootstrap_deltas`).

    Returns
    -------
    int, at least 5.
    """
    b = politis_white_block_length(np.asarray(returns, dtype=np.float64))
    if not math.isfinite(b):
        return MIN_DEFAULT_BLOCK_LENGTH
    return max(MIN_DEFAULT_BLOCK_LENGTH, int(math.ceil(b)))
