"""The audit sections of the comparison report (pure; no Dagster import).

Built from plain arrays: the dates, the books (baseline, scaled and each control, all from the same
engine with the same costs, cash rate, lag and overlay cadence), the governor's scalar in force, the
benchmark's closes and the latest regime output. Report keys:

- ``benchmark {name, metrics}``: the benchmark index held from the first day (buy and hold);
- ``controls {exposure_matched, vol_cap, jump_model}``: each the metrics block plus its settings;
- ``episodes [...]``: every baseline drawdown deeper than 15 %, found from the data
  (``core.report.episodes``), with the depth of each book and when the governor de-risked;
- ``significance {<metric>:<a>-<b>: {estimate, ci_low, ci_high, method, ...}}``: stationary block
  bootstrap of the deltas of Sharpe, MaxDD and Calmar of the scaled book against the baseline and
  against ``exposure_matched`` (``core.report.bootstrap``);
- ``subperiods [{start, end, metrics}]``: each third of the window;
- ``exposure``: gross exposure (sum of the asset weights) of the baseline and the scaled book;
- ``today``: the latest regime, its probabilities, the scalar in force and the one computed next;
- ``headline``: the MaxDD gain beside the CAGR cost, in points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from alloc_assets.core.common.dates import iso_day
from alloc_assets.core.regime import REGIME_LABELS
from alloc_assets.core.portfolio.backtest import BacktestResult
from alloc_assets.core.report.episodes import drawdown_episodes
from alloc_assets.core.report.metrics import compute_metrics
from alloc_assets.core.report.bootstrap import bootstrap_deltas
from alloc_assets.core.report.subperiods import subperiod_table

EPISODE_THRESHOLD = 0.15
BOOTSTRAP_DRAWS = 1000
BOOTSTRAP_SEED = 0
BOOTSTRAP_LEVEL = 0.90
SIGNIFICANCE_METRICS = ("sharpe", "max_drawdown", "calmar")


def benchmark_block(dates: np.ndarray, close: np.ndarray, name: str, risk_free: float = 0.0) -> dict[str, Any]:
    """Buy and hold of the benchmark over the report's days (wealth 1 before the first day; the
    first day earns nothing: there is no earlier close in the window)."""
    c = np.asarray(close, dtype=np.float64)
    r = np.zeros(c.size)
    r[1:] = c[1:] / c[:-1] - 1.0
    return {"name": name, "metrics": compute_metrics(r, dates, None, risk_free), "returns": r}


def episodes_block(dates: np.ndarray, books: Mapping[str, BacktestResult], governor_daily: np.ndarray,
                   threshold: float = EPISODE_THRESHOLD) -> list[dict[str, Any]]:
    """The ``episodes`` list in the report's shape."""
    others = {k: v.equity for k, v in books.items() if k != "baseline"}
    out = []
    for e in drawdown_episodes(dates, books["baseline"].equity, others, governor_daily, threshold):
        j = e.to_json()
        out.append({
            "peak": j["peak"], "trough": j["trough"], "recovery": j["recovery"],
            "depth": j["depths"],
            "first_derisk_date": j["first_derisk_date"],
            "first_derisk_days_from_peak": j["derisk_days_from_peak"],
            "first_derisk_days_from_trough": j["derisk_days_from_trough"],
            "derisk_share_before_trough": j["derisk_before_trough_share"],
            "length_days": j["length_days"],
            "scalar_at_peak": j["scalar_at_peak"],
        })
    return out


def significance_block(returns: Mapping[str, np.ndarray], pairs: Sequence[tuple[str, str]], risk_free: float = 0.0,
                       n_draws: int = BOOTSTRAP_DRAWS, seed: int = BOOTSTRAP_SEED, level: float = BOOTSTRAP_LEVEL) -> dict[str, Any]:
    """``{"<metric>:<a>-<b>": {estimate, ci_low, ci_high, method, level, std_error, p_positive,
    n_draws, block_length}}`` for each pair and each of Sharpe, MaxDD and Calmar."""
    books = {k: returns[k] for k in dict.fromkeys([p for pair in pairs for p in pair])}
    res = bootstrap_deltas(books, pairs, n_draws=n_draws, seed=seed, risk_free=risk_free, level=level)
    out: dict[str, Any] = {}
    for pair in res["pairs"]:
        for metric in SIGNIFICANCE_METRICS:
            d = pair["deltas"][metric]
            out[f"{metric}:{pair['a']}-{pair['b']}"] = {
                "estimate": d["point"], "ci_low": d["ci_lower"], "ci_high": d["ci_upper"],
                "method": f"{res['method']}, {res['n_draws']} draws, mean block {res['block_length']} days, seed {res['seed']}",
                "level": res["level"], "std_error": d["std_error"], "p_positive": d["p_positive"],
                "n_draws": res["n_draws"], "block_length": res["block_length"],
            }
    return out


