"""Resilience optimiser: fixed weights that trade expected return against drawdown risk, recovery
time and volatility-cluster exposure over simulated paths of the world model (pure JAX).

Fixed weights ``w``, rebalanced daily, maximise (mean over paths, units of annual return)
``J(w) = E[CAGR] - lambda_drawdown P(DD > x) - lambda_recovery E[recovery] / 252
- lambda_cluster E[cluster share]`` with the conventions of :mod:`alloc_assets.sim.engine.metrics`
(recovery censored at the horizon). The gradient sees a smooth surrogate (sigmoids for the step
functions, smooth maxima in the drawdown recursion); projected Adam on ``{lo <= w <= hi, sum w = 1}``
in one compiled ``lax.scan``. ``resilience_comparison.run_resilience`` compares ``w*`` on held-out paths with
skfolio's mean-variance, minimum variance, risk parity and equal weights on the exact objective.
The default lambdas (0.10 each), the surrogate's recursion and the reasons are in
docs/notes/simulation.md ("Resilience optimiser").
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alloc_assets.sim.engine.metrics import CLUSTER_MULTIPLE, CLUSTER_WINDOW, PERIODS_PER_YEAR

COMPONENTS: tuple[str, ...] = ("annual_return", "p_drawdown", "recovery_days", "vol_cluster_share", "objective")


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ResilienceObjective:
    """Weights of the penalties, the drawdown threshold, the cluster multiple and the temperatures
    of the smooth surrogate (all traced: changing one never recompiles)."""

    lambda_drawdown: float = 0.10
    lambda_recovery: float = 0.10
    lambda_cluster: float = 0.10
    drawdown_threshold: float = 0.20
    cluster_multiple: float = CLUSTER_MULTIPLE
    temp_drawdown: float = 0.02
    temp_recovery: float = 0.0025
    temp_cluster: float = 0.10
    temp_max: float = 5e-4

    def cast(self, dtype) -> "ResilienceObjective":
        return jax.tree_util.tree_map(lambda v: jnp.asarray(v, dtype), self)

    def as_dict(self) -> dict:
        return {k: float(v) for k, v in asdict(self).items()}


# --------------------------------------------------------------------------------------------------
# per-path components


def portfolio_returns(weights, returns):
    """Daily simple returns of the daily-rebalanced portfolio: ``(N,)`` x ``(H, N, P)`` -> ``(H, P)``.

    ``returns`` are the stocks' daily *simple* returns (``expm1`` of the simulated log returns).
    """
    return jnp.einsum("hnp,n->hp", returns, weights)


def _gate(z, temperature, hard: bool, strict: bool):
    if hard:
        return ((z > 0) if strict else (z >= 0)).astype(z.dtype)
    return jax.nn.sigmoid(z / temperature)


def _max(a, b, temperature, hard: bool):
    if hard:
        return jnp.maximum(a, b)
    return temperature * jnp.logaddexp(a / temperature, b / temperature)


def _drawdown_recovery(port, objective: ResilienceObjective, hard: bool):
    """One scan over days: log wealth at the end, maximum log drawdown, recovery days (censored)."""
    p = port.shape[1:]
    dt = port.dtype
    zeros = jnp.zeros(p, dt)
    temperature, t_max = objective.temp_recovery, objective.temp_max

    def body(c, r):
        log_w = c["L"] + jnp.log1p(r)
        peak = _max(c["M"], log_w, t_max, hard)
        depth = peak - log_w
        back = _gate(log_w - c["M"], temperature, hard, strict=False)
        deeper = _gate(depth - c["mdd"], temperature, hard, strict=True) * (1.0 - back)
        new = {
            "L": log_w,
            "M": peak,
            "mdd": _max(c["mdd"], depth, t_max, hard),
            "pending": deeper + (1.0 - deeper) * c["pending"] * (1.0 - back),
            "count": (1.0 - deeper) * (c["count"] + c["pending"]),
        }
        return new, None

    init = {"L": zeros, "M": zeros, "mdd": zeros, "pending": zeros, "count": zeros}
    final, _ = lax.scan(body, init, port)
    return final["L"], final["mdd"], final["count"] + final["pending"]


def _cluster_share(port, objective: ResilienceObjective, window: int, hard: bool):
    n_t = port.shape[0]
    if n_t < window:
        raise ValueError(f"the horizon ({n_t} days) is shorter than the volatility window ({window})")
    x = port - jnp.mean(port, axis=0)  # sample variances are shift invariant; centring avoids cancellation
    var = jnp.sum(x * x, axis=0) / (n_t - 1)
    zero = jnp.zeros((1,) + x.shape[1:], x.dtype)
    c1 = jnp.concatenate([zero, jnp.cumsum(x, axis=0)])
    c2 = jnp.concatenate([zero, jnp.cumsum(x * x, axis=0)])
    s1 = c1[window:] - c1[:-window]  # windows ending on days window - 1 .. n_t - 1
    s2 = c2[window:] - c2[:-window]
    var_w = (s2 - s1 * s1 / window) / (window - 1)
    m2 = objective.cluster_multiple**2
    if hard:
        inside = (var_w > m2 * var).astype(x.dtype)
    else:
        tiny = jnp.finfo(x.dtype).tiny
        z = jnp.log(jnp.maximum(var_w, tiny)) - jnp.log(jnp.maximum(m2 * var, tiny))
        inside = jax.nn.sigmoid(z / objective.temp_cluster)
    return jnp.mean(inside, axis=0)


def path_components(port, objective: ResilienceObjective = ResilienceObjective(), window: int = CLUSTER_WINDOW,
                    smooth: bool = False) -> dict:
    """Each component of the objective per path, ``(H, P)`` portfolio simple returns -> ``{name: (P,)}``.

    ``smooth=False``: the exact step functions; ``smooth=True``: the surrogate. Keys: ``annual_return``
    (CAGR), ``max_drawdown`` (positive fraction), ``p_drawdown`` (indicator or its sigmoid),
    ``recovery_days`` (censored), ``vol_cluster_share`` and ``objective`` (the path's contribution).
    """
    n_t = port.shape[0]
    hard = not smooth
    log_w, mdd_log, recovery = _drawdown_recovery(port, objective, hard)
    cagr = jnp.expm1(log_w * (PERIODS_PER_YEAR / n_t))
    dd = -jnp.expm1(-mdd_log)
    p_dd = _gate(dd - objective.drawdown_threshold, objective.temp_drawdown, hard, strict=True)
    share = _cluster_share(port, objective, window, hard)
    value = (cagr - objective.lambda_drawdown * p_dd - objective.lambda_recovery * recovery / PERIODS_PER_YEAR
             - objective.lambda_cluster * share)
    return {"annual_return": cagr, "max_drawdown": dd, "p_drawdown": p_dd, "recovery_days": recovery,
            "vol_cluster_share": share, "objective": value}


def objective_value(weights, returns, objective: ResilienceObjective = ResilienceObjective(),
                    window: int = CLUSTER_WINDOW, smooth: bool = False):
    """``J(w)``: the mean over paths of :func:`path_components`' ``objective`` (``returns`` (H, N, P) simple)."""
    return jnp.mean(path_components(portfolio_returns(weights, returns), objective, window, smooth)["objective"])


def surrogate_objective(weights, returns, objective: ResilienceObjective = ResilienceObjective(),
                        window: int = CLUSTER_WINDOW):
    """The smooth surrogate of ``J(w)`` (what the optimiser differentiates)."""
    return objective_value(weights, returns, objective, window, smooth=True)


@jax.jit
def _exact_components(weights, returns, objective):
    return path_components(portfolio_returns(weights, returns), objective, CLUSTER_WINDOW, smooth=False)


def evaluate(weights, returns, objective: ResilienceObjective = ResilienceObjective()) -> dict:
    """Exact components per path (NumPy ``{name: (P,)}``) of fixed weights on simple returns (H, N, P)."""
    returns = jnp.asarray(returns)
    comps = _exact_components(jnp.asarray(weights, returns.dtype), returns, objective.cast(returns.dtype))
    return {k: np.asarray(v, dtype=np.float64) for k, v in comps.items()}


# --------------------------------------------------------------------------------------------------
# projection onto the bounded simplex


def project_bounded_simplex(v, lo, hi, iterations: int = 100, total=1.0):
    """Euclidean projection of ``v`` (N,) onto ``{w : lo <= w <= hi, sum w = total}`` (total 1: the
    fully invested weights).

    The solution is ``clip(v - theta, lo, hi)`` for the shift ``theta`` where the sum is ``total`` (KKT).
    ``sum clip(v - theta, lo, hi)`` is non-increasing in ``theta``: bisection on
    ``[min(v - hi), max(v - lo)]``, then ``theta`` solved exactly on the free set (the coordinates
    strictly inside their bounds). ``lo``/``hi`` scalars or (N,); the set must be non-empty
    (``sum lo <= total <= sum hi``, checked by the callers that take bounds from users).
    """
    v = jnp.asarray(v)
    total_ = jnp.asarray(total, v.dtype)
    lo = jnp.broadcast_to(jnp.asarray(lo, v.dtype), v.shape)
    hi = jnp.broadcast_to(jnp.asarray(hi, v.dtype), v.shape)
    summed = lambda th: jnp.sum(jnp.clip(v - th, lo, hi))  # noqa: E731

    def bisect(_, ab):
        a, b = ab
        mid = 0.5 * (a + b)
        above = summed(mid) > total_
        return jnp.where(above, mid, a), jnp.where(above, b, mid)

    a, b = lax.fori_loop(0, iterations, bisect, (jnp.min(v - hi), jnp.max(v - lo)))
    theta = 0.5 * (a + b)
    x = v - theta
    at_lo, at_hi = x <= lo, x >= hi
    free = ~(at_lo | at_hi)
    n_free = jnp.sum(free)
    fixed = jnp.sum(jnp.where(at_lo, lo, 0.0)) + jnp.sum(jnp.where(at_hi, hi, 0.0))
    exact = (jnp.sum(jnp.where(free, v, 0.0)) - (total_ - fixed)) / jnp.maximum(n_free, 1)
    theta = jnp.where(n_free > 0, exact, theta)
    return jnp.clip(v - theta, lo, hi)


def check_bounds(n: int, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """Bounds as (N,) float64 arrays; ValueError when ``{lo <= w <= hi, sum w = 1}`` is empty."""
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (n,)).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (n,)).copy()
    if np.any(lo > hi) or lo.sum() > 1.0 + 1e-12 or hi.sum() < 1.0 - 1e-12:
        raise ValueError(f"no fully invested weights within the bounds: sum(lo) = {lo.sum():.4f}, "
                         f"sum(hi) = {hi.sum():.4f} (need sum(lo) <= 1 <= sum(hi) and lo <= hi)")
    return lo, hi


