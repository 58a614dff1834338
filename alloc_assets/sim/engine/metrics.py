"""Per-path performance and risk measures in JAX (pure; the conventions of ``alloc_assets.core.report.metrics``).

Every function takes daily simple returns ``returns`` of shape ``(T, ...)`` (axis 0 is time, paths
last) and returns one value per series, shape ``(...)``: 252 periods a year, ``ddof=1``, drawdowns
anchored at wealth 1 before the first return (negative fractions), VaR the 5th percentile (linear
interpolation), CVaR the mean of the worst ``floor((T - 1) 0.05) + 1`` returns. The tests check
each against the NumPy function of the report. ``recovery_days`` and ``vol_cluster_share`` have no
report counterpart (definitions in docs/notes/simulation.md, "Per-path metrics"). Cumulative
quantities are one ``lax.scan`` over time (on XLA CPU several times faster than ``cumprod`` or a
reduction over the leading axis); VaR and CVaR use ``lax.top_k``.
"""

from __future__ import annotations

from enum import Enum

import jax.numpy as jnp
from jax import lax

PERIODS_PER_YEAR = 252
VAR_CUTOFF = 0.05
CLUSTER_WINDOW = 21
CLUSTER_MULTIPLE = 1.5


class PathMetric(str, Enum):
    """Per-path measures of :func:`path_metrics`, in output order."""

    ANNUAL_RETURN = "annual_return"
    ANNUAL_VOLATILITY = "annual_volatility"
    SHARPE = "sharpe"
    MAX_DRAWDOWN = "max_drawdown"
    RECOVERY_DAYS = "recovery_days"
    VAR_95 = "var_95"
    CVAR_95 = "cvar_95"
    WORST_DAY = "worst_day"
    VOL_CLUSTER_SHARE = "vol_cluster_share"


PATH_METRICS: tuple[str, ...] = tuple(m.value for m in PathMetric)


def _stream(returns, window: int = CLUSTER_WINDOW):
    """One scan over time: Welford moments, wealth, drawdown bookkeeping, trailing-window variances."""
    n_t = returns.shape[0]
    batch = returns.shape[1:]
    dt = returns.dtype
    zeros = jnp.zeros(batch, dt)
    lagged = jnp.concatenate([jnp.zeros((min(window, n_t),) + batch, dt), returns[: max(n_t - window, 0)]])

    def body(c, xs):
        t, r, r_old = xs
        n = (t + 1).astype(dt)
        delta = r - c["mean"]
        mean = c["mean"] + delta / n
        m2 = c["m2"] + delta * (r - mean)
        wealth = c["wealth"] * (1.0 + r)
        peak = jnp.maximum(c["peak"], wealth)
        dd = wealth / peak - 1.0
        deeper = dd < c["mdd"]
        back = (~deeper) & (c["recovered"] < 0) & (c["mdd"] < 0) & (wealth >= c["peak_at_trough"])
        s1 = c["s1"] + r - r_old
        s2 = c["s2"] + r * r - r_old * r_old
        new = {
            "mean": mean,
            "m2": m2,
            "wealth": wealth,
            "peak": peak,
            "mdd": jnp.where(deeper, dd, c["mdd"]),
            "trough": jnp.where(deeper, t, c["trough"]),
            "peak_at_trough": jnp.where(deeper, peak, c["peak_at_trough"]),
            "recovered": jnp.where(deeper, -1, jnp.where(back, t, c["recovered"])),
            "worst": jnp.minimum(c["worst"], r),
            "s1": s1,
            "s2": s2,
        }
        var_w = (s2 - s1 * s1 / window) / (window - 1)
        return new, var_w

    init = {
        "mean": zeros,
        "m2": zeros,
        "wealth": jnp.ones(batch, dt),
        "peak": jnp.ones(batch, dt),
        "mdd": zeros,
        "trough": jnp.zeros(batch, jnp.int32),
        "peak_at_trough": jnp.ones(batch, dt),
        "recovered": jnp.full(batch, -1, jnp.int32),
        "worst": jnp.full(batch, jnp.inf, dt),
        "s1": zeros,
        "s2": zeros,
    }
    final, var_w = lax.scan(body, init, (jnp.arange(n_t, dtype=jnp.int32), returns, lagged))
    final["var"] = final["m2"] / (n_t - 1)
    final["var_window"] = var_w
    return final


def cagr(returns, periods_per_year: int = PERIODS_PER_YEAR):
    """``prod(1 + r) ** (periods_per_year / T) - 1``; NaN where the growth is negative."""
    return _cagr(_stream(returns), returns.shape[0], periods_per_year)


def _cagr(s, n_t, periods_per_year=PERIODS_PER_YEAR):
    growth = s["wealth"]
    return jnp.where(growth < 0, jnp.nan, jnp.abs(growth) ** (periods_per_year / n_t) - 1.0)


def annual_volatility(returns, periods_per_year: int = PERIODS_PER_YEAR):
    """Sample standard deviation (``ddof=1``) times ``sqrt(periods_per_year)``."""
    return jnp.sqrt(_stream(returns)["var"] * periods_per_year)


