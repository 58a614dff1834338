"""Benchmarks of the strategy/backtest/report cores on the bundled data (``make bench``).

``bench_backtest_and_report_full_history``: both passes (baseline and scaled) of the default
risk-parity profile over the full history (8,313 days x 20 stocks), their metrics and the report
dict; the target weights are computed once outside the timed part and timed on their own as
``weights_median_s``. ``bench_reallocation_10000_strategies``: one batched reallocation of 10,000
risk-parity sleeves (own universe and covariance each, risk limits, smooth transition).
"""

from __future__ import annotations

import json

import numpy as np

from alloc_assets.core.portfolio.profiles import DEFAULT_PROFILE, RiskLimits, Transition, sector_ids
from alloc_assets.core.portfolio.sleeves import reallocate_sleeves, sleeve_inputs
from alloc_assets.core.portfolio.weights import profile_weights
from alloc_assets.core.portfolio.backtest import run_two_passes
from alloc_assets.core.market.calendar import rebalance_indices
from alloc_assets.core.market.panel import load_bundled_panel
from alloc_assets.core.report.report import build_report
from benchmarks._harness import time_median

_SCALAR_MAP = {"NORMAL": 1.0, "ELEVATED": 0.85, "STRESS": 0.70, "CRISIS": 0.55}


def _simple_regimes(benchmark: np.ndarray) -> np.ndarray:
    """Stand-in regime labels (the benchmark's trailing 21-day vol in four bands): the report's
    cost does not depend on where the labels come from."""
    r = np.r_[0.0, benchmark[1:] / benchmark[:-1] - 1.0]
    windows = np.lib.stride_tricks.sliding_window_view(np.r_[np.zeros(20), r], 21)
    vol = windows.std(axis=1, ddof=1) * np.sqrt(252)
    return np.select([vol > 0.40, vol > 0.28, vol > 0.18], ["CRISIS", "STRESS", "ELEVATED"], "NORMAL").astype(object)


def bench_backtest_and_report_full_history() -> dict:
    panel = load_bundled_panel()
    returns = panel.returns()
    profile = DEFAULT_PROFILE
    weights_s, _ = time_median(lambda: profile_weights(panel, profile), repeats=3, warmup=1)
    weights = profile_weights(panel, profile)
    labels = _simple_regimes(panel.benchmark)
    idx = weights.rebalance_idx
    scalars = np.r_[1.0, [_SCALAR_MAP[labels[i]] for i in idx[:-1]]]  # computed at r(k-1), applied at r(k)
    trade_scalars = weights.scalars_for_trades(scalars)

    def both_passes_and_report():
        base, scaled = run_two_passes(returns, weights.trade_idx, weights.trade_target, trade_scalars, "compute", cost_bps=5.0)
        return build_report(panel.dates, base, scaled, panel.dates[idx], scalars, labels, profile=profile.name, mode="compute")

    median, times = time_median(both_passes_and_report, repeats=5, warmup=1)
    return {
        "median_s": median,
        "target_s": 2.0,
        "weights_median_s": weights_s,
        "days": int(returns.shape[0]),
        "assets": int(returns.shape[1]),
        "rebalances": int(idx.size),
        "times_s": times,
    }


def bench_reallocation_10000_strategies() -> dict:
    panel = load_bundled_panel()
    returns = panel.returns()
    sid = sector_ids(panel.symbols, panel.sectors)
    idx = rebalance_indices(panel.dates, DEFAULT_PROFILE.frequency)
    inputs = sleeve_inputs(returns, idx, sid, n_sleeves=10_000, seed=0)
    limits = RiskLimits(max_weight=0.20, max_sector_weight=0.30, max_total_risk=0.35)
    transition = Transition(max_change=0.10, min_change=0.05)

    def reallocate():
        return reallocate_sleeves(inputs.cov, inputs.universe, inputs.prev, sid, limits, transition, inputs.cov_index)

    median, times = time_median(reallocate, repeats=5, warmup=1)
    return {
        "median_s": median,
        "target_s": 1.0,
        "sleeves": int(inputs.universe.shape[0]),
        "assets": int(inputs.universe.shape[1]),
        "times_s": times,
    }


