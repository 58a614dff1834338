"""The simulated two-asset markets the strategy search scores its configurations on.

Equity: Heston stochastic variance, full-truncation Euler (the scheme of
:class:`alloc_assets.sim.models.world.Heston`); government bond: a Vasicek yield around the
scenario's rate with a constant modified duration (carry plus first-order price change). One day a
step (``dt = 1/252``), float32, one ``lax.scan`` over days. Shocks ``W1`` (equity), ``W2``
(variance, ``corr(W1, W2) = rho``) and ``W3`` (yield, ``corr(W1, W3) = equity_rates_corr``); since
the bond return is about ``-D dy``, ``corr(equity, bond)`` is about ``-equity_rates_corr``.
Drift and volatility are targets of daily SIMPLE returns (annualised x 252 and sqrt(252)).

Common random numbers: day t's normals come from ``fold_in(key, t)``, so one key gives the same
shocks to every scenario and every configuration. The five markets are the search's own:
``base``, ``bull`` and ``bear`` match the stress scenarios of those names in
``alloc_assets.sim.scenarios``; ``turbulent`` and ``calm`` differ from the stress ``high_vol`` and
``low_vol`` (base rate and correlation). Equations, targets: docs/notes/search.md.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alloc_assets.sim.engine.kernel import as_key
from alloc_assets.sim.models.world import TRADING_DAYS_PER_YEAR, Heston

DTYPE = jnp.float32

#: Python-level trace counters (incremented only while JAX traces a function: a recompilation).
TRACES: dict[str, int] = {"simulate": 0, "evaluate": 0}


def trace_count(name: str = "evaluate") -> int:
    """How many times the jitted ``"evaluate"`` (or ``"simulate"``) kernel has been traced."""
    return TRACES[name]


@dataclass(frozen=True)
class MarketScenario:
    """One simulated two-asset market (annualised decimals).

    name : scenario name.
    equity_drift : target mean of daily simple equity returns x 252.
    equity_vol : target ``sqrt(252 Var(daily simple return))``; Heston ``theta = v0 = vol^2``.
    rate : government rate: the yield's mean and start, the bond's expected return, the Sharpe's
        risk-free rate.
    equity_rates_corr : ``corr(W1, W3)``, the equity return shock against the YIELD shock.
    kappa, vol_of_var, rho : Heston mean reversion (per year), volatility of variance, and
        ``corr(W1, W2)`` between the equity return shock and the variance shock.
    yield_kappa, yield_vol : Vasicek mean reversion (per year) and volatility (per sqrt(year)) of the yield.
    duration : modified duration of the bond leg (years).
    """

    name: str
    equity_drift: float
    equity_vol: float
    rate: float
    equity_rates_corr: float
    kappa: float = 2.0
    vol_of_var: float = 0.3
    rho: float = -0.7
    yield_kappa: float = 0.2
    yield_vol: float = 0.01
    duration: float = 7.0

    def __post_init__(self) -> None:
        if self.equity_vol <= 0 or self.duration < 0 or self.yield_vol < 0:
            raise ValueError(f"{self.name}: equity_vol must be > 0, duration and yield_vol >= 0")
        if abs(self.rho) > 1 or abs(self.equity_rates_corr) > 1:
            raise ValueError(f"{self.name}: correlations must lie in [-1, 1]")

    @property
    def log_drift(self) -> float:
        """``m`` of the log-return drift ``(m - v/2) dt``: ``252 log(1 + mu / 252)``."""
        return TRADING_DAYS_PER_YEAR * math.log1p(self.equity_drift / TRADING_DAYS_PER_YEAR)

    def heston(self) -> Heston:
        """The equity leg as a one-asset :class:`~alloc_assets.sim.models.world.Heston` (float64 parameters)."""
        var = self.equity_vol**2
        return Heston.create(self.log_drift, self.kappa, var, self.vol_of_var, self.rho, var)


#: The five scenarios of the search (equity drift, equity vol, rate, equity-rates correlation).
SEARCH_SCENARIOS: tuple[MarketScenario, ...] = (
    MarketScenario("base", 0.08, 0.18, 0.03, -0.3),
    MarketScenario("bull", 0.15, 0.12, 0.02, 0.0),
    MarketScenario("bear", -0.05, 0.35, 0.01, -0.6),
    MarketScenario("turbulent", 0.05, 0.40, 0.03, -0.3),
    MarketScenario("calm", 0.07, 0.08, 0.03, -0.3),
)


def search_scenario(name: str) -> MarketScenario:
    """The scenario of :data:`SEARCH_SCENARIOS` called ``name``."""
    for s in SEARCH_SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"unknown scenario {name!r}; known: {[s.name for s in SEARCH_SCENARIOS]}")


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _MarketParams:
    """Traced scalars of one scenario (float32), so every scenario shares one compilation."""

    log_drift: jax.Array
    kappa: jax.Array
    theta: jax.Array
    xi: jax.Array
    rho: jax.Array
    v0: jax.Array
    rate: jax.Array
    corr: jax.Array
    yield_kappa: jax.Array
    yield_vol: jax.Array
    duration: jax.Array


def _market_params(s: MarketScenario) -> _MarketParams:
    h = s.heston()
    f = lambda x: jnp.asarray(np.asarray(x, dtype=np.float64).reshape(()), DTYPE)  # noqa: E731
    return _MarketParams(f(h.mu), f(h.kappa), f(h.theta), f(h.xi), f(h.rho), f(h.v0), f(s.rate),
                         f(s.equity_rates_corr), f(s.yield_kappa), f(s.yield_vol), f(s.duration))


@dataclass(frozen=True)
class MarketPaths:
    """Daily simple returns of both legs, shape ``(days, paths)`` (JAX arrays, float32).

    With ``return_states``: ``variance`` (Heston ``v`` after each day) and ``yields`` (after each day).
    """

    equity: jax.Array
    bond: jax.Array
    variance: jax.Array | None = None
    yields: jax.Array | None = None

    @property
    def n_days(self) -> int:
        return int(self.equity.shape[0])

    @property
    def n_paths(self) -> int:
        return int(self.equity.shape[1])


@functools.partial(jax.jit, static_argnames=("n_paths", "n_days", "states"))
def _simulate(p: _MarketParams, key, n_paths: int, n_days: int, states: bool):
    TRACES["simulate"] += 1
    dt = 1.0 / TRADING_DAYS_PER_YEAR
    sdt = math.sqrt(dt)
    rho_c = jnp.sqrt(1.0 - p.rho * p.rho)
    corr_c = jnp.sqrt(1.0 - p.corr * p.corr)

    def step(carry, t):
        v, y = carry
        z = jax.random.normal(jax.random.fold_in(key, t), (3, n_paths), DTYPE)
        w1 = z[0]
        w2 = p.rho * w1 + rho_c * z[1]
        w3 = p.corr * w1 + corr_c * z[2]
        vp = jnp.maximum(v, 0.0)
        sq = jnp.sqrt(vp * dt)
        x = (p.log_drift - 0.5 * vp) * dt + sq * w1
        v_next = v + p.kappa * (p.theta - vp) * dt + p.xi * sq * w2
        y_next = y + p.yield_kappa * (p.rate - y) * dt + (p.yield_vol * sdt) * w3
        r_b = y * dt - p.duration * (y_next - y)
        out = (jnp.expm1(x), r_b, v_next, y_next) if states else (jnp.expm1(x), r_b)
        return (v_next, y_next), out

    init = (jnp.full((n_paths,), p.v0, DTYPE), jnp.full((n_paths,), p.rate, DTYPE))
    _, out = lax.scan(step, init, jnp.arange(1, n_days + 1, dtype=jnp.uint32))
    return out


def simulate_market(scenario: MarketScenario, n_paths: int, n_days: int, key, return_states: bool = False) -> MarketPaths:
    """Simulate ``n_days`` days of both legs on ``n_paths`` paths.

    Parameters
    ----------
    scenario : the market.
    n_paths, n_days : sizes (the result holds ``2 n_days n_paths`` float32 numbers).
    key : PRNG key or int seed; the same key gives the same normals whatever the scenario
        (common random numbers).
    return_states : also return the variance and yield paths.

    Returns
    -------
    :class:`MarketPaths` with arrays of shape ``(n_days, n_paths)``.
    """
    if n_paths < 1 or n_days < 1:
        raise ValueError("n_paths and n_days must be >= 1")
    out = _simulate(_market_params(scenario), as_key(key), int(n_paths), int(n_days), bool(return_states))
    return MarketPaths(*out)
