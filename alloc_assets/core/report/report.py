"""The two-pass comparison report: a JSON-ready dict built from plain arrays (pure).

Takes the dates, the two :class:`~alloc_assets.core.portfolio.backtest.BacktestResult`, the applied
scalars with their dates and one regime label per day, so it depends on no other layer's code.
:data:`REPORT_KEYS` is the contract (key by key in ``docs/notes/report.md``, section "Report
contract"); the audit sections come from :mod:`alloc_assets.core.report.sections`, the text
renderings from :mod:`alloc_assets.core.report.rendering`.

Conventions: dates are ISO strings; numbers plain ``int``/``float``; ``nan`` is ``null``; ``delta``
is ``scaled - baseline``; a rebalance counts as scaled when its scalar is below 1 by more than 1e-9.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from alloc_assets.core.common.dates import iso_day
from alloc_assets.core.regime import REGIME_LABELS
from alloc_assets.core.report.sections import (
    BOOTSTRAP_DRAWS,
    BOOTSTRAP_SEED,
    benchmark_block,
    episodes_block,
    exposure_block,
    headline_block,
    significance_block,
    subperiods_block,
    today_block,
)
from alloc_assets.core.portfolio.backtest import BacktestResult, scalar_in_force
from alloc_assets.core.report.metrics import PERIODS_PER_YEAR, compute_metrics, metric_delta
from alloc_assets.core.report.verdict import VerdictEvidence, VerdictThresholds, market_conditions, verdict

REGIMES: tuple[str, ...] = REGIME_LABELS
REPORT_KEYS: tuple[str, ...] = (
    "window",
    "profile",
    "allocator",
    "metrics",
    "allocator_usage",
    "regime_distribution",
    "regime_transitions",
    "top_derisk_events",
    "verdict",
    "benchmark",
    "controls",
    "episodes",
    "significance",
    "subperiods",
    "exposure",
    "today",
    "headline",
    "data",
)
USAGE_KEYS: tuple[str, ...] = ("rebalances", "scaled_rebalances", "scaled_fraction", "scalar_mean", "scalar_min", "scalar_max")
TOP_EVENTS = 10
_SCALED_TOL = 1e-9

def jsonable(value: Any) -> Any:
    """Recursively turn numpy scalars/arrays into Python ones and ``nan``/``inf`` into ``None``."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, (np.datetime64, pd.Timestamp)):
        return iso_day(value)
    if hasattr(value, "value") and isinstance(getattr(value, "value"), str):  # Enum members
        return value.value
    return value


