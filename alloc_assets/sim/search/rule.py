"""The strategy rule of the search: a monthly-rebalanced equity/bond book whose equity weight
follows an EWMA volatility estimate, evaluated on simulated paths (JAX, one compilation).

Weights are set at the close of day 0 (free of cost) and of days 21, 42, ... (not the horizon's last
day); the book drifts in between. The equity weight ``w`` (rest in the bond) is, with ``x = tau /
sigma_hat`` and ``e = (sigma_hat - tau) / tau``: ``vol_ratio`` ``min(1, x)``, ``vol_ratio_squared``
``min(1, x^2)``, ``linear_taper`` ``clip(1 - e / lambda, 0, 1)``, ``logistic_taper``
``1 / (1 + exp(lambda e))`` (:data:`WEIGHT_FUNCTIONS`); ``sigma_hat`` is the annualised,
bias-corrected EWMA volatility of daily equity returns (zero mean, half-life ``21 window_months / 2``
days, fed by ``warmup_days`` of pre-history). Cost per unit of turnover ``sum_i |target_i -
drifted_i|`` is subtracted from the rebalance day's return. Per-path metrics follow
``alloc_assets.sim.engine.metrics`` (Sharpe in excess of the scenario's rate; VaR and CVaR of DAILY
returns). Details: docs/notes/search.md.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from alloc_assets.sim.engine import metrics as sim_metrics
from alloc_assets.sim.models.world import TRADING_DAYS_PER_YEAR
from alloc_assets.sim.search.markets import DTYPE, TRACES, MarketPaths

REBALANCE_DAYS = 21
WEIGHT_FUNCTIONS: tuple[str, ...] = ("vol_ratio", "vol_ratio_squared", "linear_taper", "logistic_taper")
PARAMETERS: tuple[str, ...] = ("target_vol", "window_months", "risk_aversion", "cost_bps", "weight_fn")
TINY = 1e-12  # floor of sigma_hat and tau in the weight functions


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
    sig = jnp.maximum(sigma_hat, TINY)
    tau = jnp.maximum(target_vol, TINY)
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
    TRACES["evaluate"] += 1  # Python side effect: runs once per trace (= per compilation)
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