def bench_report_with_controls_episodes_bootstrap() -> dict:
    """Target: the report with its three controls, the drawdown episodes and a
    1,000-draw stationary bootstrap over the full bundled history, under 5 s. Timed: the weekly
    overlay of the governed book and of each control (same engine, costs, lag) and ``build_report``
    with the audit sections. The jump-model refits are cached beforehand, as in a daily run (they
    are fitted once per refit period; ``jump_model_walk_forward_s`` is their first-time cost)."""
    import time

    from alloc_assets.core.report import controls as ctl
    from alloc_assets.core.allocator import jump_model as jm
    from alloc_assets.core.portfolio.backtest import run_backtest, run_overlay, scalar_in_force
    from alloc_assets.core.report.report import AuditInputs
    from alloc_assets.core.allocator.scalars import applied_scalars

    panel = load_bundled_panel()
    returns = panel.returns()
    dates = panel.dates
    weights = profile_weights(panel, DEFAULT_PROFILE)
    labels = _simple_regimes(panel.benchmark)
    governor_risk = np.array([_SCALAR_MAP[x] for x in labels])
    bench_r = np.full(len(dates), np.nan)
    bench_r[1:] = panel.benchmark[1:] / panel.benchmark[:-1] - 1.0
    t0 = time.perf_counter()
    _, _, cache, _ = jm.cached_walk_forward(dates, bench_r)
    first_time = time.perf_counter() - t0

    def overlay(base, risk):
        table = applied_scalars(dates, risk, "weekly")
        daily = scalar_in_force(dates, table["date"].to_numpy().astype("datetime64[D]"),
                                table["risk_scalar_applied"].to_numpy(dtype=np.float64))
        return run_overlay(returns, base, weights.trade_idx, daily, 5.0)[0], daily

    def report():
        base = run_backtest(returns, weights.trade_idx, weights.trade_target, None, 5.0)
        scaled, governor = overlay(base, governor_risk)
        first = int(weights.trade_idx[0])
        state, _, new, _ = jm.cached_walk_forward(dates, bench_r, cache)
        assert not new
        controls = {
            "exposure_matched": overlay(base, np.full(len(dates), ctl.exposure_matched_scalar(governor, first)))[0],
            "vol_cap": overlay(base, ctl.vol_cap_scalar(base.portfolio_return, first, 0.55))[0],
            "jump_model": overlay(base, jm.jump_model_scalars(state, 0.55))[0],
        }
        audit = AuditInputs(controls=controls, control_settings={}, governor_daily=governor, first_invested=first,
                            benchmark_close=panel.benchmark, benchmark_name="SP500",
                            probabilities=np.tile([0.7, 0.2, 0.08, 0.02], (len(dates), 1)))
        return build_report(dates, base, scaled, dates[weights.rebalance_idx], governor[weights.rebalance_idx], labels,
                            profile="risk_parity", mode="compute", audit=audit)

    median, times = time_median(report, repeats=3, warmup=1)
    out = report()
    return {
        "median_s": median,
        "target_s": 5.0,
        "meets_target": median <= 5.0,
        "times_s": times,
        "days": int(len(dates)),
        "episodes": len(out["episodes"]),
        "bootstrap_draws": next(iter(out["significance"].values()))["n_draws"],
        "controls": sorted(out["controls"]),
        "jump_model_walk_forward_s": round(first_time, 2),
    }


if __name__ == "__main__":
    print(json.dumps({
        "backtest_and_report_full_history": bench_backtest_and_report_full_history(),
        "reallocation_10000_strategies": bench_reallocation_10000_strategies(),
    }, indent=2))
