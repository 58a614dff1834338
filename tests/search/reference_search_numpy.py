"""NumPy reference of the search's strategy rule: one configuration in float64, a loop over days,
paths vectorised. An independent implementation of
:func:`alloc_assets.sim.search.rule.evaluate_strategies` (same definitions, other code), used by the
tests and by ``benchmarks/bench_search.py``.
"""

from __future__ import annotations

import numpy as np

from alloc_assets.sim.models.world import TRADING_DAYS_PER_YEAR
from alloc_assets.sim.search.rule import REBALANCE_DAYS, TINY, WEIGHT_FUNCTIONS


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
        sig = np.maximum(sig, TINY)
        tau = max(target_vol, TINY)
        if name == "vol_ratio":
            return np.minimum(1.0, tau / sig)
        if name == "vol_ratio_squared":
            return np.minimum(1.0, (tau / sig) ** 2)
        if name == "linear_taper":
            return np.clip(1.0 - (sig - tau) / (risk_aversion * tau), 0.0, 1.0)
        if name == "logistic_taper":
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
