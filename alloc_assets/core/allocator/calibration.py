"""Calibrate the regimes for behaviour, not Sharpe (pure; numpy only).

The behaviour targets: time shares of about 70 / 20 / 8 / 2 % in NORMAL / ELEVATED / STRESS / CRISIS
and fewer than 20 regime transitions a year. :func:`walk_forward_calibration` sets, at the first
trading day of each calendar year and from the days **before** it only:

- the score thresholds: the 70th, 90th and 98th percentiles of every past stress score (the
  cumulative targets 70, 90, 98 %), and
- the minimum dwell of the hysteresis: the smallest dwell in ``1..max_dwell`` whose labels, run over
  the stored past probabilities, change fewer than ``max_transitions_per_year`` times a year,

and reports what the year then achieved: the time shares of the raw score against those thresholds,
the time shares and transitions of the labels the governor actually used, and the thresholds the
regime layer had in force that day (its own walk-forward rule, refreshed quarterly from a
histogram of past scores). No return of any book enters: only the stress score and the regime
probabilities, which are functions of the market state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from alloc_assets.core.allocator.regime_config import HysteresisConfig
from alloc_assets.core.allocator.regimes import hysteresis_labels
from alloc_assets.core.regime import REGIME_LABELS as REGIMES

TARGET_SHARES: tuple[float, ...] = (0.70, 0.20, 0.08, 0.02)
TARGET_QUANTILES: tuple[float, ...] = (0.70, 0.90, 0.98)
MAX_TRANSITIONS_PER_YEAR = 20.0
MIN_HISTORY_DAYS = 504
MAX_DWELL = 20


@dataclass(frozen=True)
class CalibrationYear:
    """One walk-forward step (dates as ISO strings, shares as fractions)."""

    year: int
    calibrated_on: str
    history_days: int
    thresholds: tuple[float, float, float]
    layer_thresholds: tuple[float, float, float]
    dwell: int
    past_transitions_per_year: float
    days: int
    score_shares: tuple[float, float, float, float]
    label_shares: tuple[float, float, float, float]
    label_transitions_per_year: float


def _shares(codes: np.ndarray) -> tuple[float, float, float, float]:
    n = max(len(codes), 1)
    return tuple(float(np.count_nonzero(codes == k)) / n for k in range(4))  # type: ignore[return-value]


def _per_year(labels: np.ndarray) -> float:
    if len(labels) < 2:
        return 0.0
    return float(np.count_nonzero(labels[1:] != labels[:-1])) * 252.0 / (len(labels) - 1)


def walk_forward_calibration(
    dates: np.ndarray,
    score: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    layer_thresholds: np.ndarray,
    hysteresis: HysteresisConfig = HysteresisConfig(),
    *,
    min_history: int = MIN_HISTORY_DAYS,
    max_dwell: int = MAX_DWELL,
    max_transitions: float = MAX_TRANSITIONS_PER_YEAR,
) -> list[CalibrationYear]:
    """The yearly walk-forward calibration (module docstring).

    Parameters
    ----------
    dates : (T,) trading days (datetime64[D]).
    score : (T,) stress score (NaN on days without one, e.g. before the state is warm).
    probs : (T, 4) regime probabilities of the layer.
    labels : (T,) the layer's labels (``NORMAL`` .. ``CRISIS``).
    layer_thresholds : (T, 3) the thresholds the layer had in force each day.
    hysteresis : enter / exit thresholds of the labels (the dwell is what is calibrated).
    min_history : scored days needed before the first calibration.
    """
    d = np.asarray(dates).astype("datetime64[D]")
    s = np.asarray(score, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    code = np.array([REGIMES.index(str(x)) for x in labels])
    lt = np.asarray(layer_thresholds, dtype=np.float64)
    years = d.astype("datetime64[Y]").astype(int) + 1970
    starts = np.flatnonzero(np.r_[True, years[1:] != years[:-1]])
    out = []
    for k, i in enumerate(starts):
        past = s[:i][np.isfinite(s[:i])]
        if past.size < min_history:
            continue
        end = starts[k + 1] if k + 1 < len(starts) else len(d)
        tau = np.quantile(past, TARGET_QUANTILES)
        dwell, past_rate = max_dwell, float("nan")
        for cand in range(1, max_dwell + 1):
            cfg = HysteresisConfig(enter=hysteresis.enter, exit=hysteresis.exit, min_dwell_days=cand)
            lab, _ = hysteresis_labels(p[:i], cfg)
            rate = _per_year(lab)
            if rate < max_transitions:
                dwell, past_rate = cand, rate
                break
        ys = s[i:end]
        scored = ys[np.isfinite(ys)]
        raw = np.searchsorted(tau, scored, side="right")
        out.append(CalibrationYear(
            year=int(years[i]), calibrated_on=str(d[i]), history_days=int(past.size),
            thresholds=tuple(float(x) for x in tau), layer_thresholds=tuple(float(x) for x in lt[i]),
            dwell=dwell, past_transitions_per_year=past_rate, days=int(end - i),
            score_shares=_shares(raw), label_shares=_shares(code[i:end]),
            label_transitions_per_year=_per_year(code[i:end]),
        ))
    return out


def calibration_summary(rows: Sequence[CalibrationYear]) -> dict:
    """Targets against what the calibrated years achieved, pooled over all their days."""
    if not rows:
        return {"years": 0}
    w = np.array([r.days for r in rows], dtype=np.float64)
    score = np.average(np.array([r.score_shares for r in rows]), axis=0, weights=w)
    label = np.average(np.array([r.label_shares for r in rows]), axis=0, weights=w)
    trans = float(np.average([r.label_transitions_per_year for r in rows], weights=w))
    return {
        "years": len(rows),
        "target_shares": dict(zip(REGIMES, TARGET_SHARES)),
        "score_shares_achieved": dict(zip(REGIMES, map(float, score))),
        "label_shares_achieved": dict(zip(REGIMES, map(float, label))),
        "target_transitions_per_year": f"< {MAX_TRANSITIONS_PER_YEAR:g}",
        "label_transitions_per_year": trans,
        "years_over_transition_target": [r.year for r in rows if r.label_transitions_per_year >= MAX_TRANSITIONS_PER_YEAR],
        "calibrated_dwell_range": [min(r.dwell for r in rows), max(r.dwell for r in rows)],
    }


def targets_markdown(summary: dict, has_rows: bool) -> str:
    """The calibration targets against what was achieved (``calibration_summary``, made JSON-able)
    as a markdown table; the transitions row only once a year has been calibrated."""
    md = ["| | target | score (out of sample) | governor's labels |", "|---|---:|---:|---:|"]
    for k, t in summary.get("target_shares", {}).items():
        md.append(f"| {k} | {100 * t:.0f} % | {100 * summary['score_shares_achieved'][k]:.1f} % | "
                  f"{100 * summary['label_shares_achieved'][k]:.1f} % |")
    if has_rows:
        md.append(f"| transitions a year | {summary['target_transitions_per_year']} | | {summary['label_transitions_per_year']:.1f} |")
    return "\n".join(md)
