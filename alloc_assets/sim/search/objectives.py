"""Scoring the search's configurations: the investment objectives as per-path constraints, the
objective of a configuration in a scenario, robustness across scenarios, rank sensitivity.

Objective = mean Sharpe over the paths minus ``penalty`` times the share of paths violating each
constraint of :class:`InvestmentObjectives`. Robustness = share of scenarios where a configuration
reaches ``best - (1 - fraction) |best|`` of that scenario's best objective.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InvestmentObjectives:
    """The investment objectives (volatility, drawdown, VaR, CVaR, cost) as per-path constraints, and
    the penalty per violated one.

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
