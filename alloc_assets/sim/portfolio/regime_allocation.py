"""Regime-aware allocation from the world model's regime-conditional moments (pure NumPy/SciPy).

Given the calibrated ``WorldModel`` and today's regime probabilities ``p``: the annualised
per-regime covariances ``252 Sigma_k`` and their long-only minimum-variance optima (SLSQP polished
by an exact KKT solve; minimum variance because the regime means of STRESS and CRISIS are too
noisy for mean-variance), the exact mixture covariance ``Sigma_t`` (within-regime plus the
between-regime mean term), the blended weights (``sum_k p_k w*_k`` and the optimum of ``Sigma_t``)
and the early-warning hedge ratio ``h = min(1, 1.5 (p_STRESS + p_CRISIS))``. Formulas and reasons
in docs/notes/simulation.md ("Regime-aware allocation").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alloc_assets.core.regime import REGIME_LABELS
from alloc_assets.sim.models.world import TRADING_DAYS_PER_YEAR
from alloc_assets.sim.portfolio.resilience import check_bounds

REGIMES: tuple[str, ...] = REGIME_LABELS
STRESSED: tuple[int, ...] = (2, 3)  # STRESS, CRISIS
HEDGE_MULTIPLIER = 1.5


def regime_moments(world_model) -> tuple[np.ndarray, np.ndarray]:
    """Annualised regime moments: means ``(K, N) = 252 mu_k``, covariances ``(K, N, N) = 252 Sigma_k``."""
    means = np.asarray(world_model.means, dtype=np.float64) * TRADING_DAYS_PER_YEAR
    chol = np.asarray(world_model.chol, dtype=np.float64)
    return means, np.einsum("kij,klj->kil", chol, chol) * TRADING_DAYS_PER_YEAR


def mixture_covariance(means: np.ndarray, covs: np.ndarray, probs: np.ndarray, between: bool = True) -> np.ndarray:
    """Covariance of the mixture ``sum_k p_k N(mu_k, Sigma_k)`` (``between=False``: only ``sum_k p_k Sigma_k``).

    Pass daily moments for a one-day mixture (the annualised result is 252 times it).
    """
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 1 or p.size != covs.shape[0] or np.any(p < 0) or not np.isclose(p.sum(), 1.0, atol=1e-6):
        raise ValueError(f"probs must be {covs.shape[0]} probabilities summing to 1, got {p}")
    p = p / p.sum()
    within = np.einsum("k,kij->ij", p, covs)
    if not between:
        return within
    dev = means - p @ means
    return within + np.einsum("k,ki,kj->ij", p, dev, dev)


def hedge_ratio(probs: np.ndarray, multiplier: float = HEDGE_MULTIPLIER) -> tuple[float, float]:
    """``(h, stress)``: ``stress = p_STRESS + p_CRISIS``, ``h = min(1, multiplier * stress)``."""
    p = np.asarray(probs, dtype=np.float64)
    stress = float(sum(p[k] for k in STRESSED))
    return min(1.0, multiplier * stress), stress


def _kkt_polish(cov: np.ndarray, w: np.ndarray, lo: np.ndarray, hi: np.ndarray, tol: float = 1e-7) -> np.ndarray | None:
    """Exact minimiser of ``w' cov w`` with ``sum w = 1`` and the bound-active coordinates of ``w``
    fixed there; None when it leaves the bounds or violates the sign conditions of the KKT system."""
    at_lo = w <= lo + tol
    at_hi = (w >= hi - tol) & ~at_lo
    free = ~(at_lo | at_hi)
    if not free.any():
        return None
    fixed = np.where(at_lo, lo, np.where(at_hi, hi, 0.0))
    s_ff = cov[np.ix_(free, free)]
    a = np.linalg.solve(s_ff, np.ones(free.sum()))
    b = np.linalg.solve(s_ff, cov[np.ix_(free, ~free)] @ fixed[~free])
    eta = (1.0 - fixed[~free].sum() + b.sum()) / a.sum()
    out = fixed.copy()
    out[free] = eta * a - b
    if np.any(out < lo - 1e-12) or np.any(out > hi + 1e-12):
        return None
    grad = 2.0 * cov @ out  # KKT: grad_i = nu on free, >= nu at lower bounds, <= nu at upper bounds
    nu = grad[free].mean()
    scale = max(1e-12, np.abs(grad).max())
    if np.any(grad[at_lo] < nu - 1e-8 * scale) or np.any(grad[at_hi] > nu + 1e-8 * scale):
        return None
    return out


def min_variance_weights(cov: np.ndarray, lo=0.0, hi=1.0) -> np.ndarray:
    """The minimum-variance fully invested portfolio with ``lo <= w <= hi`` (SLSQP, then the exact
    KKT solve on its active set)."""
    from scipy.optimize import minimize

    cov = np.asarray(cov, dtype=np.float64)
    n = cov.shape[0]
    lo, hi = check_bounds(n, lo, hi)
    scale = np.trace(cov) / n
    c = cov / scale  # the solver's tolerances are absolute: work at unit scale
    w0 = np.clip(np.full(n, 1.0 / n), lo, hi)
    res = minimize(lambda w: w @ c @ w, w0, jac=lambda w: 2.0 * c @ w, method="SLSQP",
                   bounds=list(zip(lo, hi)), constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                                           "jac": lambda w: np.ones_like(w)}],
                   options={"ftol": 1e-15, "maxiter": 1000})
    w = np.clip(res.x, lo, hi)
    polished = _kkt_polish(c, w, lo, hi)
    if polished is not None and polished @ c @ polished <= w @ c @ w + 1e-12:
        return polished
    return w / w.sum()


@dataclass(frozen=True)
class RegimeAllocation:
    """Regime-aware allocation of one world model and one vector of today's probabilities.

    means, covs : (K, N), (K, N, N) annualised regime moments.
    regime_weights : (K, N) minimum-variance portfolio of each regime.
    probs : (K,) today's regime probabilities.
    sigma_within, sigma_mixture : (N, N) annualised ``sum p_k Sigma_k`` and the exact mixture covariance.
    blend : (N,) ``probs @ regime_weights``; mixture : (N,) minimum-variance portfolio of ``sigma_mixture``.
    stress, hedge : ``p_STRESS + p_CRISIS`` and ``min(1, multiplier stress)``; hedged : ``(1 - hedge) mixture``.
    """

    means: np.ndarray
    covs: np.ndarray
    regime_weights: np.ndarray
    probs: np.ndarray
    sigma_within: np.ndarray
    sigma_mixture: np.ndarray
    blend: np.ndarray
    mixture: np.ndarray
    stress: float
    hedge: float
    hedged: np.ndarray
    multiplier: float

    def portfolios(self) -> dict[str, np.ndarray]:
        """Every weight vector by name: one per regime, ``blend``, ``mixture``, ``hedged``."""
        out = {f"weight_{r.lower()}": self.regime_weights[k] for k, r in enumerate(REGIMES[: self.regime_weights.shape[0]])}
        return out | {"weight_blend": self.blend, "weight_mixture": self.mixture, "weight_hedged": self.hedged}

    def volatilities(self) -> dict[str, dict[str, float]]:
        """Annualised volatility of every portfolio under every regime's covariance and under ``Sigma_t``."""
        covs = {r: self.covs[k] for k, r in enumerate(REGIMES[: self.covs.shape[0]])} | {"sigma_t": self.sigma_mixture}
        return {name: {c: float(np.sqrt(max(w @ s @ w, 0.0))) for c, s in covs.items()} for name, w in self.portfolios().items()}

    @property
    def between_share(self) -> float:
        """Frobenius norm of the between-regime term relative to that of ``Sigma_t``."""
        return float(np.linalg.norm(self.sigma_mixture - self.sigma_within) / np.linalg.norm(self.sigma_mixture))


def regime_allocation(world_model, probs, lo=0.0, hi=1.0, multiplier: float = HEDGE_MULTIPLIER) -> RegimeAllocation:
    """Per-regime minimum-variance optima, ``Sigma_t`` and the blends for ``probs`` (see the module docstring)."""
    means, covs = regime_moments(world_model)
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum()
    regime_w = np.stack([min_variance_weights(c, lo, hi) for c in covs])
    days = TRADING_DAYS_PER_YEAR
    within = mixture_covariance(means / days, covs / days, p, between=False) * days
    mix = mixture_covariance(means / days, covs / days, p, between=True) * days
    mixture_w = min_variance_weights(mix, lo, hi)
    h, stress = hedge_ratio(p, multiplier)
    return RegimeAllocation(means, covs, regime_w, p, within, mix, p @ regime_w, mixture_w, stress, h,
                            (1.0 - h) * mixture_w, float(multiplier))
