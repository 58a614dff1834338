"""Equal risk contribution, solved exactly (pure; numpy only).

Damped Newton on Spinu's convex formulation ``min 0.5 x' S x - sum b_i log x_i`` (``w = x / sum x``),
batched over a leading axis so one call solves every rebalance date, or 10,000 sleeves, at once.
It needs ``S`` positive definite on the names with variance; where the Ledoit-Wolf intensity is 0
and the sample covariance is singular, the date takes the ERC of the diagonal (inverse volatility).
"""

from __future__ import annotations

import numpy as np


def _spinu_objective(cov: np.ndarray, budgets: np.ndarray, x: np.ndarray) -> np.ndarray:
    cx = (cov @ x[..., None])[..., 0]
    return 0.5 * np.sum(x * cx, axis=1) - np.sum(budgets * np.log(x), axis=1)


def risk_parity_weights(
    cov: np.ndarray,
    mask: np.ndarray | None = None,
    budgets: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 60,
) -> np.ndarray:
    """Equal (or budgeted) risk contribution weights, batched over leading axes.

    Solves Spinu's convex problem ``min_x 0.5 x' S x - sum_i b_i log x_i`` (self-concordant) by
    Newton's method: while the Newton decrement ``lambda`` exceeds 0.5, the full step is taken if it
    stays positive and decreases the objective by ``lambda**2 / 4``, else the damped step
    ``1 / (1 + lambda)`` (always feasible and decreasing); full steps after. It stops per problem once ``max_i |x_i (S x)_i - b_i| / b_i < tol``, which
    is the relative error of the risk contributions. ``w = x / sum x``.

    Parameters
    ----------
    cov : (..., N, N) covariance matrices, positive definite on the masked names with a positive
        variance (the Ledoit-Wolf estimate of :func:`trailing_covariances` is, whenever its
        intensity is positive; a singular sample covariance may have no solution).
    mask : (..., N) bool, names in each universe (default all); others get weight 0 and the
        solution on the rest is exactly the risk parity of the sub-universe.
        A name of the universe with **zero variance** (a stale price) has no risk to equalise: it
        leaves the universe with weight 0 (its covariances must then be 0 too, as in any covariance
        matrix). A universe whose names all have zero variance gets equal weights: every risk
        contribution is 0 whatever the weights, so they are all equal.
    budgets : (..., N) positive risk budgets (default equal).
    tol, max_iter : convergence tolerance and iteration cap (a RuntimeError when not converged;
        a non-finite residual counts as not converged).

    Returns
    -------
    (..., N) weights summing to 1.
    """
    c = np.asarray(cov, dtype=np.float64)
    n = c.shape[-1]
    batch = c.shape[:-2]
    c = c.reshape(-1, n, n)
    nb = c.shape[0]
    m = np.ones((nb, n), dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), (*batch, n)).reshape(nb, n)
    if not m.any(axis=1).all():
        raise ValueError("risk parity: every universe needs at least one name")
    b = np.ones((nb, n)) if budgets is None else np.broadcast_to(np.asarray(budgets, dtype=np.float64), (*batch, n)).reshape(nb, n).copy()
    b = np.where(m, b, 1.0)
    if np.any(b <= 0):
        raise ValueError("risk budgets must be positive")
    zero_var = m & (np.einsum("bii->bi", c) == 0)
    if zero_var.any():  # zero-variance names leave the universe (weight 0); see ``mask`` above
        live = m & ~zero_var
        none_live = ~live.any(axis=1)
        if none_live.any():  # only zero-variance names: equal weight (ERC of the identity, equal budgets)
            c = c.copy()
            c[none_live] = np.eye(n)
            b[none_live] = 1.0
        m = np.where(none_live[:, None], m, live)
    if m.all():
        cm = c
    else:  # decouple names outside the universe: unit variance, no covariance
        cm = np.where(m[:, :, None] & m[:, None, :], c, 0.0)
        out = ~m
        cm[:, np.arange(n), np.arange(n)] += out
    diag = np.einsum("bii->bi", cm)
    if not np.all(np.isfinite(cm)) or np.any(diag <= 0):
        raise ValueError("risk parity needs finite covariances with positive variances on every name in the universe")

    v = 1.0 / np.sqrt(diag)
    # start from inverse volatility scaled onto the optimum's scale (x' S x = sum b); a warm start
    # from the previous targets was tried and is slower: limits and a new covariance put it farther
    # from the solution than this start is
    quad = np.einsum("bi,bij,bj->b", v, cm, v)
    x = v * np.sqrt(b.sum(axis=1) / quad)[:, None]
    # work on compact copies of the unconverged problems; re-gather only when some converge
    active = np.arange(nb)
    xa, ca, ba = x, cm, b
    diag_idx = np.arange(n)
    for _ in range(max_iter):
        cx = (ca @ xa[..., None])[..., 0]
        resid = np.max(np.abs(xa * cx - ba) / ba, axis=1)
        keep = ~(resid < tol)  # NaN is not converged
        if not keep.all():
            x[active] = xa
            if not keep.any():
                active = active[:0]
                break
            active, xa, ca, ba, cx = active[keep], xa[keep], ca[keep], ba[keep], cx[keep]
        grad = cx - ba / xa
        hess = ca.copy()
        hess[:, diag_idx, diag_idx] += ba / xa**2
        dx = -np.linalg.solve(hess, grad[..., None])[..., 0]
        lam2 = np.maximum(-np.sum(grad * dx, axis=1), 0.0)
        lam = np.sqrt(lam2)
        full = xa + dx
        far = lam > 0.5
        if far.any():
            # far from the optimum take the full step only if it stays positive and decreases the
            # objective by a quarter of the decrement; otherwise the guaranteed damped step
            positive = np.all(full > 0, axis=1)
            f_full = _spinu_objective(ca, ba, np.where(positive[:, None], full, xa))
            ok = far & positive & (f_full <= _spinu_objective(ca, ba, xa) - 0.25 * lam2)
            step = np.where(far & ~ok, 1.0 / (1.0 + lam), 1.0)
            xa = xa + step[:, None] * dx
        else:
            xa = full
    if active.size:
        raise RuntimeError(f"risk parity did not converge for {active.size} problem(s) in {max_iter} iterations")
    w = np.where(m, x, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    return w.reshape(*batch, n)


# below this Ledoit-Wolf intensity a covariance is checked for singularity before the ERC solve
_SHRINK_CHECK = 1e-10


# smallest eigenvalue of the correlation matrix (names with variance) below which it is singular
_SINGULAR_EIG = 1e-10


def erc_weights(cov: np.ndarray, valid: np.ndarray, shrink: np.ndarray) -> np.ndarray:
    """ERC of the names with variance, (R, N). With a positive Ledoit-Wolf intensity the covariance
    is positive definite. Where the intensity is (about) 0 (degenerate windows only: every name's
    centred return has the same size every day) it is the sample covariance, which may be singular
    along a long-only portfolio, and then no ERC exists: such a date takes the ERC of the diagonal,
    i.e. inverse volatility."""
    check = np.flatnonzero(shrink < _SHRINK_CHECK)
    if check.size:
        c = cov[check]
        v = valid[check]
        sd = np.sqrt(np.where(v, np.einsum("rii->ri", c), 1.0))
        corr = np.where(v[:, :, None] & v[:, None, :], c / sd[:, :, None] / sd[:, None, :], 0.0)
        corr[:, np.arange(c.shape[1]), np.arange(c.shape[1])] = 1.0
        singular = check[np.linalg.eigvalsh(corr)[:, 0] < _SINGULAR_EIG]
        if singular.size:
            cov = cov.copy()
            cov[singular] = np.einsum("rii,ij->rij", cov[singular], np.eye(cov.shape[1]))
    return risk_parity_weights(cov, mask=valid)