def subperiods_block(dates: np.ndarray, returns: Mapping[str, np.ndarray], risk_free: float = 0.0, parts: int = 3) -> list[dict[str, Any]]:
    """``[{start, end, days, metrics: {book: {cagr, sharpe, max_drawdown, calmar}}, delta_vs_baseline}]``."""
    rows = subperiod_table(dates, returns, n_parts=parts, risk_free=risk_free)
    out = []
    for r in rows:
        out.append({"start": r["start"], "end": r["end"], "days": r.get("n_days"),
                    "metrics": r["books"], "delta_vs_baseline": r.get("delta_vs_baseline", {})})
    return out


def exposure_block(dates: np.ndarray, books: Mapping[str, BacktestResult], first_invested: int) -> dict[str, Any]:
    """Gross exposure (sum of asset weights at each close) of each book from the strategy's first
    trade: mean, min, max, the share of days holding more than 1 % cash, and a yearly mean."""
    d = np.asarray(dates, dtype="datetime64[D]")[first_invested:]
    years = d.astype("datetime64[Y]").astype(int) + 1970
    out: dict[str, Any] = {}
    yearly: dict[int, dict[str, float]] = {}
    for name, b in books.items():
        g = b.weights.sum(axis=1)[first_invested:]
        if g.size == 0:
            continue
        out[name] = {"mean": float(g.mean()), "min": float(g.min()), "max": float(g.max()),
                     "cash_over_1pct_share": float(np.mean(g < 0.99))}
        for y in np.unique(years):
            yearly.setdefault(int(y), {})[name] = float(g[years == y].mean())
    out["yearly"] = [{"year": y, **v} for y, v in sorted(yearly.items())]
    return out


def today_block(dates: np.ndarray, labels: Sequence[str], probs: np.ndarray, governor_daily: np.ndarray,
                next_scalar: float | None, next_computed_on) -> dict[str, Any]:
    """The latest day: regime and probabilities, the scalar in force, and the scalar the next overlay
    date will apply (computed at the latest overlay date), with an early warning when it differs."""
    p = np.asarray(probs, dtype=np.float64)[-1]
    in_force = float(np.asarray(governor_daily)[-1])
    warning = None
    if next_scalar is not None and abs(next_scalar - in_force) > 1e-9:
        verb = "cut" if next_scalar < in_force else "raise"
        warning = f"the next overlay date will {verb} the scalar from {in_force:.2f} to {next_scalar:.2f}"
    elif p[2] + p[3] >= 0.4:
        warning = f"P(STRESS or worse) = {p[2] + p[3]:.2f}"
    return {
        "date": iso_day(np.asarray(dates)[-1]), "regime": str(labels[-1]),
        "probabilities": {name: float(p[k]) for k, name in enumerate(REGIME_LABELS)},
        "scalar_in_force": in_force,
        "next_scalar": None if next_scalar is None else float(next_scalar),
        "next_scalar_computed_on": None if next_computed_on is None else iso_day(next_computed_on),
        "early_warning": warning,
    }


def headline_block(baseline: Mapping[str, float], scaled: Mapping[str, float]) -> dict[str, Any]:
    """The MaxDD gain beside the CAGR cost (points; positive gain = shallower, positive cost = lower CAGR)."""
    def f(x):
        return None if x is None or not np.isfinite(x) else float(x)
    gain = f(scaled["max_drawdown"] - baseline["max_drawdown"])
    cost = f(baseline["cagr"] - scaled["cagr"])
    return {"maxdd_gain_pts": None if gain is None else 100 * gain, "cagr_cost_pts": None if cost is None else 100 * cost,
            "sharpe_change": f(scaled["sharpe"] - baseline["sharpe"])}