# --------------------------------------------------------------------------------------------------
# optimiser


@dataclass(frozen=True)
class OptimiserSettings:
    """Projected Adam: ``iterations`` steps (static), learning rate cosine-decayed from
    ``learning_rate`` to ``learning_rate * final_fraction`` (traced)."""

    iterations: int = 200
    learning_rate: float = 0.02
    final_fraction: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8


def tangent_direction(g, w, lo, hi):
    """The projection of the gradient ``g`` onto the tangent cone of the feasible set at ``w``:
    ``d = g - nu`` summing to 0, with ``d_i >= 0`` where ``w_i`` sits on its lower bound and
    ``d_i <= 0`` where it sits on its upper bound (those coordinates cannot move further)."""
    tol = 10.0 * jnp.finfo(w.dtype).eps
    big = 2.0 * jnp.max(jnp.abs(g)) + 1.0  # |g_i - nu| < big: the finite stand-in for an open side
    at_lo = w <= lo + tol
    at_hi = (w >= hi - tol) & ~at_lo
    return project_bounded_simplex(g, jnp.where(at_lo, 0.0, -big), jnp.where(at_hi, 0.0, big), total=0.0)


@functools.partial(jax.jit, static_argnames=("iterations", "window"))
def _projected_adam(returns, objective, lo, hi, w0, lr, final_fraction, beta1, beta2, eps, *, iterations, window):
    value_grad = jax.value_and_grad(surrogate_objective)
    dt = returns.dtype

    def body(c, i):
        w, m, v, best_w, best_f = c
        f, g = value_grad(w, returns, objective, window)
        g = tangent_direction(g, w, lo, hi)
        better = f > best_f
        best_w = jnp.where(better, w, best_w)
        best_f = jnp.where(better, f, best_f)
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        k = (i + 1).astype(dt)
        step = (m / (1.0 - beta1**k)) / (jnp.sqrt(v / (1.0 - beta2**k)) + eps)
        frac = final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + jnp.cos(jnp.pi * i.astype(dt) / iterations))
        w = project_bounded_simplex(w + lr * frac * step, lo, hi)
        return (w, m, v, best_w, best_f), f

    w0 = project_bounded_simplex(w0, lo, hi)
    zeros = jnp.zeros_like(w0)
    init = (w0, zeros, zeros, w0, jnp.asarray(-jnp.inf, dt))
    (w, _, _, best_w, best_f), history = lax.scan(body, init, jnp.arange(iterations))
    f_last = surrogate_objective(w, returns, objective, window)
    best_w = jnp.where(f_last > best_f, w, best_w)
    return best_w, jnp.maximum(best_f, f_last), history, w0


