"""Interpretation rules of the two-pass comparison (pure; no Dagster import).

Each rule is a small function ``rule(evidence, thresholds) -> str | None``: the reason when it fires,
None when it does not. Rules come in three levels; :func:`verdict` is ``failure`` if any failure rule
fires, else ``warning`` if any warning rule fires, else ``good``, and lists every reason that fired
(failures first), each prefixed with its level.

"Stress" and "crisis" are judged **independently of the regime model** under audit (otherwise a
rule such as "de-risks in crises" would be true by construction): :func:`market_conditions` labels
each day from the *baseline* portfolio itself, ex post, with its drawdown and its trailing 21-day
realised volatility. A day is ``crisis`` if the drawdown is at or below -20 % or the trailing vol is
in the top 5 % of the history, ``stress`` if the drawdown is at or below -10 % or the vol in the top
20 %, else ``calm``. The quantiles use the whole window: this is an audit after the fact, not a
trading signal.

"De-risking" at a rebalance is ``1 - scalar`` for an applied scalar below 1; shares of de-risking
are shares of that mass, so one deep cut weighs more than a shallow one.

Metric differences are in metric units: MaxDD "points" are percentage points of drawdown
(``scaled - baseline`` of two negative fractions; positive = shallower).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from alloc_assets.core.report.metrics import drawdown_series


class VerdictStatus(str, Enum):
    """Overall verdict, and the level of each rule."""

    GOOD = "good"
    WARNING = "warning"
    FAILURE = "failure"


class MarketCondition(str, Enum):
    """Ex-post condition of the market for the baseline book (see the module docstring)."""

    CALM = "calm"
    STRESS = "stress"
    CRISIS = "crisis"


@dataclass(frozen=True)
class VerdictThresholds:
    """Thresholds of the rules (decimal units; MaxDD and Sharpe as differences scaled - baseline)."""

    maxdd_target_min: float = 0.02
    maxdd_target_max: float = 0.05
    sharpe_preserved_tolerance: float = 0.05
    sharpe_drop_warning: float = 0.20
    transitions_good_per_year: float = 20.0
    transitions_warning_per_year: float = 50.0
    thrashing_per_year: float = 100.0
    thrashing_change_share: float = 0.5
    thrashing_min_changes: int = 6
    derisk_stress_share_good: float = 0.5
    derisk_calm_share_warning: float = 0.5
    full_scalar_share_good: float = 0.5
    stress_drawdown: float = -0.10
    crisis_drawdown: float = -0.20
    stress_vol_quantile: float = 0.80
    crisis_vol_quantile: float = 0.95
    vol_window: int = 21


@dataclass(frozen=True)
class VerdictEvidence:
    """What the rules look at.

    Attributes
    ----------
    baseline, scaled : metric dicts (:func:`~alloc_assets.core.report.metrics.compute_metrics`).
    scalars : (R,) applied scalars at the rebalance dates.
    conditions : (R,) :class:`MarketCondition` values at those dates.
    transitions_per_year : regime label changes per year.
    mode : allocator mode (``off``, ``compute``, ``precomputed``).
    controls : metric dicts of the controls run through the same engine (``exposure_matched``,
        ``vol_cap``, ``jump_model``); ``good`` needs ``exposure_matched``.
    """

    baseline: Mapping[str, float]
    scaled: Mapping[str, float]
    scalars: np.ndarray
    conditions: np.ndarray
    transitions_per_year: float
    mode: str = "compute"
    controls: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


_SCALAR_TOL = 1e-9


def market_conditions(baseline_returns: np.ndarray, thresholds: VerdictThresholds = VerdictThresholds()) -> np.ndarray:
    """(T,) array of :class:`MarketCondition` values, from the baseline's drawdown and trailing vol."""
    r = np.asarray(baseline_returns, dtype=np.float64)
    dd = drawdown_series(r)
    w = thresholds.vol_window
    vol = np.full(r.size, np.nan)
    if r.size >= w:
        windows = np.lib.stride_tricks.sliding_window_view(r, w)
        vol[w - 1 :] = windows.std(axis=1, ddof=1)
    finite = vol[np.isfinite(vol)]
    if finite.size:
        q_stress, q_crisis = np.quantile(finite, [thresholds.stress_vol_quantile, thresholds.crisis_vol_quantile])
    else:
        q_stress = q_crisis = np.inf
    with np.errstate(invalid="ignore"):
        crisis = (dd <= thresholds.crisis_drawdown) | (vol >= q_crisis)
        stress = (dd <= thresholds.stress_drawdown) | (vol >= q_stress)
    out = np.full(r.size, MarketCondition.CALM.value, dtype=object)
    out[stress] = MarketCondition.STRESS.value
    out[crisis] = MarketCondition.CRISIS.value
    return out


