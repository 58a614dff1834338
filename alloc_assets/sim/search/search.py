"""Strategy search across simulated markets: a volatility-targeted equity/bond rule, scored on five
two-asset scenarios (pure functions of arrays and explicit PRNG keys; no Dagster import).

Market (one per scenario, :class:`MarketScenario`)
--------------------------------------------------
Two legs, one day a step (``dt = 1/252``), float32, one ``lax.scan`` over days:

* **Equity**: Heston stochastic variance with full-truncation Euler (the scheme of
  :class:`alloc_assets.sim.models.world.Heston`), ``v+ = max(v, 0)``::

      x_t = (m - v+/2) dt + sqrt(v+ dt) W1          (daily log return; simple return expm1(x_t))
      v  <- v + kappa (theta - v+) dt + xi sqrt(v+ dt) W2

* **Government bond**: a Vasicek (Ornstein-Uhlenbeck) yield around the scenario's rate ``r`` and
  a constant modified duration ``D`` (default 7 years)::

      y_t = y_{t-1} + a (r - y_{t-1}) dt + s_y sqrt(dt) W3,     y_0 = r
      bond simple return  r_b,t = y_{t-1} dt - D (y_t - y_{t-1})

  (carry plus first-order price change; default ``a = 0.2``/yr, ``s_y = 1 %``/yr in yield, so the
  bond's volatility is about ``D s_y = 7 %`` and its expected return exactly ``r``).

Shocks, from three independent standard normals ``z1, z2, z3`` per path and day::

    W1 = z1                                    equity return shock
    W2 = rho W1 + sqrt(1 - rho^2) z2           variance shock:  rho = corr(W1, W2) = -0.7 (leverage)
    W3 = c W1 + sqrt(1 - c^2) z3               yield shock:     c = corr(W1, W3) = equity_rates_corr

so ``corr(W2, W3) = rho c``. Because ``r_b ~ -D dy``, the equity-BOND return correlation is about
``-c``: ``c = -0.3`` (base) means yields rise when equities fall, i.e. bonds fall with equities
(``corr(equity, bond) ~ +0.3``); ``c = -0.6`` (bear) is a stagflation-type bear market where the
bond leg does not hedge.

Drift and volatility targets (what "hits" means; the tests check both within 3 standard errors):

* **drift** = arithmetic mean of daily *simple* equity returns x 252. Given ``v+``, ``E[exp(x)] =
  exp(m dt)`` exactly, so ``m = 252 log(1 + mu / 252)`` makes ``E[r_e] = mu / 252`` on every day;
* **volatility** = ``sqrt(252 Var(r_e))``: ``theta = v0 = vol^2`` (Heston's ``E[v+] = theta`` in
  the long run; kappa 2, xi 0.3 and rho -0.7 are the seed's, only theta/v0 and the drift are scaled).

Common random numbers: day t's normals come from ``fold_in(key, t)``; the same key gives the same
shocks to every scenario and every configuration evaluated on the paths.

Strategy (:class:`StrategyParams`; every field a traced array, one compilation for any search)
-------------------------------------------------------------------------------------------------
Monthly rebalancing: weights are set at the close of day 0 (the investment, free of cost, as in
``alloc_assets.sim.engine.books``) and of days 21, 42, ... (not at the horizon's last day); in
between the book drifts. At a rebalance the equity weight ``w`` (rest in the bond, no leverage,
``0 <= w <= 1``) depends on:

* ``sigma_hat``: annualised EWMA volatility of daily equity simple returns (zero mean,
  ``sigma_hat^2 = 252 sum_k (1-d) d^k r_{t-k}^2 / sum_k (1-d) d^k``, bias-corrected for the days
  seen), with half-life ``window_days / 2``, ``window_days = 21 window_months``, i.e.
  ``d = 2^(-2 / window_days)``; ``window_months`` is a real number (6..24 in the search). The
  estimator starts ``warmup_days`` (default 252) before the horizon on simulated pre-history that
  feeds the estimate but not the performance;
* ``target_vol`` tau, ``risk_aversion`` lambda and ``weight_fn`` (index into
  :data:`WEIGHT_FUNCTIONS`), with ``x = tau / sigma_hat``:

  0. ``inverse_vol``          ``w = min(1, x)``
  1. ``inverse_vol_squared``  ``w = min(1, x^2)``
  2. ``linear_decay``         ``w = clip(1 - (sigma_hat - tau) / (lambda tau), 0, 1)``
  3. ``sigmoid``              ``w = 1 / (1 + exp(lambda (sigma_hat - tau) / tau))``

  (lambda only acts on 2 and 3; ``sigma_hat`` and tau are floored at 1e-12). All four are computed
  and the index picks one with a chain of selects, so the choice is data, not program.
* ``cost_bps``: cost per unit of turnover ``sum_i |target_i - drifted_i|`` (both legs, so
  ``2 |dw|``), subtracted from the rebalance day's return.

Per-path metrics (:func:`evaluate_strategies`, conventions of ``alloc_assets.sim.engine.metrics``) over
the ``horizon`` days: ``annual_return`` (CAGR), ``annual_volatility`` (ddof 1), ``sharpe``
(excess over the scenario's rate, daily ``rate / 252``: the bond's carry, so the bond leg alone
has an expected Sharpe of 0), ``max_drawdown``, ``var_95`` and ``cvar_95`` of DAILY returns
(``np.percentile`` 5 %, mean of the worst ``floor((T-1) 0.05) + 1``), ``cost_per_year`` (sum of
costs / years) and ``avg_equity_weight``.

Objective, robustness, search
-----------------------------
Objective of a configuration in a scenario (:func:`scenario_objective`): mean Sharpe over the
paths minus ``penalty`` (1.0 Sharpe unit) times the share of paths violating each investment
objective of :class:`InvestmentObjectives` (vol <= 10 %, max drawdown >= -15 %, daily VaR95 >= -5 %,
daily CVaR95 >= -8 %, cost <= 20 bp a year): a configuration that breaks one objective on every
path loses 1.0.

Robustness (:func:`robustness_scores`): share of scenarios where the configuration's objective
is at least ``best - 0.2 |best|`` (``best`` = the best objective in that scenario among all the
configurations evaluated): 80 % of the best when it is positive, within 20 % of ``|best|`` below
it when it is negative (``1.2 best``), and only ties when it is 0. The best robust configuration
has the highest robustness, ties broken by the highest mean objective over scenarios.

Search (:func:`run_search`): a sliced Latin hypercube (:func:`sliced_latin_hypercube`): each batch
(default 20) is a Latin hypercube of its own and the whole budget (default 100) is one too; the
weight function is the ``floor(4 u)`` of its own column, so each batch holds each function
``batch / 4`` times. After each batch, :func:`plateau_reached` stops the search when no
scenario's best objective improved by ``rel_tol`` (1 %) of ``max(|previous best|, 0.01)`` over the
last ``window`` (20) configurations; otherwise it stops at the budget.

Units of work (distributed runs): a search is a :class:`SearchPlan` (its arguments, picklable);
one unit is one batch scored in one scenario (:func:`evaluate_unit`, which simulates the scenario
itself when not given its paths: the same key, the same numbers in every process). A
configuration's numbers do not depend on the other configurations of its compiled call (the call
always has the batch's shape), so :func:`assemble_search`, taking the batches in order and
applying the stopping rule after each as :func:`run_search` does, rebuilds ``run_search``'s table
bit for bit from units evaluated anywhere, in any order (units after the stop are discarded).
``alloc_assets.defs.search.assets.search_fanout_job`` runs the units as parallel Dagster steps.

Allocation path (:func:`allocation_path`): the equity weight held each day of the horizon by one
configuration, summarised over the paths (5/50/95 % quantiles and the mean); :func:`run_search`
gives it for the best robust configuration in every scenario, on the search's own paths.

Memory: the paths of every scenario stay on the device (``scenarios x 2 x (warmup + horizon) x
paths x 4`` bytes: 61 MB for 5 x 1,000 paths x 1,512 days); each compiled call evaluates
``config_chunk`` configurations and holds their daily returns (``chunk x horizon x paths x 4``
bytes, 100 MB for 20 x 1,260 x 1,000) for the order statistics of VaR and CVaR (``lax.top_k``, the
larger part of the time on CPU).

Devices: with several local devices (CPU cores exposed by
``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>`` set before JAX is imported, or GPUs)
each chunk's configurations are split over them with ``shard_map`` (:func:`evaluator`; the same
numbers, bit for bit); on one GPU the code is unchanged and a chunk holds 100 configurations.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alloc_assets.sim.engine import metrics as sim_metrics
from alloc_assets.sim.engine.kernel import as_key
from alloc_assets.sim.models.world import TRADING_DAYS_PER_YEAR, Heston

REBALANCE_DAYS = 21
DTYPE = jnp.float32
WEIGHT_FUNCTIONS: tuple[str, ...] = ("inverse_vol", "inverse_vol_squared", "linear_decay", "sigmoid")
PARAMETERS: tuple[str, ...] = ("target_vol", "window_months", "risk_aversion", "cost_bps", "weight_fn")
_TINY = 1e-12

#: Python-level trace counters (incremented only while JAX traces a function: a recompilation).
_TRACES: dict[str, int] = {"simulate": 0, "evaluate": 0}


def trace_count(name: str = "evaluate") -> int:
    """How many times the jitted ``"evaluate"`` (or ``"simulate"``) kernel has been traced."""
    return _TRACES[name]


# --------------------------------------------------------------------------------------------------
# scenarios and the simulated market


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
    MarketScenario("high_vol", 0.05, 0.40, 0.03, -0.3),
    MarketScenario("low_vol", 0.07, 0.08, 0.03, -0.3),
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
    _TRACES["simulate"] += 1
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


# --------------------------------------------------------------------------------------------------
# the strategy rule, evaluated on paths


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class StrategyParams:
    """Configurations of the rule, every field an array of shape ``(C,)`` (traced data).

    target_vol : tau (decimal, annual). window_months : EWMA window (half-life = 21 window / 2 days).
    risk_aversion : lambda (> 0). weight_fn : int32 index into :data:`WEIGHT_FUNCTIONS`.
    cost_bps : cost per unit of turnover (basis points).
    """

    target_vol: jax.Array
    window_months: jax.Array
    risk_aversion: jax.Array
    weight_fn: jax.Array
    cost_bps: jax.Array

    @property
    def n_configs(self) -> int:
        return int(np.shape(self.target_vol)[0])

    def take(self, idx) -> "StrategyParams":
        """The configurations at ``idx`` (NumPy fancy index)."""
        return jax.tree_util.tree_map(lambda a: np.asarray(a)[idx], self)


def strategy_params(target_vol, window_months, risk_aversion, weight_fn, cost_bps) -> StrategyParams:
    """Broadcast scalars or sequences to one :class:`StrategyParams` of NumPy arrays (C,).

    ``weight_fn`` may be indices or names of :data:`WEIGHT_FUNCTIONS`.
    """
    wf = np.atleast_1d(np.asarray(weight_fn))
    if wf.dtype.kind in "US":
        wf = np.array([WEIGHT_FUNCTIONS.index(str(n)) for n in wf])
    arrs = np.broadcast_arrays(*[np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in (target_vol, window_months, risk_aversion)],
                               wf.astype(np.int64), np.atleast_1d(np.asarray(cost_bps, dtype=np.float64)))
    tau, win, lam, idx, cost = (a.ravel() for a in arrs)
    if np.any(tau < 0) or np.any(win <= 0) or np.any(lam <= 0) or np.any(cost < 0):
        raise ValueError("need target_vol >= 0, window_months > 0, risk_aversion > 0, cost_bps >= 0")
    if np.any((idx < 0) | (idx >= len(WEIGHT_FUNCTIONS))):
        raise ValueError(f"weight_fn must index {WEIGHT_FUNCTIONS}")
    return StrategyParams(tau.astype(np.float32), win.astype(np.float32), lam.astype(np.float32),
                          idx.astype(np.int32), cost.astype(np.float32))


def equity_weight(sigma_hat, target_vol, risk_aversion, weight_fn):
    """The equity weight of the four rules (module docstring), picked by ``weight_fn``; broadcasts."""
    sig = jnp.maximum(sigma_hat, _TINY)
    tau = jnp.maximum(target_vol, _TINY)
    x = tau / sig
    excess = (sig - tau) / tau
    options = (
        jnp.minimum(1.0, x),
        jnp.minimum(1.0, x * x),
        jnp.clip(1.0 - excess / risk_aversion, 0.0, 1.0),
        1.0 / (1.0 + jnp.exp(risk_aversion * excess)),
    )
    out = options[-1]
    for i in range(len(options) - 2, -1, -1):
        out = jnp.where(weight_fn == i, options[i], out)
    return out


def _evaluate_one(re, rb, p: StrategyParams, risk_free, warmup_months: int, with_returns: bool = False,
                  with_weights: bool = False):
    """One configuration (scalar fields) on month blocks ``re``, ``rb`` (months, 21, P)."""
    dt = re.dtype
    n_months = re.shape[0] - warmup_months
    n_days = n_months * REBALANCE_DAYS
    log_decay = (-2.0 * math.log(2.0)) / (REBALANCE_DAYS * p.window_months)  # d = 2^(-2 / window_days)
    decay = jnp.exp(log_decay).astype(dt)
    gain = -jnp.expm1(log_decay).astype(dt)  # 1 - d without float32 cancellation
    cost_rate = (p.cost_bps * 1e-4).astype(dt)
    ann = float(TRADING_DAYS_PER_YEAR)

    def sigma_hat(s, wsum):
        return jnp.sqrt(ann * s / wsum)

    def warm(carry, r_month):
        s, wsum = carry
        for j in range(REBALANCE_DAYS):
            s = decay * s + gain * (r_month[j] * r_month[j])
            wsum = decay * wsum + gain
        return (s, wsum), None

    zeros = jnp.zeros(re.shape[2], dt)
    (s, wsum), _ = lax.scan(warm, (zeros, jnp.zeros((), dt)), re[:warmup_months])
    w0 = equity_weight(sigma_hat(s, wsum), p.target_vol, p.risk_aversion, p.weight_fn)

    def month(carry, xs):
        s, wsum, w, wealth, peak, mdd, s1, s2, costs, wsum_eq = carry
        r_e, r_b, m = xs
        ve, vb = w, 1.0 - w
        m1 = m2 = weq = zeros
        outs, held = [], []
        for j in range(REBALANCE_DAYS):
            value = ve + vb
            we, wb = ve / value, vb / value
            r = we * r_e[j] + wb * r_b[j]
            weq = weq + we
            held.append(we)
            s = decay * s + gain * (r_e[j] * r_e[j])
            wsum = decay * wsum + gain
            ve = ve * (1.0 + r_e[j])
            vb = vb * (1.0 + r_b[j])
            if j == REBALANCE_DAYS - 1:  # rebalance at this close (not after the horizon's last day)
                value = ve + vb
                w_new = equity_weight(sigma_hat(s, wsum), p.target_vol, p.risk_aversion, p.weight_fn)
                turnover = jnp.abs(w_new - ve / value) + jnp.abs((1.0 - w_new) - vb / value)
                cost = jnp.where(m < n_months - 1, cost_rate * turnover, 0.0)
                r = r - cost
                costs = costs + cost
            wealth = wealth * (1.0 + r)
            peak = jnp.maximum(peak, wealth)
            mdd = jnp.minimum(mdd, wealth / peak - 1.0)
            m1 = m1 + r
            m2 = m2 + r * r
            outs.append(r)
        carry = (s, wsum, w_new, wealth, peak, mdd, s1 + m1, s2 + m2, costs, wsum_eq + weq)
        return carry, ((jnp.stack(outs), jnp.stack(held)) if with_weights else jnp.stack(outs))

    ones = jnp.ones_like(zeros)
    init = (s, wsum, w0, ones, ones, zeros, zeros, zeros, zeros, zeros)
    xs = (re[warmup_months:], rb[warmup_months:], jnp.arange(n_months))
    (_, _, _, wealth, _, mdd, s1, s2, costs, weq), ys = lax.scan(month, init, xs)
    rets = (ys[0] if with_weights else ys).reshape(n_days, -1)
    mean = s1 / n_days
    var = (s2 - s1 * s1 / n_days) / (n_days - 1)
    years = n_days / ann
    out = {
        "annual_return": jnp.where(wealth < 0, jnp.nan, jnp.abs(wealth) ** (ann / n_days) - 1.0),
        "annual_volatility": jnp.sqrt(var * ann),
        "sharpe": (mean - risk_free) / jnp.sqrt(var) * math.sqrt(ann),
        "max_drawdown": mdd,
        "var_95": sim_metrics.value_at_risk(rets),
        "cvar_95": sim_metrics.conditional_value_at_risk(rets),
        "cost_per_year": costs / years,
        "avg_equity_weight": weq / n_days,
    }
    if with_returns:
        out["returns"] = rets
    if with_weights:
        out["weights"] = ys[1].reshape(n_days, -1)
    return out


def _evaluate_local(equity, bond, params: StrategyParams, risk_free, warmup_months: int, with_returns: bool = False,
                    with_weights: bool = False):
    _TRACES["evaluate"] += 1  # Python side effect: runs once per trace (= per compilation)
    n_total, n_paths = equity.shape
    months = n_total // REBALANCE_DAYS
    re = equity.reshape(months, REBALANCE_DAYS, n_paths)
    rb = bond.reshape(months, REBALANCE_DAYS, n_paths)
    return jax.vmap(lambda p: _evaluate_one(re, rb, p, risk_free, warmup_months, with_returns, with_weights))(params)


@functools.lru_cache(maxsize=8)
def evaluator(n_devices: int = 1):
    """The jitted kernel ``(equity, bond, params, risk_free, warmup_months, with_returns, with_weights) -> {metric: (C, P)}``.

    One device: ``jit(vmap(config))``. Several (e.g. CPU cores exposed with
    ``XLA_FLAGS=--xla_force_host_platform_device_count``, or GPUs): the chunk's configurations are
    split over them with ``shard_map`` (paths replicated), still one compilation.
    """
    if n_devices == 1:
        return jax.jit(_evaluate_local, static_argnames=("warmup_months", "with_returns", "with_weights"))
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("configs",))
    rep, cfg = PartitionSpec(), PartitionSpec("configs")

    def sharded(equity, bond, params, risk_free, warmup_months: int, with_returns: bool = False, with_weights: bool = False):
        local = functools.partial(_evaluate_local, warmup_months=warmup_months, with_returns=with_returns,
                                  with_weights=with_weights)
        return jax.shard_map(local, mesh=mesh, in_specs=(rep, rep, cfg, rep), out_specs=cfg,
                             check_vma=False)(equity, bond, params, risk_free)

    return jax.jit(sharded, static_argnames=("warmup_months", "with_returns", "with_weights"))


STRATEGY_METRICS: tuple[str, ...] = ("annual_return", "annual_volatility", "sharpe", "max_drawdown", "var_95",
                                     "cvar_95", "cost_per_year", "avg_equity_weight")


def evaluate_strategies(paths: MarketPaths, params: StrategyParams, rate: float, warmup_days: int = 252,
                        config_chunk: int | None = None, devices: int | None = None,
                        return_daily: bool = False, return_weights: bool = False) -> dict[str, np.ndarray]:
    """Per-path metrics of every configuration on the same paths.

    Parameters
    ----------
    paths : daily returns; the first ``warmup_days`` only feed the volatility estimate, the next
        ``paths.n_days - warmup_days`` (a multiple of 21) are the horizon.
    params : C configurations (:func:`strategy_params`).
    rate : the scenario's annual rate (Sharpe excess over ``rate / 252`` a day).
    warmup_days : pre-history days, a positive multiple of 21.
    config_chunk : configurations per compiled call (``jax.vmap``; memory ``chunk x horizon x
        paths x 4`` bytes); default 20 on CPU, 100 on an accelerator, at most C, rounded up to a
        multiple of the devices. The last chunk is padded with copies of the last configuration:
        every call with the same C (a search's batch) runs the same compiled kernel, whatever the
        parameter values.
    devices : split each chunk over this many local devices (default all).
    return_daily : also return ``"returns"``, the daily strategy returns (C, horizon, P) (small runs).
    return_weights : also return ``"weights"`` (C, horizon, P): the equity weight held during each
        day of the horizon (set at the previous close, drifted since the last rebalance); its mean
        over the days is ``avg_equity_weight``.

    Returns
    -------
    ``{metric: (C, P) float32}`` for every name of :data:`STRATEGY_METRICS`.
    """
    horizon = paths.n_days - warmup_days
    if warmup_days < REBALANCE_DAYS or warmup_days % REBALANCE_DAYS or horizon < 2 * REBALANCE_DAYS or horizon % REBALANCE_DAYS:
        raise ValueError(f"warmup_days ({warmup_days}) must be a positive multiple of {REBALANCE_DAYS} and the "
                         f"horizon ({horizon} days) a multiple of {REBALANCE_DAYS}, at least two months")
    n_dev = max(1, min(devices or len(jax.local_devices()), len(jax.local_devices())))
    n = params.n_configs
    if config_chunk is None:
        config_chunk = 20 if jax.default_backend() == "cpu" else 100
    chunk = -(-min(config_chunk, n) // n_dev) * n_dev
    pad = (-n) % chunk
    padded = params.take(np.concatenate([np.arange(n), np.full(pad, n - 1)]))
    rf = jnp.asarray(rate / TRADING_DAYS_PER_YEAR, DTYPE)
    fn = evaluator(n_dev)
    outs = []
    for start in range(0, n + pad, chunk):  # dispatched asynchronously
        part = jax.tree_util.tree_map(lambda a: jnp.asarray(a[start : start + chunk]), padded)
        outs.append(fn(paths.equity, paths.bond, part, rf, warmup_months=warmup_days // REBALANCE_DAYS,
                       with_returns=return_daily, with_weights=return_weights))
    return {k: np.concatenate([np.asarray(o[k]) for o in outs])[:n] for k in outs[0]}


# --------------------------------------------------------------------------------------------------
# NumPy reference


def evaluate_strategy_numpy(equity, bond, target_vol: float, window_months: float, risk_aversion: float, weight_fn,
                            cost_bps: float, rate: float, warmup_days: int = 252,
                            return_weights: bool = False) -> dict[str, np.ndarray]:
    """One configuration in plain NumPy (float64, a loop over days, paths vectorised).

    An independent implementation of :func:`evaluate_strategies` (same definitions, other code):
    ``equity``, ``bond`` (days, P) daily simple returns; returns ``{metric: (P,)}`` (and
    ``"weights"`` (horizon, P), the equity weight held during each day, with ``return_weights``).
    """
    re = np.asarray(equity, dtype=np.float64)
    rb = np.asarray(bond, dtype=np.float64)
    name = weight_fn if isinstance(weight_fn, str) else WEIGHT_FUNCTIONS[int(weight_fn)]
    n_total, n_paths = re.shape
    horizon = n_total - warmup_days
    d = 0.5 ** (1.0 / (REBALANCE_DAYS * window_months / 2.0))

    def weight(var_sum, n_seen):
        sig = np.sqrt(TRADING_DAYS_PER_YEAR * var_sum / (1.0 - d**n_seen))
        sig = np.maximum(sig, _TINY)
        tau = max(target_vol, _TINY)
        if name == "inverse_vol":
            return np.minimum(1.0, tau / sig)
        if name == "inverse_vol_squared":
            return np.minimum(1.0, (tau / sig) ** 2)
        if name == "linear_decay":
            return np.clip(1.0 - (sig - tau) / (risk_aversion * tau), 0.0, 1.0)
        if name == "sigmoid":
            with np.errstate(over="ignore"):
                return 1.0 / (1.0 + np.exp(risk_aversion * (sig - tau) / tau))
        raise ValueError(name)

    ewma = np.zeros(n_paths)
    for t in range(warmup_days):
        ewma = d * ewma + (1.0 - d) * re[t] ** 2
    w_eq = weight(ewma, warmup_days)  # decided at the close of day 0 of the horizon
    w_bd = 1.0 - w_eq
    rets = np.empty((horizon, n_paths))
    costs = np.zeros(n_paths)
    eq_weight_sum = np.zeros(n_paths)
    held = np.empty((horizon, n_paths))
    for i in range(horizon):
        t = warmup_days + i
        gross = w_eq * re[t] + w_bd * rb[t]
        eq_weight_sum += w_eq
        held[i] = w_eq
        w_eq, w_bd = w_eq * (1.0 + re[t]) / (1.0 + gross), w_bd * (1.0 + rb[t]) / (1.0 + gross)
        ewma = d * ewma + (1.0 - d) * re[t] ** 2
        cost = np.zeros(n_paths)
        if (i + 1) % REBALANCE_DAYS == 0 and i < horizon - 1:
            target = weight(ewma, t + 1)
            cost = cost_bps / 1e4 * (np.abs(target - w_eq) + np.abs((1.0 - target) - w_bd))
            w_eq, w_bd = target, 1.0 - target
        rets[i] = gross - cost
        costs += cost
    wealth = np.cumprod(1.0 + rets, axis=0)
    peak = np.maximum(np.maximum.accumulate(wealth, axis=0), 1.0)
    std = rets.std(axis=0, ddof=1)
    k = int((horizon - 1) * 0.05) + 1
    extra = {"weights": held} if return_weights else {}
    return extra | {
        "annual_return": wealth[-1] ** (TRADING_DAYS_PER_YEAR / horizon) - 1.0,
        "annual_volatility": std * np.sqrt(TRADING_DAYS_PER_YEAR),
        "sharpe": (rets.mean(axis=0) - rate / TRADING_DAYS_PER_YEAR) / std * np.sqrt(TRADING_DAYS_PER_YEAR),
        "max_drawdown": np.minimum((wealth / peak - 1.0).min(axis=0), 0.0),
        "var_95": np.percentile(rets, 5.0, axis=0),
        "cvar_95": np.sort(rets, axis=0)[:k].mean(axis=0),
        "cost_per_year": costs / (horizon / TRADING_DAYS_PER_YEAR),
        "avg_equity_weight": eq_weight_sum / horizon,
    }


# --------------------------------------------------------------------------------------------------
# objective, robustness, sensitivity


@dataclass(frozen=True)
class InvestmentObjectives:
    """The seed's investment objectives, as per-path constraints, and the penalty per violated one.

    max_vol : annual volatility ceiling. max_drawdown : floor of the maximum drawdown.
    var_95, cvar_95 : floors of the DAILY 95 % VaR and CVaR (returns, so negative).
    max_cost_per_year : cost budget (decimal a year). penalty : Sharpe units lost per constraint
    violated on every path (scaled by the share of violating paths).
    """

    max_vol: float = 0.10
    max_drawdown: float = -0.15
    var_95: float = -0.05
    cvar_95: float = -0.08
    max_cost_per_year: float = 0.0020
    penalty: float = 1.0

    def violations(self, m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Boolean per path (same shape as the metrics) for each constraint."""
        return {
            "vol": m["annual_volatility"] > self.max_vol,
            "max_drawdown": m["max_drawdown"] < self.max_drawdown,
            "var_95": m["var_95"] < self.var_95,
            "cvar_95": m["cvar_95"] < self.cvar_95,
            "cost": m["cost_per_year"] > self.max_cost_per_year,
        }


def scenario_objective(metrics: dict[str, np.ndarray], objectives: InvestmentObjectives = InvestmentObjectives()) -> dict[str, np.ndarray]:
    """Aggregate per-path metrics ``{name: (C, P)}`` into one row per configuration (float64).

    Returns ``objective`` (mean Sharpe - penalty x sum of violation shares), the path means of
    ``sharpe``, ``vol``, ``max_drawdown``, ``var_95``, ``cvar_95``, ``cost_per_year``,
    ``annual_return``, ``avg_equity_weight``, and ``viol_<constraint>`` shares, each (C,).
    """
    m = {k: np.asarray(v, dtype=np.float64) for k, v in metrics.items()}
    shares = {k: v.mean(axis=-1) for k, v in objectives.violations(m).items()}
    sharpe = m["sharpe"].mean(axis=-1)
    out = {
        "objective": sharpe - objectives.penalty * sum(shares.values()),
        "sharpe": sharpe,
        "vol": m["annual_volatility"].mean(axis=-1),
        "max_drawdown": m["max_drawdown"].mean(axis=-1),
        "var_95": m["var_95"].mean(axis=-1),
        "cvar_95": m["cvar_95"].mean(axis=-1),
        "cost_per_year": m["cost_per_year"].mean(axis=-1),
        "annual_return": m["annual_return"].mean(axis=-1),
        "avg_equity_weight": m["avg_equity_weight"].mean(axis=-1),
    }
    out.update({f"viol_{k}": v for k, v in shares.items()})
    return out


def robustness_scores(objective: np.ndarray, fraction: float = 0.8) -> np.ndarray:
    """Share of scenarios where each configuration reaches ``best - (1 - fraction) |best|``.

    ``objective`` (C, S): configurations x scenarios; ``best`` is each column's maximum. For a
    positive best that is ``fraction x best``; for a negative one ``(2 - fraction) x best``.
    """
    obj = np.asarray(objective, dtype=np.float64)
    best = obj.max(axis=0)
    threshold = best - (1.0 - fraction) * np.abs(best)
    return (obj >= threshold[None]).mean(axis=1)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (average ranks for ties); NaN when either is constant."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    if np.std(rx) == 0 or np.std(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


# --------------------------------------------------------------------------------------------------
# sampling and stopping


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of the searched parameters (weight function: uniform over :data:`WEIGHT_FUNCTIONS`)."""

    target_vol: tuple[float, float] = (0.05, 0.20)
    window_months: tuple[float, float] = (6.0, 24.0)
    risk_aversion: tuple[float, float] = (0.5, 5.0)
    cost_bps: tuple[float, float] = (0.0, 20.0)

    def scale(self, u: np.ndarray) -> StrategyParams:
        """Map unit samples (n, 5) (columns in :data:`PARAMETERS` order) onto the space."""
        cols = []
        for j, name in enumerate(PARAMETERS[:4]):
            lo, hi = getattr(self, name)
            cols.append(lo + (hi - lo) * u[:, j])
        fn = np.minimum(np.floor(u[:, 4] * len(WEIGHT_FUNCTIONS)), len(WEIGHT_FUNCTIONS) - 1).astype(np.int64)
        tau, win, lam, cost = cols
        return strategy_params(tau, win, lam, fn, cost)


def sliced_latin_hypercube(n_slices: int, slice_size: int, n_dims: int, rng: np.random.Generator) -> np.ndarray:
    """Sliced Latin hypercube (Qian 2012) in [0, 1): shape (n_slices, slice_size, n_dims).

    With ``n = n_slices x slice_size``: every slice has one point in each of the ``slice_size``
    equal strata of every dimension, and all ``n`` points have one in each of the ``n`` fine strata.
    """
    n = n_slices * slice_size
    out = np.empty((n_slices, slice_size, n_dims))
    for d in range(n_dims):
        # coarse stratum j holds fine strata j*n_slices .. j*n_slices + n_slices - 1: one per slice
        fine = np.stack([j * n_slices + rng.permutation(n_slices) for j in range(slice_size)], axis=1)  # (slices, size)
        for b in range(n_slices):
            cells = fine[b, rng.permutation(slice_size)]
            out[b, :, d] = (cells + rng.random(slice_size)) / n
    return out


def plateau_reached(objectives, window: int = 20, rel_tol: float = 0.01, abs_floor: float = 0.01) -> bool:
    """Whether the best objective stopped improving: the stopping rule of :func:`run_search`.

    ``objectives`` (n,) or (n, S) in evaluation order. True when ``n > window`` and, for every
    column, ``best(n) - best(n - window) < rel_tol x max(|best(n - window)|, abs_floor)`` where
    ``best(k)`` is the maximum of the first k values (NaN ignored).
    """
    obj = np.asarray(objectives, dtype=np.float64)
    obj = obj[:, None] if obj.ndim == 1 else obj
    n = obj.shape[0]
    if n <= window:
        return False
    filled = np.where(np.isnan(obj), -np.inf, obj)
    before = filled[: n - window].max(axis=0)
    now = filled.max(axis=0)
    scale = np.maximum(np.abs(before), abs_floor)
    return bool(np.all(np.isfinite(before)) and np.all(now - before < rel_tol * scale))


# --------------------------------------------------------------------------------------------------
# the search


@dataclass
class SearchResult:
    """Outcome of :func:`run_search`.

    table : columns ``{name: (n,) array}``: ``config``, ``batch``, the parameters
        (:data:`PARAMETERS`, ``weight_fn`` an index; ``weight_fn_name``), per scenario
        ``<scenario>_objective|sharpe|vol|max_drawdown|var_95|cvar_95|cost_per_year|annual_return``,
        ``mean_objective`` and ``robustness``.
    best_per_scenario : ``{scenario: row}`` (row = ``{column: value}``), highest objective.
    best_robust : row of the highest robustness (ties: highest mean objective).
    sensitivity : ``{parameter: {scenario | "mean": Spearman(parameter, objective)}}`` for the
        four continuous parameters.
    weight_fn_objective : ``{weight function: {scenario | "mean": mean objective}}``.
    summary : a deterministic text made from these numbers.
    allocation_path : ``{scenario: allocation_path(...)}`` of the best robust configuration (its
        equity weight per day, 5/50/95 % quantiles and mean over the paths); empty if not computed.
    """

    table: dict[str, np.ndarray]
    scenarios: tuple[str, ...]
    best_per_scenario: dict[str, dict]
    best_robust: dict
    sensitivity: dict[str, dict[str, float]]
    weight_fn_objective: dict[str, dict[str, float]]
    n_evaluated: int
    stopped_early: bool
    settings: dict
    summary: str
    timings_s: dict = field(default_factory=dict)
    allocation_path: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def row(self, i: int) -> dict:
        """Row ``i`` of the table as plain Python values."""
        return {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in self.table.items()}


_SCENARIO_COLUMNS = ("objective", "sharpe", "vol", "max_drawdown", "var_95", "cvar_95", "cost_per_year", "annual_return")


@dataclass(frozen=True)
class SearchPlan:
    """Everything that decides a search's result (the arguments of :func:`run_search`).

    Frozen and picklable: a distributed run sends it to every unit. The configurations of batch
    ``b`` are :meth:`batch_params` (slice ``b`` of the sliced Latin hypercube drawn with
    ``numpy.random.default_rng(seed)``); scenario ``s`` is simulated by :meth:`simulate` (key
    ``seed``: the same shocks in every scenario, the same paths in every process).
    """

    scenarios: tuple[MarketScenario, ...] = SEARCH_SCENARIOS
    n_paths: int = 1000
    horizon_days: int = 1260
    seed: int = 0
    budget: int = 100
    batch_size: int = 20
    warmup_days: int = 252
    config_chunk: int | None = None
    devices: int | None = None
    space: SearchSpace = SearchSpace()
    objectives: InvestmentObjectives = InvestmentObjectives()
    early_stopping: bool = True
    stop_window: int = 20
    stop_rel_tol: float = 0.01
    robust_fraction: float = 0.8

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.budget < self.batch_size or self.budget % self.batch_size:
            raise ValueError(f"budget ({self.budget}) must be a positive multiple of batch_size ({self.batch_size})")
        names = [s.name for s in self.scenarios]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"need at least one scenario, with distinct names: {names}")

    @property
    def n_batches(self) -> int:
        return self.budget // self.batch_size

    @property
    def scenario_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scenarios)

    def scenario(self, name: str) -> MarketScenario:
        for s in self.scenarios:
            if s.name == name:
                return s
        raise KeyError(f"scenario {name!r} is not in the plan {self.scenario_names}")

    def unit_cube(self) -> np.ndarray:
        """The sliced Latin hypercube in [0, 1): (n_batches, batch_size, len(PARAMETERS))."""
        return sliced_latin_hypercube(self.n_batches, self.batch_size, len(PARAMETERS), np.random.default_rng(self.seed))

    def batch_params(self, batch: int) -> StrategyParams:
        """The ``batch_size`` configurations of batch ``batch`` (0-based)."""
        if not 0 <= batch < self.n_batches:
            raise IndexError(f"batch {batch} outside 0..{self.n_batches - 1}")
        return self.space.scale(self.unit_cube()[batch])

    def units(self) -> list[tuple[str, int]]:
        """Every (scenario, batch) unit of work, in evaluation order (batch-major)."""
        return [(s.name, b) for b in range(self.n_batches) for s in self.scenarios]

    def simulate(self, scenario: str) -> MarketPaths:
        """The scenario's ``warmup_days + horizon_days`` days on ``n_paths`` paths (key ``seed``)."""
        return simulate_market(self.scenario(scenario), self.n_paths, self.warmup_days + self.horizon_days, as_key(self.seed))

    def settings(self) -> dict:
        return {"n_paths": self.n_paths, "horizon_days": self.horizon_days, "warmup_days": self.warmup_days, "seed": self.seed,
                "budget": self.budget, "batch_size": self.batch_size, "stop_window": self.stop_window,
                "stop_rel_tol": self.stop_rel_tol, "robust_fraction": self.robust_fraction,
                "objectives": dataclasses.asdict(self.objectives), "space": dataclasses.asdict(self.space),
                "backend": jax.default_backend()}


def evaluate_unit(plan: SearchPlan, scenario: str, batch: int, paths: MarketPaths | None = None) -> dict[str, np.ndarray]:
    """One unit of a search: batch ``batch``'s configurations scored in one scenario.

    ``paths``: the scenario's simulated paths when the caller holds them (else simulated here, the
    same numbers). Returns ``{"<scenario>_<column>": (batch_size,) float64}`` for the per-scenario
    columns of the table. A configuration's numbers depend only on the plan, the scenario and the
    batch (the compiled call has the same shape in every process), so units evaluated anywhere, in
    any order, assemble (:func:`assemble_search`) into exactly :func:`run_search`'s table.
    """
    s = plan.scenario(scenario)
    pth = plan.simulate(scenario) if paths is None else paths
    agg = scenario_objective(evaluate_strategies(pth, plan.batch_params(batch), s.rate, plan.warmup_days,
                                                 plan.config_chunk, plan.devices), plan.objectives)
    return {f"{s.name}_{col}": agg[col] for col in _SCENARIO_COLUMNS}


def _stops_after(plan: SearchPlan, blocks: list[dict[str, np.ndarray]]) -> bool:
    """The stopping rule after ``len(blocks)`` batches (never after the last one)."""
    if not plan.early_stopping or len(blocks) >= plan.n_batches:
        return False
    obj = np.concatenate([np.stack([r[f"{n}_objective"] for n in plan.scenario_names], axis=1) for r in blocks])
    return plateau_reached(obj, plan.stop_window, plan.stop_rel_tol)


def run_search(
    scenarios: tuple[MarketScenario, ...] = SEARCH_SCENARIOS,
    n_paths: int = 1000,
    horizon_days: int = 1260,
    seed: int = 0,
    budget: int = 100,
    batch_size: int = 20,
    warmup_days: int = 252,
    config_chunk: int | None = None,
    devices: int | None = None,
    space: SearchSpace = SearchSpace(),
    objectives: InvestmentObjectives = InvestmentObjectives(),
    early_stopping: bool = True,
    stop_window: int = 20,
    stop_rel_tol: float = 0.01,
    robust_fraction: float = 0.8,
    allocation_path: bool = True,
) -> SearchResult:
    """Latin-hypercube search of the volatility-targeting rule across simulated markets.

    Each scenario is simulated once (``warmup_days + horizon_days`` days, ``n_paths`` paths, key
    ``seed``: the same shocks in every scenario); then batches of ``batch_size`` configurations
    (slices of one sliced Latin hypercube drawn with ``numpy.random.default_rng(seed)``) are
    evaluated on every scenario's paths until :func:`plateau_reached` on the per-scenario
    objectives (``stop_window``, ``stop_rel_tol``; if ``early_stopping``) or ``budget``.
    With ``allocation_path``, the best robust configuration's equity weight path is summarised on
    the same paths (:func:`search_allocation_paths`). The same arguments give a bit-identical table.
    """
    plan = SearchPlan(scenarios, n_paths, horizon_days, seed, budget, batch_size, warmup_days, config_chunk, devices,
                      space, objectives, early_stopping, stop_window, stop_rel_tol, robust_fraction)
    timings = {"simulate_s": 0.0, "evaluate_s": 0.0}
    t0 = time.perf_counter()
    paths = {s: plan.simulate(s) for s in plan.scenario_names}
    jax.block_until_ready([(p.equity, p.bond) for p in paths.values()])
    timings["simulate_s"] = time.perf_counter() - t0

    blocks: list[dict[str, np.ndarray]] = []  # per batch: {scenario column: (batch,)}
    stopped_early = False
    t1 = time.perf_counter()
    for b in range(plan.n_batches):
        block = {}
        for s in plan.scenario_names:
            block.update(evaluate_unit(plan, s, b, paths[s]))
        blocks.append(block)
        if _stops_after(plan, blocks):
            stopped_early = True
            break
    timings["evaluate_s"] = time.perf_counter() - t1
    result = _result(plan, blocks, stopped_early, timings)
    if allocation_path:
        t2 = time.perf_counter()
        result.allocation_path = search_allocation_paths(plan, result.best_robust, paths)
        timings["allocation_path_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    return result


def assemble_search(plan: SearchPlan, units: dict[tuple[str, int], dict[str, np.ndarray]],
                    allocation_path: bool = True) -> SearchResult:
    """The search result from its units (:func:`evaluate_unit`), as :func:`run_search` makes it.

    ``units[(scenario, batch)]``: one unit's columns. Batches are taken in order and the stopping
    rule applied after each, exactly as :func:`run_search` does, so the table is bit-identical to
    its own; units of batches after the stop are ignored (a distributed run may evaluate them
    speculatively), missing units before it are an error. With ``allocation_path`` the scenarios
    are simulated again (the same paths) for :func:`search_allocation_paths`.
    """
    t0 = time.perf_counter()
    blocks: list[dict[str, np.ndarray]] = []
    stopped_early = False
    for b in range(plan.n_batches):
        missing = [s for s in plan.scenario_names if (s, b) not in units]
        if missing:
            raise KeyError(f"batch {b}: no unit for scenarios {missing} (units given: {sorted(units)})")
        block = {}
        for s in plan.scenario_names:
            block.update(units[(s, b)])
        blocks.append(block)
        if _stops_after(plan, blocks):
            stopped_early = True
            break
    timings = {"assemble_s": time.perf_counter() - t0}
    result = _result(plan, blocks, stopped_early, timings)
    if allocation_path:
        t1 = time.perf_counter()
        result.allocation_path = search_allocation_paths(plan, result.best_robust)
        timings["allocation_path_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    return result


def _result(plan: SearchPlan, blocks: list[dict[str, np.ndarray]], stopped_early: bool, timings: dict) -> SearchResult:
    """The table, the bests, the sensitivities and the summary of the evaluated batches."""
    names = plan.scenario_names
    params = [plan.batch_params(b) for b in range(len(blocks))]
    n = sum(p.n_configs for p in params)
    table: dict[str, np.ndarray] = {
        "config": np.arange(n),
        "batch": np.concatenate([np.full(p.n_configs, i) for i, p in enumerate(params)]),
    }
    for name in PARAMETERS:
        table[name] = np.concatenate([np.asarray(getattr(p, name)) for p in params])
    table["weight_fn_name"] = np.array([WEIGHT_FUNCTIONS[i] for i in table["weight_fn"]])
    for col in blocks[0]:
        table[col] = np.concatenate([r[col] for r in blocks])
    obj = np.stack([table[f"{s}_objective"] for s in names], axis=1)
    table["mean_objective"] = obj.mean(axis=1)
    table["robustness"] = robustness_scores(obj, plan.robust_fraction)

    best = {s: int(np.argmax(table[f"{s}_objective"])) for s in names}
    order = np.lexsort((np.arange(n), -table["mean_objective"], -table["robustness"]))
    robust = int(order[0])
    sens = {}
    for name in PARAMETERS[:4]:
        sens[name] = {s: spearman(table[name], table[f"{s}_objective"]) for s in names}
        sens[name]["mean"] = spearman(table[name], table["mean_objective"])
    wf_obj = {}
    for i, fn in enumerate(WEIGHT_FUNCTIONS):
        sel = table["weight_fn"] == i
        wf_obj[fn] = {s: float(table[f"{s}_objective"][sel].mean()) if sel.any() else float("nan") for s in names}
        wf_obj[fn]["mean"] = float(table["mean_objective"][sel].mean()) if sel.any() else float("nan")
    result = SearchResult(table, names, {}, {}, sens, wf_obj, n, stopped_early, plan.settings(), "", timings)
    result.best_per_scenario = {s: result.row(i) for s, i in best.items()}
    result.best_robust = result.row(robust)
    result.summary = summarize(result)
    return result


ALLOCATION_QUANTILES: tuple[float, ...] = (0.05, 0.5, 0.95)


def allocation_path(paths: MarketPaths, params: StrategyParams, rate: float, warmup_days: int = 252,
                    quantiles: tuple[float, ...] = ALLOCATION_QUANTILES) -> dict[str, np.ndarray]:
    """Cross-path summary of ONE configuration's equity weight over the horizon.

    Returns ``{"day": 1..horizon, "p05"/"p50"/"p95" (one key per quantile, ``p`` + percent):
    np.quantile over the paths (linear interpolation), "mean": the path mean}``, each (horizon,)
    float64; the weight of day t is the one held during day t (:func:`evaluate_strategies`).
    """
    if params.n_configs != 1:
        raise ValueError(f"allocation_path takes one configuration, got {params.n_configs}")
    w = evaluate_strategies(paths, params, rate, warmup_days, config_chunk=1, devices=1, return_weights=True)["weights"][0]
    w = np.asarray(w, dtype=np.float64)
    q = np.quantile(w, quantiles, axis=1)
    out = {"day": np.arange(1, w.shape[0] + 1)}
    out.update({f"p{round(100 * x):02d}": q[i] for i, x in enumerate(quantiles)})
    out["mean"] = w.mean(axis=1)
    return out


def params_of_row(row: dict) -> StrategyParams:
    """The one configuration of a table row (``row`` as :meth:`SearchResult.row` gives it)."""
    return strategy_params(row["target_vol"], row["window_months"], row["risk_aversion"], int(row["weight_fn"]), row["cost_bps"])


def search_allocation_paths(plan: SearchPlan, row: dict, paths: dict[str, MarketPaths] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """:func:`allocation_path` of the configuration ``row`` in every scenario of the plan, on the
    plan's paths (``paths[scenario]`` when given, else simulated again: the same numbers)."""
    params = params_of_row(row)
    out = {}
    for s in plan.scenarios:
        pth = paths[s.name] if paths is not None else plan.simulate(s.name)
        out[s.name] = allocation_path(pth, params, s.rate, plan.warmup_days)
    return out


def _describe(row: dict) -> str:
    return (f"#{row['config']} {row['weight_fn_name']}, tau {100 * row['target_vol']:.1f} %, window "
            f"{row['window_months']:.1f} m, lambda {row['risk_aversion']:.2f}, cost {row['cost_bps']:.1f} bp")


def summarize(result: SearchResult) -> str:
    """A deterministic written summary of a :class:`SearchResult` (numbers only from the result)."""
    st = result.settings
    lines = [
        f"Strategy search over {len(result.scenarios)} simulated markets ({st['n_paths']:,} paths x "
        f"{st['horizon_days']:,} days, seed {st['seed']}): {result.n_evaluated} of {st['budget']} configurations "
        + ("evaluated; stopped early (no scenario's best objective improved by "
           f"{100 * st['stop_rel_tol']:g} % over the last {st['stop_window']})." if result.stopped_early
           else "evaluated (the whole budget)."),
        "Best configuration per scenario (objective = mean Sharpe minus the penalties):",
    ]
    for s in result.scenarios:
        r = result.best_per_scenario[s]
        lines.append(f"  {s}: {_describe(r)} -> objective {r[f'{s}_objective']:.3f}, Sharpe {r[f'{s}_sharpe']:.3f}, "
                     f"vol {100 * r[f'{s}_vol']:.1f} %, max drawdown {100 * r[f'{s}_max_drawdown']:.1f} %.")
    r = result.best_robust
    n_s = len(result.scenarios)
    lines.append(f"Most robust: {_describe(r)}: within {100 * (1 - st['robust_fraction']):g} % of the best in "
                 f"{round(r['robustness'] * n_s)} of {n_s} scenarios, mean objective {r['mean_objective']:.3f}.")
    sens = {k: v["mean"] for k, v in result.sensitivity.items()}
    ranked = sorted(sens, key=lambda k: (-abs(sens[k]) if np.isfinite(sens[k]) else 0.0, k))
    lines.append("Sensitivity of the mean objective (Spearman): "
                 + ", ".join(f"{k} {sens[k]:+.2f}" for k in ranked) + f"; strongest: {ranked[0]}.")
    wf = {k: v["mean"] for k, v in result.weight_fn_objective.items()}
    best_fn = max((k for k in wf if np.isfinite(wf[k])), key=lambda k: (wf[k], k))
    lines.append("Mean objective by weight function: " + ", ".join(f"{k} {v:.3f}" for k, v in wf.items())
                 + f"; best on average: {best_fn}.")
    return "\n".join(lines)
