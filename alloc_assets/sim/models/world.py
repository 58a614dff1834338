"""Market models of the Monte Carlo engine: parameters as frozen pytree dataclasses, one day a step.

Every model (``GBM``, ``Heston``, the regime-switching ``WorldModel``) is a frozen dataclass
registered as a JAX pytree with two pure methods the engine's ``lax.scan`` calls:
``init(key, n_paths, dtype) -> state`` and ``step(state, key, t, n_paths) -> (state, log_returns)``,
``log_returns`` of shape ``(assets, paths)``. Units: trading days (252 a year); ``GBM`` and
``Heston`` take annualised parameters, ``WorldModel`` daily ones; returns are daily *log* returns.
``WorldModel``'s optional shocks (a spread price move, a volatility multiplier, a Heston variance
factor, a common factor) leave the plain model unchanged bit for bit when at their defaults.
``world_calibration.calibrate_world_model`` estimates it from daily log returns and regime labels. The formulas
and the reasons are in docs/notes/simulation.md ("World models").
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

TRADING_DAYS_PER_YEAR = 252
N_REGIMES = 4


def _pytree(cls):
    """Freeze a dataclass and register every field as a pytree child (equinox ``Module`` style)."""
    cls = dataclass(frozen=True)(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    return jax.tree_util.register_dataclass(cls, data_fields=names, meta_fields=[])


def _chol(corr_or_cov: np.ndarray, what: str) -> np.ndarray:
    m = np.asarray(corr_or_cov, dtype=np.float64)
    try:
        return np.linalg.cholesky(m)
    except np.linalg.LinAlgError:
        raise ValueError(f"{what} is not positive definite; fix the correlations or add a small ridge") from None


def _matvec(matrix, z):
    """``matrix @ z`` for a small static matrix (n, m) and z (m, B), as unrolled multiply-adds.

    XLA's ``dot`` may pick a different kernel (and rounding) for a different batch of blocks; an
    elementwise chain gives every path the same bits whatever the chunk size.
    """
    out = matrix[:, 0:1] * z[0]
    for j in range(1, matrix.shape[1]):
        out = out + matrix[:, j : j + 1] * z[j]
    return out


def cast(tree, dtype):
    """The pytree with every floating array converted to ``dtype`` (integers left alone)."""

    def one(x):
        x = jnp.asarray(x)
        return x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x

    return jax.tree_util.tree_map(one, tree)


# --------------------------------------------------------------------------------------------------
# GBM


@_pytree
class GBM:
    """Correlated geometric Brownian motion.

    mu : (N,) annualised arithmetic drift (``E[S_T] = S_0 exp(mu T)``), decimal.
    sigma : (N,) annualised volatility, decimal.
    chol : (N, N) lower Cholesky factor of the correlation matrix.
    """

    mu: jax.Array
    sigma: jax.Array
    chol: jax.Array

    @staticmethod
    def create(mu, sigma, corr=None) -> "GBM":
        """From drifts (N,), volatilities (N,) and a correlation matrix (N, N) (identity if None)."""
        mu = np.atleast_1d(np.asarray(mu, dtype=np.float64))
        sigma = np.broadcast_to(np.asarray(sigma, dtype=np.float64), mu.shape).copy()
        corr = np.eye(mu.size) if corr is None else np.asarray(corr, dtype=np.float64)
        return GBM(mu, sigma, _chol(corr, "the GBM correlation matrix"))

    @property
    def n_assets(self) -> int:
        return self.mu.shape[0]

    def init(self, key, n_paths: int, dtype):
        return ()

    def step(self, state, key, t, n_paths: int):
        dt = 1.0 / TRADING_DAYS_PER_YEAR
        z = jax.random.normal(key, (self.n_assets, n_paths), self.mu.dtype)
        w = _matvec(self.chol, z)
        drift = (self.mu - 0.5 * self.sigma**2) * dt
        return state, drift[:, None] + (self.sigma * math.sqrt(dt))[:, None] * w


# --------------------------------------------------------------------------------------------------
# Heston


@_pytree
class Heston:
    """Heston stochastic volatility per asset, price shocks correlated across assets.

    mu : (N,) annualised drift of the price (the risk-free rate for risk-neutral pricing).
    kappa : (N,) mean-reversion speed of the variance, per year.
    theta : (N,) long-run variance (annualised, e.g. 0.04 = 20 % volatility).
    xi : (N,) volatility of variance.
    rho : (N,) correlation between each asset's price and variance shocks.
    v0 : (N,) initial variance.
    chol : (N, N) Cholesky factor of the correlation of the price shocks across assets.
    """

    mu: jax.Array
    kappa: jax.Array
    theta: jax.Array
    xi: jax.Array
    rho: jax.Array
    v0: jax.Array
    chol: jax.Array

    @staticmethod
    def create(mu, kappa, theta, xi, rho, v0, corr=None) -> "Heston":
        """Broadcast scalar or (N,) parameters; ``corr`` (N, N) correlates the price shocks."""
        arrs = np.broadcast_arrays(*[np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (mu, kappa, theta, xi, rho, v0)])
        n = arrs[0].size
        if np.any(np.abs(arrs[4]) > 1):
            raise ValueError("Heston rho must lie in [-1, 1]")
        corr = np.eye(n) if corr is None else np.asarray(corr, dtype=np.float64)
        return Heston(*[a.copy() for a in arrs], _chol(corr, "the Heston correlation matrix"))

    @property
    def n_assets(self) -> int:
        return self.mu.shape[0]

    def init(self, key, n_paths: int, dtype):
        return jnp.broadcast_to(self.v0[:, None], (self.n_assets, n_paths)).astype(dtype)

    def step(self, v, key, t, n_paths: int):
        dt = 1.0 / TRADING_DAYS_PER_YEAR
        n = self.n_assets
        z = jax.random.normal(key, (2 * n, v.shape[1]), v.dtype)
        w1 = _matvec(self.chol, z[:n])
        w2 = self.rho[:, None] * w1 + jnp.sqrt(1.0 - self.rho**2)[:, None] * z[n:]
        vp = jnp.maximum(v, 0.0)
        sq = jnp.sqrt(vp * dt)
        r = (self.mu[:, None] - 0.5 * vp) * dt + sq * w1
        v_next = v + self.kappa[:, None] * (self.theta[:, None] - vp) * dt + self.xi[:, None] * sq * w2
        return v_next, r


# --------------------------------------------------------------------------------------------------
# regime switching world model


@_pytree
class WorldModel:
    """Markov regime-switching multi-asset model (daily units).

    transition : (K, K) daily transition matrix, rows sum to 1 (``A[i, j] = P(s_t = j | s_{t-1} = i)``).
    means : (K, N) daily mean log return per regime.
    chol : (K, N, N) lower Cholesky factor of each regime's daily covariance.
    p0 : (K,) probabilities of the regime of day 0 (today).
    jump : (N,) log return of the shock, spread evenly over days 1..``shock_days`` (zeros for none).
    vol_multiplier0 : (N,) volatility multiplier of each asset's shocks on day 1 (ones for none).
    vol_decay : () per-day decay of ``multiplier - 1`` (``0.5 ** (1 / half_life)``).
    shock_days : () days over which ``jump`` is spread (1: all on day 1).
    var0, var_kappa, var_xi : () Heston variance factor: start, daily mean reversion, daily vol of
        variance (relative units; var0 1 and var_xi 0: none).
    var_exposure : (N,) 1 for the assets whose shocks the variance factor scales, else 0.
    factor_load, factor_decay : (N,) daily st. dev. of the common shock on day 1, and its daily decay.
    """

    transition: jax.Array
    means: jax.Array
    chol: jax.Array
    p0: jax.Array
    jump: jax.Array
    vol_multiplier0: jax.Array
    vol_decay: jax.Array
    shock_days: jax.Array
    var0: jax.Array
    var_kappa: jax.Array
    var_xi: jax.Array
    var_exposure: jax.Array
    factor_load: jax.Array
    factor_decay: jax.Array

    @staticmethod
    def create(transition, means, covs, p0=None, jump=None, vol_multiplier0=1.0, vol_half_life=None, shock_days=1,
               var0=1.0, var_kappa=0.0, var_xi=0.0, var_exposure=0.0, factor_load=0.0, factor_decay=1.0) -> "WorldModel":
        """From a transition matrix (K, K), means (K, N) and covariances (K, N, N), all daily."""
        a = np.asarray(transition, dtype=np.float64)
        means = np.asarray(means, dtype=np.float64)
        covs = np.asarray(covs, dtype=np.float64)
        k, n = means.shape
        if a.shape != (k, k) or covs.shape != (k, n, n):
            raise ValueError(f"shapes disagree: transition {a.shape}, means {means.shape}, covs {covs.shape}")
        if np.any(a < 0) or not np.allclose(a.sum(axis=1), 1.0, atol=1e-6):
            raise ValueError("transition rows must be probabilities summing to 1")
        a = a / a.sum(axis=1, keepdims=True)
        p0 = stationary_distribution(a) if p0 is None else np.asarray(p0, dtype=np.float64)
        if p0.shape != (k,) or np.any(p0 < 0) or not math.isclose(p0.sum(), 1.0, abs_tol=1e-6):
            raise ValueError(f"p0 must be {k} probabilities summing to 1, got {p0}")
        chol = np.stack([_chol(c, f"the covariance of regime {i}") for i, c in enumerate(covs)])
        decay = 1.0 if vol_half_life is None else 0.5 ** (1.0 / vol_half_life)
        jump = np.zeros(n) if jump is None else np.broadcast_to(np.asarray(jump, dtype=np.float64), (n,)).copy()
        mult = np.broadcast_to(np.asarray(vol_multiplier0, dtype=np.float64), (n,)).copy()
        if np.any(mult <= 0):
            raise ValueError("vol_multiplier0 must be > 0")
        if shock_days < 1 or var0 < 0 or var_kappa < 0 or var_xi < 0 or not (0 < factor_decay <= 1):
            raise ValueError("shock_days >= 1, var0, var_kappa, var_xi >= 0 and factor_decay in (0, 1] are required")

        def vec(x):
            return np.broadcast_to(np.asarray(x, dtype=np.float64), (n,)).copy()

        return WorldModel(a, means, chol, p0 / p0.sum(), jump, mult, np.asarray(float(decay)), np.asarray(float(shock_days)),
                          np.asarray(float(var0)), np.asarray(float(var_kappa)), np.asarray(float(var_xi)), vec(var_exposure),
                          vec(factor_load), np.asarray(float(factor_decay)))

    @property
    def n_assets(self) -> int:
        return self.means.shape[1]

    @property
    def n_regimes(self) -> int:
        return self.means.shape[0]

    def covariances(self) -> np.ndarray:
        """(K, N, N) daily covariances ``L L'`` (NumPy, float64)."""
        c = np.asarray(self.chol, dtype=np.float64)
        return np.einsum("kij,klj->kil", c, c)

    def replace(self, **changes) -> "WorldModel":
        return dataclasses.replace(self, **changes)

    def init(self, key, n_paths: int, dtype):
        """State of day 0: ``(regime (B,), variance factor (B,))``."""
        u = jax.random.uniform(key, (n_paths,), dtype)
        return _categorical(u, jnp.cumsum(self.p0).astype(dtype)), jnp.full((n_paths,), self.var0, dtype)

    def step(self, state, key, t, n_paths: int):
        # On XLA CPU, reductions over a leading axis are slow: the regime is picked with where-chains
        # (select) rather than one-hot sums; every regime's shock is computed, then the path's picked.
        k, n = self.means.shape
        regime, f = state
        kz, ku = jax.random.split(key)
        zc, zf = jax.random.normal(jax.random.fold_in(key, 1), (2, n_paths), self.means.dtype)
        cum = jnp.cumsum(self.transition, axis=1)  # (K, K)
        u = jax.random.uniform(ku, (n_paths,), self.means.dtype)
        rows = [_select(regime, [cum[i, j] for i in range(k)]) for j in range(k - 1)]
        regime = _categorical_rows(u, rows)
        z = jax.random.normal(kz, (n, n_paths), self.means.dtype)
        shocks = _matvec(self.chol.reshape(k * n, n), z)  # (K N, B)
        eps = _select(regime, [shocks[i * n : (i + 1) * n] for i in range(k)])
        mean = _select(regime, [self.means[i][:, None] for i in range(k)])
        dtype = self.means.dtype
        age = (t - 1).astype(dtype)
        mult = 1.0 + (self.vol_multiplier0 - 1.0) * self.vol_decay**age
        scale = mult[:, None] * (1.0 + self.var_exposure[:, None] * (jnp.sqrt(jnp.maximum(f, 0.0))[None, :] - 1.0))
        common = (self.factor_load * self.factor_decay**age)[:, None] * zc[None, :]
        drift = jnp.where(t <= self.shock_days, 1.0, 0.0).astype(dtype) * self.jump / self.shock_days
        r = mean + scale * eps + common + drift[:, None]
        fp = jnp.maximum(f, 0.0)
        f = jnp.maximum(f + self.var_kappa * (1.0 - fp) + self.var_xi * jnp.sqrt(fp) * zf, 0.0)
        return (regime, f), r


def _select(index, options):
    """``options[index]`` elementwise (a chain of selects; ``index`` (B,), options broadcastable)."""
    out = options[-1]
    for i in range(len(options) - 2, -1, -1):
        out = jnp.where(index == i, options[i], out)
    return out


def _categorical_rows(u, cum_rows):
    """Inverse-CDF draw: the number of cumulative probabilities ``cum_rows[j]`` (j < K - 1) that ``u`` reaches."""
    out = jnp.zeros(u.shape, jnp.int32)
    for c in cum_rows:
        out = out + (u >= c).astype(jnp.int32)
    return out


def _categorical(u, cum):
    return _categorical_rows(u, [cum[j] for j in range(cum.shape[0] - 1)])


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """The stationary distribution pi = pi A of a transition matrix (K,), NumPy float64."""
    a = np.asarray(transition, dtype=np.float64)
    k = a.shape[0]
    m = np.vstack([a.T - np.eye(k), np.ones((1, k))])
    rhs = np.concatenate([np.zeros(k), [1.0]])
    pi, *_ = np.linalg.lstsq(m, rhs, rcond=None)
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()
