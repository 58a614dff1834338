"""The strategy kernel in NumPy, a test and benchmark reference: the same computation as
``sim.engine.kernel.run_strategies`` for a ``WorldModel``, vectorised over paths with a Python loop over days.

It runs the very same allocator and book code (``sim.engine.allocator.allocator_day``, ``sim.engine.books``) with
the NumPy backend, the regime-switching step written with NumPy, and the report's NumPy metrics
(``alloc_assets.core.report.metrics``) plus NumPy versions of the two simulation-only measures. Its random
numbers come from ``numpy.random.Generator`` (not JAX's), so paths differ from the JAX engine's;
distributions and per-path arithmetic do not. It exists as the speed reference of the benchmark and
as an independent check of the metrics.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from alloc_assets.core.report import metrics as core_metrics
from alloc_assets.core.report.metrics import daily_rate
from alloc_assets.sim.engine import allocator as alloc
from alloc_assets.sim.engine import allocator_state as alloc_state
from alloc_assets.sim.engine.backend import NUMPY
from alloc_assets.sim.engine import books as strat
from alloc_assets.sim.models.calendar import SimCalendar
from alloc_assets.sim.engine.kernel import BOOKS
from alloc_assets.sim.engine.metrics import CLUSTER_MULTIPLE, CLUSTER_WINDOW, PATH_METRICS
from alloc_assets.sim.models.world import WorldModel


def recovery_days_np(returns: np.ndarray) -> np.ndarray:
    """``metrics.recovery_days`` in NumPy, returns (T, ...) -> (...)."""
    wealth = np.cumprod(1.0 + returns, axis=0)
    peak = np.maximum(np.maximum.accumulate(wealth, axis=0), 1.0)
    dd = wealth / peak - 1.0
    trough = np.argmin(dd, axis=0)
    peak_at = np.take_along_axis(peak, trough[None], axis=0)[0]
    t = np.arange(returns.shape[0]).reshape((-1,) + (1,) * (returns.ndim - 1))
    back = (t > trough[None]) & (wealth >= peak_at[None])
    days = (np.argmax(back, axis=0) - trough).astype(float)
    mdd = dd.min(axis=0)
    return np.where(mdd < 0, np.where(back.any(axis=0), days, np.nan), 0.0)


def vol_cluster_share_np(returns: np.ndarray, window: int = CLUSTER_WINDOW, multiple: float = CLUSTER_MULTIPLE) -> np.ndarray:
    """``metrics.vol_cluster_share`` in NumPy (window sums of demeaned returns, float64), (T, ...) -> (...)."""
    n = returns.shape[0]
    if n < window:
        return np.full(returns.shape[1:], np.nan)
    c = np.asarray(returns, dtype=np.float64) - np.mean(returns, axis=0)
    zero = np.zeros((1,) + c.shape[1:])
    s1 = np.concatenate([zero, np.cumsum(c, axis=0)])
    s2 = np.concatenate([zero, np.cumsum(c * c, axis=0)])
    w1 = s1[window:] - s1[:-window]
    var_w = (s2[window:] - s2[:-window] - w1 * w1 / window) / (window - 1)
    return np.mean(var_w > multiple**2 * np.var(returns, axis=0, ddof=1), axis=0)


def path_metrics_np(returns: np.ndarray, risk_free: float = 0.0) -> dict:
    """Every ``PathMetric`` from (T, P) returns with the report's NumPy functions."""
    out = {
        "annual_return": core_metrics.cagr(returns),
        "annual_volatility": core_metrics.annual_volatility(returns),
        "sharpe": core_metrics.sharpe_ratio(returns, risk_free),
        "max_drawdown": core_metrics.max_drawdown(returns),
        "recovery_days": recovery_days_np(returns),
        "var_95": np.percentile(returns, 5.0, axis=0),
        "cvar_95": np.mean(np.partition(returns, int((returns.shape[0] - 1) * 0.05), axis=0)[: int((returns.shape[0] - 1) * 0.05) + 1], axis=0),
        "worst_day": returns.min(axis=0),
        "vol_cluster_share": vol_cluster_share_np(returns),
    }
    assert tuple(out) == PATH_METRICS
    return out


