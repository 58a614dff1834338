"""Speed of the allocator's pure cores: state -> regimes -> risk scalars -> applied scalars.

Targets (from the issue): the full history of the bundled set (8,313 days x 20 stocks) under 1 s
with the default method (stress score); one incremental day, from the carries, under 50 ms.
The HMM method is timed beside it (``hmm_median_s``); it refits by EM twice a year.
"""

from __future__ import annotations

import numpy as np

from alloc_assets.core.allocator.feature_config import StateFrame
from alloc_assets.core.allocator.features import encode
from alloc_assets.core.market.panel import load_bundled_panel
from alloc_assets.core.allocator.regime_config import RegimeConfig, RegimeMethod
from alloc_assets.core.allocator.regimes import compute_regimes, regime_statistics
from alloc_assets.core.allocator.scalars import applied_scalars, risk_scalars
from benchmarks._harness import time_median

FULL_HISTORY_TARGET_S = 1.0
INCREMENTAL_DAY_TARGET_S = 0.05
SCORE = RegimeConfig(method=RegimeMethod.STRESS_SCORE)
HMM = RegimeConfig(method=RegimeMethod.HMM)


def _pipeline(panel, config: RegimeConfig):
    state, _ = encode(panel)
    regimes, _ = compute_regimes(state, config)
    scalars, _ = risk_scalars(regimes.dates, regimes.probs, labels=regimes.label)
    applied = applied_scalars(regimes.dates, scalars.risk_scalar, "monthly")
    return state, regimes, scalars, applied


def _summary(regimes) -> dict:
    stats = regime_statistics(regimes.dates, regimes.label)
    return {"share": {k: round(v, 4) for k, v in stats["share"].items()}, "transitions_per_year": round(stats["per_year"], 2)}


def bench_allocator_full_history() -> dict:
    """State + regimes + scalars + applied scalars for the whole bundled history."""
    panel = load_bundled_panel()
    median, times = time_median(lambda: _pipeline(panel, SCORE), repeats=5, warmup=1)
    hmm_median, hmm_times = time_median(lambda: _pipeline(panel, HMM), repeats=3, warmup=0)
    _, score_regimes, _, _ = _pipeline(panel, SCORE)
    _, hmm_regimes, _, _ = _pipeline(panel, HMM)
    return {
        "median_s": median,
        "times_s": times,
        "target_s": FULL_HISTORY_TARGET_S,
        "meets_target": median <= FULL_HISTORY_TARGET_S,
        "hmm_median_s": hmm_median,
        "hmm_times_s": hmm_times,
        "days": int(len(panel.dates)),
        "symbols": len(panel.symbols),
        "stress_score": _summary(score_regimes),
        "hmm": _summary(hmm_regimes),
    }


def bench_allocator_incremental_day() -> dict:
    """One new day from the carries after the previous day (the daily partition's work).

    ``median_s``: stress score; ``hmm_median_s``: HMM on an ordinary day; ``hmm_refit_day_s``: the
    HMM regime step alone on a refit day (2022-07-01: EM on the 8,000 days before it).
    """
    panel = load_bundled_panel()
    t = len(panel.dates)
    history = panel.slice(0, t - 1)
    new_day = panel.slice(t - 1, t)
    state_hist, state_carry = encode(history)
    _, score_carry = compute_regimes(state_hist, SCORE)
    _, hmm_carry = compute_regimes(state_hist, HMM)
    score_hist, _ = compute_regimes(state_hist, SCORE)
    scalars_hist, scalar_carry = risk_scalars(score_hist.dates, score_hist.probs, labels=score_hist.label)

    def one_day(config: RegimeConfig, regime_carry: dict):
        state_row, _ = encode(new_day, state_carry)
        # the HMM refits on the whole history, so it gets the stored state plus the new row
        state = StateFrame.concat([state_hist, state_row]) if config is HMM else state_row
        regimes, _ = compute_regimes(state, config, regime_carry)
        scalars, _ = risk_scalars(regimes.dates, regimes.probs, carry=scalar_carry, labels=regimes.label)
        # the applied-scalar table is recomputed over the whole daily series (cheap, and exact)
        series = np.concatenate([scalars_hist.risk_scalar, scalars.risk_scalar])
        return applied_scalars(panel.dates, series, "monthly")

    median, times = time_median(lambda: one_day(SCORE, score_carry), repeats=20, warmup=2)
    hmm_median, _ = time_median(lambda: one_day(HMM, hmm_carry), repeats=20, warmup=2)

    # an HMM refit day (first trading day of July 2022): one EM fit on the history before it
    r = int(np.searchsorted(panel.dates, np.datetime64("2022-07-01")))
    refit_state, _ = encode(panel.slice(0, r + 1))
    _, before = compute_regimes(refit_state.slice(0, r), HMM)
    refit_median, _ = time_median(lambda: compute_regimes(refit_state, HMM, before), repeats=5, warmup=1)
    return {
        "median_s": median,
        "times_s": times,
        "target_s": INCREMENTAL_DAY_TARGET_S,
        "meets_target": median <= INCREMENTAL_DAY_TARGET_S,
        "hmm_median_s": hmm_median,
        "hmm_refit_day_s": refit_median,
        "day": str(new_day.dates[0]),
    }


if __name__ == "__main__":
    import json

    results = {"full_history": bench_allocator_full_history(), "incremental_day": bench_allocator_incremental_day()}
    print(json.dumps(results, indent=2))