@dataclass(frozen=True)
class OptimiserResult:
    weights: np.ndarray  # (N,) best iterate (surrogate, training paths)
    surrogate: float  # its surrogate objective on the training paths
    history: np.ndarray  # (iterations,) surrogate at each iterate before its step
    initial_weights: np.ndarray


def optimise(returns, objective: ResilienceObjective = ResilienceObjective(), lo=0.0, hi=1.0,
             w0=None, settings: OptimiserSettings = OptimiserSettings(), window: int = CLUSTER_WINDOW) -> OptimiserResult:
    """``w* = argmax`` of the surrogate on simple returns (H, N, P) by projected Adam (see the module
    docstring); starts from ``w0`` (default equal weights, projected onto the bounds)."""
    returns = jnp.asarray(returns)
    dt = returns.dtype
    n = returns.shape[1]
    lo, hi = check_bounds(n, lo, hi)
    w0 = np.full(n, 1.0 / n) if w0 is None else np.asarray(w0, dtype=np.float64)
    c = lambda x: jnp.asarray(x, dt)  # noqa: E731
    w, f, hist, w0p = _projected_adam(returns, objective.cast(dt), c(lo), c(hi), c(w0), c(settings.learning_rate),
                                 c(settings.final_fraction), c(settings.beta1), c(settings.beta2), c(settings.eps),
                                 iterations=int(settings.iterations), window=int(window))
    return OptimiserResult(np.asarray(w, dtype=np.float64), float(f), np.asarray(hist, dtype=np.float64),
                           np.asarray(w0p, dtype=np.float64))