# ------------------------------------------------------------------------------------ helpers


def _maxdd_improvement(e: VerdictEvidence) -> float:
    return float(e.scaled["max_drawdown"]) - float(e.baseline["max_drawdown"])


def _sharpe_change(e: VerdictEvidence) -> float:
    return float(e.scaled["sharpe"]) - float(e.baseline["sharpe"])


def _derisk(e: VerdictEvidence) -> np.ndarray:
    return np.clip(1.0 - np.asarray(e.scalars, dtype=np.float64), 0.0, None)


def _derisk_share(e: VerdictEvidence, conditions: Sequence[str]) -> float:
    mass = _derisk(e)
    total = mass.sum()
    if total <= _SCALAR_TOL:
        return float("nan")
    where = np.isin(np.asarray(e.conditions, dtype=object), list(conditions))
    return float(mass[where].sum() / total)


def _pts(x: float) -> str:
    return f"{100 * x:.1f} points"


# ------------------------------------------------------------------------------------ good signs


def maxdd_reduced(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Good: MaxDD shallower by 2-5 points (or by more, with the Sharpe ratio preserved)."""
    gain = _maxdd_improvement(e)
    if t.maxdd_target_min <= gain <= t.maxdd_target_max:
        return f"MaxDD reduced by {_pts(gain)} (target {_pts(t.maxdd_target_min)}-{_pts(t.maxdd_target_max)})"
    if gain > t.maxdd_target_max and _sharpe_change(e) >= -t.sharpe_preserved_tolerance:
        return f"MaxDD reduced by {_pts(gain)}, beyond the {_pts(t.maxdd_target_max)} target, with Sharpe preserved"
    return None


def tails_improved(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Good: both the worst month and the worst quarter are less bad."""
    dm = float(e.scaled["worst_month"]) - float(e.baseline["worst_month"])
    dq = float(e.scaled["worst_quarter"]) - float(e.baseline["worst_quarter"])
    if dm > 0 and dq > 0:
        return f"worst month improved by {_pts(dm)} and worst quarter by {_pts(dq)}"
    return None


def sharpe_preserved(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Good: Sharpe ratio preserved (down by at most 0.05) or better."""
    d = _sharpe_change(e)
    if d >= -t.sharpe_preserved_tolerance:
        return f"Sharpe {'improved' if d > 0 else 'preserved'} ({d:+.2f})"
    return None


def derisk_in_stress(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Good: at least half of the de-risking happened in stress or crisis conditions."""
    share = _derisk_share(e, (MarketCondition.STRESS.value, MarketCondition.CRISIS.value))
    if share >= t.derisk_stress_share_good:
        return f"de-risking concentrated in stress periods ({100 * share:.0f} % of it in stress or crisis)"
    return None


def few_transitions(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Good: fewer than 20 regime transitions a year."""
    if e.transitions_per_year < t.transitions_good_per_year:
        return f"{e.transitions_per_year:.1f} regime transitions a year (under {t.transitions_good_per_year:.0f})"
    return None


def mostly_full_scalars(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Good: most applied scalars are 1.0 (the governor stays out of the way most of the time)."""
    s = np.asarray(e.scalars, dtype=np.float64)
    if s.size == 0:
        return None
    share = float(np.mean(np.abs(s - 1.0) <= _SCALAR_TOL))
    if share > t.full_scalar_share_good:
        return f"scalar at 1.0 at {100 * share:.0f} % of rebalances"
    return None


# ------------------------------------------------------------------------------------ warnings


def maxdd_reduction_off_target(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Warning: MaxDD not worse, but reduced by less than 2 points, or by more than 5 with Sharpe down."""
    gain = _maxdd_improvement(e)
    if abs(gain) <= _SCALAR_TOL:
        return (f"allocator not protecting: MaxDD {_pct(e.scaled['max_drawdown'])} is the baseline's "
                f"{_pct(e.baseline['max_drawdown'])} (good needs a reduction of at least {_pts(t.maxdd_target_min)})")
    if 0 <= gain < t.maxdd_target_min:
        return f"MaxDD reduced by only {_pts(gain)} (target {_pts(t.maxdd_target_min)}-{_pts(t.maxdd_target_max)})"
    if gain > t.maxdd_target_max and _sharpe_change(e) < -t.sharpe_preserved_tolerance:
        return f"MaxDD reduced by {_pts(gain)}, more than the {_pts(t.maxdd_target_max)} target, at a Sharpe cost: likely over-de-risking"
    return None


def _pct(x) -> str:
    return "n/a" if x is None or not np.isfinite(float(x)) else f"{100 * float(x):.1f} %"


def _num(x) -> str:
    return "n/a" if x is None or not np.isfinite(float(x)) else f"{float(x):.3f}"


def _beats(e: VerdictEvidence, control: str) -> tuple[bool, bool, str]:
    """(MaxDD better, Calmar better, the numbers) of the scaled book against a control."""
    c = e.controls[control]
    dd_s, dd_c = float(e.scaled["max_drawdown"]), float(c["max_drawdown"])
    cal_s, cal_c = float(e.scaled["calmar"]), float(c["calmar"])
    dd_ok = np.isfinite(dd_s) and np.isfinite(dd_c) and dd_s > dd_c + _SCALAR_TOL
    cal_ok = np.isfinite(cal_s) and np.isfinite(cal_c) and cal_s > cal_c + _SCALAR_TOL
    numbers = f"MaxDD {_pct(dd_s)} vs {_pct(dd_c)}, Calmar {_num(cal_s)} vs {_num(cal_c)}"
    return bool(dd_ok), bool(cal_ok), numbers


def not_better_than_exposure_matched(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Warning: the scaled book does not have both a better MaxDD and a better Calmar than the
    ``exposure_matched`` control (a constant scalar at the governor's mean exposure); or that
    control is missing. ``good`` needs both: timing must beat simply holding less risk."""
    if "exposure_matched" not in e.controls:
        return "not compared with the exposure_matched control (good needs a better MaxDD and Calmar than it)"
    dd_ok, cal_ok, numbers = _beats(e, "exposure_matched")
    if dd_ok and cal_ok:
        return None
    return f"no better than holding less risk all the time (exposure_matched): {numbers}"


def control_lines(e: VerdictEvidence) -> list[str]:
    """One ``info:`` line per control: does the scaled book beat it on MaxDD and on Calmar."""
    lines = []
    for name in e.controls:
        dd_ok, cal_ok, numbers = _beats(e, name)
        verdict_ = "beats" if dd_ok and cal_ok else ("does not beat" if not (dd_ok or cal_ok) else "partly beats")
        lines.append(f"info: vs {name}: {verdict_} it ({numbers})")
    return lines


def sharpe_dropped(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Warning: Sharpe ratio down by more than 0.2."""
    d = _sharpe_change(e)
    if d < -t.sharpe_drop_warning:
        return f"Sharpe down by {-d:.2f} (more than {t.sharpe_drop_warning:.1f})"
    return None


def derisk_in_calm(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Warning: more than half of the de-risking happened in calm conditions."""
    share = _derisk_share(e, (MarketCondition.CALM.value,))
    if share > t.derisk_calm_share_warning:
        return f"de-risking in calm periods ({100 * share:.0f} % of it)"
    return None


def many_transitions(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Warning: more than 50 regime transitions a year."""
    if e.transitions_per_year > t.transitions_warning_per_year:
        return f"{e.transitions_per_year:.1f} regime transitions a year (over {t.transitions_warning_per_year:.0f})"
    return None


def mostly_below_one(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Warning: the scalar is below 1.0 at most rebalances (a permanent haircut, not a governor)."""
    s = np.asarray(e.scalars, dtype=np.float64)
    if s.size == 0:
        return None
    share = float(np.mean(s < 1.0 - _SCALAR_TOL))
    if share > 1.0 - t.full_scalar_share_good:
        return f"scalar below 1.0 at {100 * share:.0f} % of rebalances"
    return None


# ------------------------------------------------------------------------------------ failures


def maxdd_worse(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Failure: the scaled MaxDD is deeper than the baseline's."""
    gain = _maxdd_improvement(e)
    if gain < -_SCALAR_TOL:
        return f"MaxDD worse than baseline by {_pts(-gain)}"
    return None


def triggers_in_calm_not_crisis(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Failure: de-risks at calm rebalances but less often at crisis rebalances.

    Fires when there are both calm and crisis rebalances, some calm rebalance is de-risked, and the
    share of crisis rebalances de-risked is below the share of calm rebalances de-risked.
    """
    cond = np.asarray(e.conditions, dtype=object)
    cut = np.asarray(e.scalars, dtype=np.float64) < 1.0 - _SCALAR_TOL
    calm = cond == MarketCondition.CALM.value
    crisis = cond == MarketCondition.CRISIS.value
    if not calm.any() or not crisis.any():
        return None
    calm_rate, crisis_rate = cut[calm].mean(), cut[crisis].mean()
    if calm_rate > 0 and crisis_rate < calm_rate:
        return (
            f"triggers in normal periods but not in crises: de-risked at {100 * calm_rate:.0f} % of calm "
            f"rebalances but {100 * crisis_rate:.0f} % of crisis rebalances"
        )
    return None


def thrashing(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Failure: regimes flip more than 100 times a year, or the scalar changes at most rebalances.

    The second test fires when the applied scalar differs from the previous one at more than half
    of the rebalances, with at least 6 changes: a governor that moves every time is noise, not a
    response to episodes (a dip and a recovery are two changes per episode).
    """
    if e.transitions_per_year > t.thrashing_per_year:
        return f"thrashing: {e.transitions_per_year:.0f} regime transitions a year"
    d = np.diff(np.asarray(e.scalars, dtype=np.float64))
    changes = int(np.sum(np.abs(d) > _SCALAR_TOL))
    if d.size and changes >= t.thrashing_min_changes:
        share = changes / d.size
        if share > t.thrashing_change_share:
            return f"thrashing: the scalar changes at {100 * share:.0f} % of rebalances ({changes} changes)"
    return None


def return_enhancer(e: VerdictEvidence, t: VerdictThresholds) -> str | None:
    """Failure: the allocator acts as a return enhancer rather than a risk governor.

    Precisely: some applied scalar is above 1 (it levers up), or CAGR is higher while neither the
    annual volatility nor the MaxDD is lower than the baseline's.
    """
    s = np.asarray(e.scalars, dtype=np.float64)
    if s.size and s.max() > 1.0 + _SCALAR_TOL:
        return f"return enhancer, not a risk governor: scalar up to {s.max():.2f} (> 1)"
    d_cagr = float(e.scaled["cagr"]) - float(e.baseline["cagr"])
    d_vol = float(e.scaled["ann_vol"]) - float(e.baseline["ann_vol"])
    if d_cagr > _SCALAR_TOL and d_vol >= 0 and _maxdd_improvement(e) <= 0:
        return f"return enhancer, not a risk governor: CAGR {_pts(d_cagr)} higher with neither volatility nor MaxDD reduced"
    return None


Rule = Callable[[VerdictEvidence, VerdictThresholds], "str | None"]

RULES: dict[VerdictStatus, tuple[Rule, ...]] = {
    VerdictStatus.FAILURE: (maxdd_worse, triggers_in_calm_not_crisis, thrashing, return_enhancer),
    VerdictStatus.WARNING: (maxdd_reduction_off_target, sharpe_dropped, derisk_in_calm, many_transitions, mostly_below_one,
                            not_better_than_exposure_matched),
    VerdictStatus.GOOD: (maxdd_reduced, tails_improved, sharpe_preserved, derisk_in_stress, few_transitions, mostly_full_scalars),
}


def verdict(evidence: VerdictEvidence, thresholds: VerdictThresholds = VerdictThresholds()) -> dict:
    """``{"status": "good" | "warning" | "failure", "reasons": ["<level>: <reason>", ...]}``.

    With the allocator ``off`` the scaled pass is the baseline and there is nothing to judge:
    the status is ``warning`` with that one reason.
    """
    if str(getattr(evidence.mode, "value", evidence.mode)) == "off":
        return {
            "status": VerdictStatus.WARNING.value,
            "reasons": ["warning: allocator off: scalars computed but not applied, the scaled pass equals the baseline"],
        }
    fired: dict[VerdictStatus, list[str]] = {level: [] for level in RULES}
    for level, rules in RULES.items():
        for rule in rules:
            reason = rule(evidence, thresholds)
            if reason:
                fired[level].append(f"{level.value}: {reason}")
    if fired[VerdictStatus.FAILURE]:
        status = VerdictStatus.FAILURE
    elif fired[VerdictStatus.WARNING]:
        status = VerdictStatus.WARNING
    else:
        status = VerdictStatus.GOOD
    reasons = fired[VerdictStatus.FAILURE] + fired[VerdictStatus.WARNING] + fired[VerdictStatus.GOOD]
    return {"status": status.value, "reasons": reasons + control_lines(evidence)}