def _world_step(world: WorldModel, state: tuple, t: int, rng: np.random.Generator, dtype):
    k, n = world.means.shape
    regime, f = state
    cum = np.cumsum(np.asarray(world.transition, dtype=dtype), axis=1)
    u = rng.random(regime.shape[0], dtype=dtype)
    regime = np.sum(u[None, :] >= cum[regime].T[:-1], axis=0)
    z = rng.standard_normal((n, regime.shape[0]), dtype=dtype)
    chol = np.asarray(world.chol, dtype=dtype)
    shocks = np.einsum("kij,jb->kib", chol, z)
    eps = np.take_along_axis(shocks, regime[None, None, :], axis=0)[0]
    mean = np.asarray(world.means, dtype=dtype).T[:, regime]
    zc, zf = rng.standard_normal((2, regime.shape[0]), dtype=dtype)
    m0 = np.asarray(world.vol_multiplier0, dtype=dtype)
    mult = 1.0 + (m0 - 1.0) * float(world.vol_decay) ** (t - 1)
    expo = np.asarray(world.var_exposure, dtype=dtype)[:, None]
    scale = mult[:, None] * (1.0 + expo * (np.sqrt(np.maximum(f, 0.0))[None, :] - 1.0))
    common = (np.asarray(world.factor_load, dtype=dtype) * float(world.factor_decay) ** (t - 1))[:, None] * zc[None, :]
    days = float(world.shock_days)
    drift = np.asarray(world.jump, dtype=dtype)[:, None] / days if t <= days else 0.0
    r = mean + scale * eps + common + drift
    f = np.maximum(f + float(world.var_kappa) * (1.0 - f) + float(world.var_xi) * np.sqrt(f) * zf, 0.0)
    return (regime, f.astype(dtype)), r.astype(dtype)


def run_strategies_numpy(
    world: WorldModel,
    n_paths: int,
    calendar: SimCalendar,
    seed: int,
    start: alloc_state.AllocatorStart | None = None,
    allocator: alloc_state.AllocatorConfig = alloc_state.AllocatorConfig(),
    strategy: strat.StrategyConfig = strat.StrategyConfig(),
    cash_rate_annual: float = 0.0,
    dtype=np.float32,
) -> dict:
    """Per-path metrics ``{"baseline" | "allocator": {metric: (n_paths,)}}`` (see the module docstring)."""
    if strategy.kind is strat.BaselineKind.INVERSE_VOL_REGIME:
        raise ValueError("the NumPy kernel implements equal_weight and inverse_vol")
    be = NUMPY
    rng = np.random.default_rng(seed)
    n_assets = world.n_assets
    if start is None:
        start = alloc_state.fresh_state(np.ones(n_assets), allocator)
    cuts = np.concatenate([[0], np.flatnonzero(calendar.refresh), [calendar.horizon + 1]])
    state = alloc_state.with_score_buffer(start.state, int(np.diff(cuts).max()))
    state = alloc_state.broadcast_state(state, n_paths, dtype, xp=np)
    cash = dtype(daily_rate(cash_rate_annual))
    warm_days = allocator.features.warm_days
    p0 = np.cumsum(np.asarray(world.p0, dtype=dtype))
    regime = np.sum(rng.random(n_paths, dtype=dtype)[None, :] >= p0[:-1, None], axis=0)
    mstate = (regime, np.full(n_paths, float(world.var0), dtype=dtype))

    def targets(st, applied):
        raw = strat.raw_targets(strategy, n_assets, n_paths, dtype, st.cov_long, None, be)
        return strat.book_targets(raw, applied, be)

    books = strat.init_books(n_assets, n_paths, dtype, be)
    if start.fresh:
        state, out0 = alloc.allocator_day(state, None, start.row0 >= warm_days, bool(calendar.refresh[0]), True, allocator, be, advance=False)
        applied0 = out0["applied"]
    else:
        applied0 = np.where(np.isfinite(state.pending), state.pending, allocator.apply_missing_scalar_as).astype(dtype)
        state = dataclasses.replace(state, pending=state.scalar)
    books, _ = strat.trade(books, targets(state, applied0), True, strategy.cost_bps, be)
    rets = np.empty((calendar.horizon, 2, n_paths), dtype=dtype)
    for t in range(1, calendar.horizon + 1):
        mstate, r = _world_step(world, mstate, t, rng, dtype)
        books, gross = strat.drift(books, np.expm1(r), cash, be)
        state, out = alloc.allocator_day(state, r, start.row0 + t >= warm_days, bool(calendar.refresh[t]),
                                         bool(calendar.rebalance[t]), allocator, be)
        books, cost = strat.trade(books, targets(state, out["applied"]), bool(calendar.rebalance[t]), strategy.cost_bps, be)
        rets[t - 1] = gross - cost
    rf = daily_rate(cash_rate_annual)
    return {book: path_metrics_np(rets[:, i].astype(np.float64), rf) for i, book in enumerate(BOOKS)}
