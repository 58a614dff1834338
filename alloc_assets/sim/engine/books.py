"""Strategies run on every simulated path: a baseline and the same baseline under the allocator.

Both books follow the accounting of ``alloc_assets.core.portfolio.backtest.run_backtest`` (the tests
check the daily returns against it on the same path): weights decided at the close of day t earn
day t + 1's returns, drift between trades, pay ``cost_bps`` of the turnover at a trade, and the
unscaled remainder earns ``cash_rate``. The allocator book trades to ``scalar x target`` with the
scalar computed at the previous rebalance. Raw targets (:class:`BaselineKind`): equal weight,
inverse volatility (encoder's long EWMA covariance) or inverse volatility under the
regime-weighted covariance. Risk limits, smooth transitions and other pipeline profiles are not
simulated. Details in docs/notes/simulation.md ("Books").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

import jax

from alloc_assets.sim.engine.backend import JAX, Backend


class BaselineKind(str, Enum):
    """Raw target weights of the simulated baseline (see the module docstring)."""

    EQUAL_WEIGHT = "equal_weight"
    INVERSE_VOL = "inverse_vol"
    INVERSE_VOL_REGIME = "inverse_vol_regime"


@dataclass(frozen=True)
class StrategyConfig:
    """Settings of the simulated books.

    kind : raw target rule (static: each kind is its own compiled program).
    cost_bps : cost per unit of traded notional (basis points); the engine passes it as a traced
        value, so changing it never recompiles.
    """

    kind: BaselineKind = BaselineKind.EQUAL_WEIGHT
    cost_bps: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", BaselineKind(self.kind))
        if self.cost_bps < 0:
            raise ValueError(f"cost_bps must be >= 0, got {self.cost_bps}")


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Books:
    """Both books of a block of paths: weights (2, N, B) and cash (2, B); index 0 baseline, 1 allocator."""

    weights: jax.Array
    cash: jax.Array


def raw_targets(config: StrategyConfig, n_assets: int, n_paths: int, dtype, cov_long=None, regime_var=None, backend: Backend = JAX):
    """Raw target weights (N, B) at the close of the day.

    cov_long : the encoder's long EWMA covariance of the feature assets as row groups
        (``AllocatorState.cov_long``; ``inverse_vol``; assets beyond the feature assets get their
        mean inverse volatility).
    regime_var : (N, B) regime-weighted daily variances (``inverse_vol_regime``).
    """
    xp = backend.xp
    if config.kind is BaselineKind.EQUAL_WEIGHT:
        return xp.full((n_assets, n_paths), 1.0 / n_assets, dtype=dtype)
    if config.kind is BaselineKind.INVERSE_VOL:
        nf = len(cov_long)
        inv = 1.0 / xp.sqrt(xp.stack([g[0] for g in cov_long]))
        if n_assets > nf:
            inv = xp.concatenate([inv, xp.broadcast_to(backend.sum0(inv) / nf, (n_assets - nf, n_paths))])
    else:
        inv = 1.0 / xp.sqrt(regime_var)
    return inv / backend.sum0(inv)


def init_books(n_assets: int, n_paths: int, dtype, backend: Backend = JAX) -> Books:
    """Both books all in cash (before the day-0 trade)."""
    return Books(backend.xp.zeros((2, n_assets, n_paths), dtype), backend.xp.ones((2, n_paths), dtype))


def _sum_assets(x, backend: Backend):
    """(2, N, B) -> (2, B), summed over the assets."""
    if not backend.is_jax:
        return x.sum(axis=1)
    out = x[:, 0]
    for i in range(1, x.shape[1]):
        out = out + x[:, i]
    return out


def drift(books: Books, simple_returns, cash_rate, backend: Backend = JAX):
    """Earn one day: returns ``(books, gross (2, B))``; ``simple_returns`` (N, B), ``cash_rate`` daily."""
    gross = _sum_assets(books.weights * simple_returns[None], backend) + books.cash * cash_rate
    grow = 1.0 / (1.0 + gross)
    w = books.weights * (1.0 + simple_returns[None]) * grow[:, None, :]
    cash = books.cash * (1.0 + cash_rate) * grow
    return Books(w, cash), gross


def trade(books: Books, targets, rebalance, cost_bps: float | None, backend: Backend = JAX, cost_rate=None):
    """Trade both books to ``targets`` (2, N, B) where ``rebalance`` (scalar bool) holds.

    Returns ``(books, cost (2, B))`` with ``cost = turnover * bps / 1e4`` (0 where no trade).
    ``cost_rate`` (= bps / 1e4, e.g. a traced array) replaces ``cost_bps`` when given.
    """
    xp = backend.xp
    turnover = _sum_assets(xp.abs(targets - books.weights), backend)
    rate = cost_bps / 1e4 if cost_rate is None else cost_rate
    cost = xp.where(rebalance, turnover * rate, 0.0)
    w = xp.where(rebalance, targets, books.weights)
    cash = xp.where(rebalance, 1.0 - _sum_assets(targets, backend), books.cash)
    return Books(w, cash), cost


def book_targets(raw, applied, backend: Backend = JAX):
    """(2, N, B): the raw target for the baseline, ``applied x raw`` for the allocator book."""
    return backend.xp.stack([raw, raw * applied[None, :]])


def replace(books: Books, **kw) -> Books:
    return dataclasses.replace(books, **kw)