def sharpe_ratio(returns, risk_free=0.0, periods_per_year: int = PERIODS_PER_YEAR):
    """``mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year)``, ``rf`` a daily rate."""
    return _sharpe(_stream(returns), risk_free, periods_per_year)


def _sharpe(s, risk_free, periods_per_year=PERIODS_PER_YEAR):
    return (s["mean"] - risk_free) / jnp.sqrt(s["var"]) * jnp.sqrt(float(periods_per_year))


def max_drawdown(returns):
    """Most negative drawdown (0 when wealth never falls below a previous peak)."""
    return _stream(returns)["mdd"]


def drawdown_series(returns):
    """Drawdown after each return (T, ...), a fraction ``<= 0`` of the running peak, the peak
    starting at wealth 1 before the first return (the recursion of :func:`max_drawdown`)."""
    dt = returns.dtype
    batch = returns.shape[1:]

    def body(c, r):
        wealth = c[0] * (1.0 + r)
        peak = jnp.maximum(c[1], wealth)
        return (wealth, peak), wealth / peak - 1.0

    return lax.scan(body, (jnp.ones(batch, dt), jnp.ones(batch, dt)), returns)[1]


def recovery_days(returns):
    """Days from the maximum drawdown's trough to regaining the peak before it (see the module docstring)."""
    return _recovery(_stream(returns))


def _recovery(s):
    dt = s["mdd"].dtype
    days = (s["recovered"] - s["trough"]).astype(dt)
    return jnp.where(s["mdd"] < 0, jnp.where(s["recovered"] >= 0, days, jnp.nan), 0.0)


def _smallest(returns, k: int):
    """The ``k`` smallest returns of each series in ascending order, shape ``(k, ...)``."""
    neg, _ = lax.top_k(-jnp.moveaxis(returns, 0, -1), k)
    return jnp.moveaxis(-neg, -1, 0)


def _var_from(smallest, n: int, cutoff: float):
    h = (n - 1) * cutoff
    lo = int(h)
    frac = h - lo
    a = smallest[lo]
    b = smallest[min(lo + 1, n - 1)]
    return jnp.where(frac >= 0.5, b - (b - a) * (1.0 - frac), a + (b - a) * frac)  # numpy's lerp


def _tail_k(n: int, cutoff: float) -> int:
    return min(int((n - 1) * cutoff) + 2, n)


def value_at_risk(returns, cutoff: float = VAR_CUTOFF):
    """``np.percentile(r, 100 cutoff)`` (linear interpolation between order statistics)."""
    n = returns.shape[0]
    return _var_from(_smallest(returns, _tail_k(n, cutoff)), n, cutoff)


def conditional_value_at_risk(returns, cutoff: float = VAR_CUTOFF):
    """Mean of the worst ``floor((T - 1) cutoff) + 1`` returns (empyrical)."""
    return _cvar_from(_smallest(returns, _tail_k(returns.shape[0], cutoff)), returns.shape[0], cutoff)


def _cvar_from(smallest, n: int, cutoff: float):
    k = int((n - 1) * cutoff)
    total = smallest[0]
    for i in range(1, k + 1):
        total = total + smallest[i]
    return total / (k + 1)


def worst_day(returns):
    """The lowest daily return."""
    return _stream(returns)["worst"]


def vol_cluster_share(returns, window: int = CLUSTER_WINDOW, multiple: float = CLUSTER_MULTIPLE):
    """Share of days in volatility clusters (see the module docstring); NaN if ``T < window``."""
    return _clusters(_stream(returns, window), returns.shape[0], window, multiple)


def _clusters(s, n_t, window=CLUSTER_WINDOW, multiple=CLUSTER_MULTIPLE):
    if n_t < window:
        return jnp.full(s["var"].shape, jnp.nan, s["var"].dtype)
    threshold = multiple**2 * s["var"]
    count, _ = lax.scan(lambda c, v: (c + (v > threshold).astype(jnp.int32), None),
                        jnp.zeros(threshold.shape, jnp.int32), s["var_window"][window - 1 :])
    return count.astype(s["var"].dtype) / (n_t - window + 1)


def path_metrics(returns, risk_free=0.0) -> dict:
    """Every :class:`PathMetric` of each series: ``{name: array (...)}``; ``risk_free`` daily."""
    n_t = returns.shape[0]
    s = _stream(returns)
    tail = _smallest(returns, _tail_k(n_t, VAR_CUTOFF))
    return {
        PathMetric.ANNUAL_RETURN.value: _cagr(s, n_t),
        PathMetric.ANNUAL_VOLATILITY.value: jnp.sqrt(s["var"] * PERIODS_PER_YEAR),
        PathMetric.SHARPE.value: _sharpe(s, risk_free),
        PathMetric.MAX_DRAWDOWN.value: s["mdd"],
        PathMetric.RECOVERY_DAYS.value: _recovery(s),
        PathMetric.VAR_95.value: _var_from(tail, n_t, VAR_CUTOFF),
        PathMetric.CVAR_95.value: _cvar_from(tail, n_t, VAR_CUTOFF),
        PathMetric.WORST_DAY.value: s["worst"],
        PathMetric.VOL_CLUSTER_SHARE.value: _clusters(s, n_t),
    }