def _day_positions(dates: np.ndarray, when: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(dates, when)
    ok = (pos < dates.size) & (dates[np.minimum(pos, dates.size - 1)] == when)
    if not ok.all():
        bad = when[~ok][0]
        raise ValueError(f"scalar date {iso_day(bad)} is not one of the report's dates ({iso_day(dates[0])}..{iso_day(dates[-1])})")
    return pos


def allocator_usage(scalars: np.ndarray) -> dict[str, float | int | None]:
    """The ``allocator_usage`` block from the applied scalars (R,)."""
    s = np.asarray(scalars, dtype=np.float64)
    scaled = int(np.sum(s < 1.0 - _SCALED_TOL))
    if s.size == 0:
        return {"rebalances": 0, "scaled_rebalances": 0, "scaled_fraction": None, "scalar_mean": None, "scalar_min": None, "scalar_max": None}
    return {
        "rebalances": int(s.size),
        "scaled_rebalances": scaled,
        "scaled_fraction": scaled / s.size,
        "scalar_mean": float(s.mean()),
        "scalar_min": float(s.min()),
        "scalar_max": float(s.max()),
    }


def regime_distribution(labels: Sequence[str]) -> dict[str, dict[str, float | int]]:
    """Days and fraction of days per regime label (the four regimes always present)."""
    lab = [str(x) for x in labels]
    counts = Counter(lab)
    names = list(REGIMES) + sorted(set(counts) - set(REGIMES))
    total = len(lab)
    return {name: {"days": int(counts.get(name, 0)), "fraction": (counts.get(name, 0) / total) if total else 0.0} for name in names}


def regime_transitions(labels: Sequence[str]) -> dict[str, Any]:
    """Number of label changes, changes per year (252 days), and the day-pair count matrix."""
    lab = np.asarray([str(x) for x in labels], dtype=object)
    names = list(REGIMES) + sorted(set(lab.tolist()) - set(REGIMES))
    matrix = {a: {b: 0 for b in names} for a in names}
    for (a, b), c in Counter(zip(lab[:-1].tolist(), lab[1:].tolist())).items():
        matrix[a][b] = c
    count = int(np.sum(lab[1:] != lab[:-1])) if lab.size > 1 else 0
    years = lab.size / PERIODS_PER_YEAR
    return {"count": count, "per_year": count / years if years > 0 else 0.0, "matrix": matrix}


def top_derisk_events(scalar_dates: np.ndarray, scalars: np.ndarray, regimes_at: Sequence[str], top: int = TOP_EVENTS) -> list[dict]:
    """The ``top`` lowest applied scalars below 1, lowest first: ``[{date, scalar, regime}]``."""
    s = np.asarray(scalars, dtype=np.float64)
    order = np.lexsort((np.arange(s.size), s))
    events = []
    for i in order:
        if not s[i] < 1.0 - _SCALED_TOL or len(events) >= top:
            break
        events.append({"date": iso_day(scalar_dates[i]), "scalar": float(s[i]), "regime": str(regimes_at[i])})
    return events


def governor_samples(dates: np.ndarray, applied_dates: np.ndarray, applied: np.ndarray, first_trade,
                     off: bool, missing_as: float) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
    """The governor's scalar in force each day (1 throughout when the allocator is off), the row of
    the strategy's first trade (``first_trade`` a date, or None: no trade), and the overlay dates
    from that row on with their scalars: the verdict and the usage block sample the governor there
    (every date counts once; trade rows would over-weight the dates where it changed)."""
    governor = np.ones(len(dates)) if off else scalar_in_force(dates, applied_dates, applied, missing_as)
    first = int(np.searchsorted(dates, np.datetime64(first_trade, "D"))) if first_trade is not None else len(dates)
    on = applied_dates >= dates[min(first, len(dates) - 1)]
    scalars = np.ones(int(on.sum())) if off else applied[on]
    return governor, first, applied_dates[on], scalars


def build_report(
    dates: np.ndarray,
    baseline: BacktestResult,
    scaled: BacktestResult,
    scalar_dates: np.ndarray,
    scalars: np.ndarray,
    regime_labels: Sequence[str],
    *,
    profile: str,
    mode: str,
    allocator_config: Mapping[str, Any] | None = None,
    thresholds: VerdictThresholds = VerdictThresholds(),
    risk_free: float = 0.0,
    audit: AuditInputs | None = None,
) -> dict:
    """The two-pass comparison report (module docstring), JSON-serialisable.

    Parameters
    ----------
    dates : (T,) dates of the backtest rows (``datetime64`` or anything numpy converts).
    baseline, scaled : results of the two passes over the same rows.
    scalar_dates : (R,) rebalance dates of the applied scalars (each one of ``dates``).
    scalars : (R,) applied scalar values.
    regime_labels : (T,) regime label of each day (``NORMAL``, ``ELEVATED``, ``STRESS``, ``CRISIS``).
    profile : strategy profile name.
    mode : allocator mode (``off``, ``compute``, ``precomputed``).
    allocator_config : the allocator settings to record (any JSON-able mapping).
    thresholds : verdict thresholds.
    risk_free : daily risk-free rate for the Sharpe ratio.
    audit : the controls, the governor's daily scalar, the benchmark and the latest regime output
        for the audit sections (``core.audit``); without it those keys are empty and the verdict
        cannot be ``good`` (it needs the ``exposure_matched`` control).
    """
    d = np.asarray(dates, dtype="datetime64[D]")
    t_len = d.size
    if baseline.portfolio_return.shape != (t_len,) or scaled.portfolio_return.shape != (t_len,):
        raise ValueError(f"both backtests must have {t_len} rows like dates")
    labels = [str(x) for x in regime_labels]
    if len(labels) != t_len:
        raise ValueError(f"regime_labels has {len(labels)} rows, dates {t_len}")
    s_dates = np.asarray(scalar_dates, dtype="datetime64[D]")
    s = np.asarray(scalars, dtype=np.float64)
    if s_dates.shape != s.shape:
        raise ValueError(f"scalar_dates {s_dates.shape} and scalars {s.shape} differ")
    pos = _day_positions(d, s_dates)

    base_m = compute_metrics(baseline.portfolio_return, d, baseline.turnover, risk_free)
    scaled_m = compute_metrics(scaled.portfolio_return, d, scaled.turnover, risk_free)
    transitions = regime_transitions(labels)
    regimes_at = [labels[i] for i in pos]
    conditions = market_conditions(baseline.portfolio_return, thresholds)[pos]
    mode_value = str(getattr(mode, "value", mode))
    sections = _audit_sections(d, baseline, scaled, base_m, scaled_m, labels, audit, risk_free)
    control_metrics = {k: v["metrics"] for k, v in sections["controls"].items()}
    evidence = VerdictEvidence(base_m, scaled_m, s, conditions, transitions["per_year"], mode_value, control_metrics)
    report = {
        "window": {"start": iso_day(d[0]), "end": iso_day(d[-1])},
        "profile": str(profile),
        "allocator": {"mode": mode_value, "config": dict(allocator_config or {})},
        "metrics": {"baseline": base_m, "scaled": scaled_m, "delta": metric_delta(base_m, scaled_m)},
        "allocator_usage": allocator_usage(s),
        "regime_distribution": regime_distribution(labels),
        "regime_transitions": transitions,
        "top_derisk_events": top_derisk_events(s_dates, s, regimes_at),
        "verdict": verdict(evidence, thresholds),
        **sections,
        "data": {},  # filled by the asset: benchmark and sectors used, fallbacks
    }
    return jsonable(report)


@dataclass(frozen=True)
class AuditInputs:
    """What the audit sections need beyond the two passes (arrays aligned with the report's dates).

    Attributes
    ----------
    controls : name -> result of the control book (same engine, costs, lag, cadence).
    control_settings : name -> the control's settings, recorded beside its metrics.
    governor_daily : (T,) the governor's scalar in force at each close.
    first_invested : row of the strategy's first trade.
    benchmark_close : (T,) closes of the benchmark index, or None.
    benchmark_name : its name.
    probabilities : (T, 4) regime probabilities.
    next_scalar, next_computed_on : the scalar the next overlay date applies, and when it was computed.
    bootstrap_draws, bootstrap_seed : of the significance bootstrap.
    """

    controls: Mapping[str, BacktestResult]
    control_settings: Mapping[str, Mapping[str, Any]]
    governor_daily: np.ndarray
    first_invested: int
    benchmark_close: np.ndarray | None = None
    benchmark_name: str = "benchmark"
    probabilities: np.ndarray | None = None
    next_scalar: float | None = None
    next_computed_on: Any = None
    bootstrap_draws: int = BOOTSTRAP_DRAWS
    bootstrap_seed: int = BOOTSTRAP_SEED


def _audit_sections(d, baseline, scaled, base_m, scaled_m, labels, audit: AuditInputs | None, risk_free: float) -> dict:
    empty = {"benchmark": None, "controls": {}, "episodes": [], "significance": {}, "subperiods": [],
             "exposure": {}, "today": None, "headline": headline_block(base_m, scaled_m)}
    if audit is None:
        return empty
    books = {"baseline": baseline, "scaled": scaled, **audit.controls}
    returns = {k: v.portfolio_return for k, v in books.items()}
    controls = {name: {"metrics": compute_metrics(r.portfolio_return, d, r.turnover, risk_free),
                       "settings": dict(audit.control_settings.get(name, {}))}
                for name, r in audit.controls.items()}
    bench = None
    if audit.benchmark_close is not None:
        bench = benchmark_block(d, audit.benchmark_close, audit.benchmark_name, risk_free)
        returns["benchmark"] = bench.pop("returns")
    pairs = [("scaled", "baseline")] + ([("scaled", "exposure_matched")] if "exposure_matched" in controls else [])
    sub_books = {k: returns[k] for k in ("baseline", "scaled", *audit.controls, *(("benchmark",) if bench else ()))}
    return {
        "benchmark": bench,
        "controls": controls,
        "episodes": episodes_block(d, books, audit.governor_daily),
        "significance": significance_block(returns, pairs, risk_free, audit.bootstrap_draws, audit.bootstrap_seed),
        "subperiods": subperiods_block(d, sub_books, risk_free),
        "exposure": exposure_block(d, {"baseline": baseline, "scaled": scaled}, audit.first_invested),
        "today": (today_block(d, labels, audit.probabilities, audit.governor_daily, audit.next_scalar, audit.next_computed_on)
                  if audit.probabilities is not None else None),
        "headline": headline_block(base_m, scaled_m),
    }
