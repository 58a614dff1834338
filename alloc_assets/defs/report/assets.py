"""The audit of the twin backtests (whole history, unpartitioned): the controls the governor is
judged against, the two-pass comparison report and its figures.

control_backtests, baseline_backtest + scaled_backtest + regimes -> comparison_report -> report_figures.
Domain logic lives in ``core.report``; the warehouse reads in ``store.backtests``.
"""

import base64
import datetime as dt
import json

import dagster as dg
import numpy as np
import polars as pl

from alloc_assets.core.allocator.scalars import applied_scalars as compute_applied
from alloc_assets.core.common.files import atomic_write
from alloc_assets.core.portfolio.backtest import AllocatorMode, run_overlay, scalar_in_force
from alloc_assets.core.report.controls import control_scalars
from alloc_assets.core.report.metrics import daily_rate
from alloc_assets.core.report.rendering import comparison_table_md, episodes_md, report_markdown, run_summary
from alloc_assets.core.report.report import REPORT_KEYS, AuditInputs, build_report, governor_samples, jsonable
from alloc_assets.defs.common import (
    SINGLE_RUN,
    WAREHOUSE_POOL,
    WAREHOUSE_RETRY,
    asset_check_specs,
    check_result,
    failing_without_retry,
    raise_on_blocking,
)
from alloc_assets.defs.portfolio.assets import GROUP_STRATEGY, backtest_frame, backtest_outcome
from alloc_assets.schemas import BACKTEST_CHECKS, CHECK_BACKTEST_FINITE, CHECK_REPORT_KEYS, REPORT_CHECKS, CheckOutcome
from alloc_assets.store.jump_fits import JUMP_FITS_TABLE, jump_fit_rows, new_fit_rows
from alloc_assets.store.backtests import (
    CONTROL_TABLE,
    applied_series,
    benchmark_returns,
    data_fallbacks,
    regimes_on_dates,
    report_inputs,
    result_from_table,
    strategy_book,
)
from resources.allocator import AllocatorSettings
from resources.backtest import BacktestSettings
from resources.warehouse import DuckDBWarehouse

GROUP_REPORT = "report"


@dg.asset(
    deps=["weights_raw", "applied_scalars", "market_prices"],
    group_name=GROUP_STRATEGY,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy"},
    code_version="controls-1",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=asset_check_specs(CONTROL_TABLE, {CHECK_BACKTEST_FINITE: BACKTEST_CHECKS[CHECK_BACKTEST_FINITE]}),
    metadata={"dagster/table_name": CONTROL_TABLE},
)
def control_backtests(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings,
                      allocator: AllocatorSettings):
    """The controls the governor is judged against, in the same engine with the same costs, cash
    rate, lag and overlay cadence (``core.report.controls``): ``exposure_matched`` (a constant scalar at the
    governor's mean exposure), ``vol_cap`` (recent volatility capped at the book's own long-run
    volatility, same floor) and ``jump_model`` (a statistical jump model on the benchmark, fitted
    walk-forward with online inference only, bull 1 / bear floor). Each daily scalar goes through
    ``applied_scalars`` at the allocator's cadence (computed at one overlay date, acting from the
    next) and the overlay of the strategy's book. One row per day and control."""
    with failing_without_retry(), warehouse.session():
        mode = AllocatorMode(backtest.allocator_mode)
        panel, idx, _, base = strategy_book(warehouse, backtest)
        a_dates, a_vals = applied_series(warehouse, allocator, AllocatorMode.PRECOMPUTED if mode is AllocatorMode.OFF else mode)
        governor = scalar_in_force(panel.dates, a_dates, a_vals, allocator.apply_missing_scalar_as)
        first = int(idx[0]) if idx.size else len(panel.dates)
        bench_r, _ = benchmark_returns(warehouse, panel.dates, panel)
        cached = jump_fit_rows(warehouse)
        cache = {k: json.loads(v) for k, v in zip(cached["key"].to_list(), cached["record"].to_list())}
        risk, settings, new_fits, fits = control_scalars(panel.dates, base.portfolio_return, first, governor, bench_r,
                                                         allocator.floor, cache)
        cfg = allocator.apply_config()
        returns = panel.returns()
        frames = []
        for name, r in risk.items():
            table = compute_applied(panel.dates, r, cfg.frequency, cfg.apply_missing_scalar_as, ())
            daily = scalar_in_force(panel.dates, table["date"].to_numpy().astype("datetime64[D]"),
                                    table["risk_scalar_applied"].to_numpy(dtype=np.float64), cfg.apply_missing_scalar_as)
            result, _ = run_overlay(returns, base, idx, daily, backtest.cost_bps, backtest.cash_rate)
            frames.append(backtest_frame(panel.dates, result).with_columns(
                pl.lit(name).alias("control"), pl.Series("scalar", daily), pl.Series("risk_scalar", r)))
        frame = pl.concat(frames)
        outcomes = [backtest_outcome(frame)]
        yield from raise_on_blocking(context, outcomes, asset=CONTROL_TABLE)
        cached = pl.concat([cached, new_fit_rows(fits, new_fits)])
        if not new_fits:
            warehouse.replace_table(CONTROL_TABLE, frame)
        else:  # the controls and the cache of jump-model refits in one transaction
            warehouse.replace_window({}, dt.date.min, dt.date.min, whole_tables={CONTROL_TABLE: frame, JUMP_FITS_TABLE: cached})
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": frame.height,
            "controls": dg.MetadataValue.json(jsonable(settings)),
            "jump_model_refits": len(fits), "jump_model_refits_fitted_now": len(new_fits),
            **{f"final_equity_{k}": float(f["equity"][-1]) for k, f in zip(risk, frames)},
        })
        for o in outcomes:
            yield check_result(o, CONTROL_TABLE)


@dg.asset(
    deps=["baseline_backtest", "scaled_backtest", "control_backtests", "regime_series", "applied_scalars"],
    group_name=GROUP_REPORT,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "json"},
    code_version="report-2",
    check_specs=asset_check_specs("comparison_report", REPORT_CHECKS),
)
def comparison_report(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings,
                      allocator: AllocatorSettings):
    """The audit a risk officer reads before the governor goes live: metrics of the baseline, the
    governed book and the benchmark (quantstats/empyrical conventions); the controls in the same
    engine (exposure_matched, vol_cap, jump_model); every baseline drawdown deeper than 15 % with the
    depth of each book and when the governor de-risked; stationary-bootstrap intervals of the
    deltas and a sub-period table; gross exposure; today's regime and scalar; allocator usage,
    regimes, de-risk events and a verdict whose every rule names its numbers. Files:
    ``$ALLOC_HOME/reports/<profile>/two_pass_comparison.{json,md}`` (figures: ``report_figures``)."""
    with failing_without_retry():
        base, scaled, regimes, weights, raw_first, applied, computed, controls, bench = report_inputs(warehouse)
        labels, probs = regimes_on_dates(regimes, base["date"].to_list())
    dates = base["date"].to_numpy().astype("datetime64[D]")
    mode = AllocatorMode(backtest.allocator_mode)
    governor, first, scalar_dates, scalars = governor_samples(
        dates, applied["date"].to_numpy().astype("datetime64[D]"), applied["risk_scalar_applied"].to_numpy(), raw_first,
        mode is AllocatorMode.OFF, allocator.apply_missing_scalar_as)
    nxt = computed.row(0) if computed.height else (None, None)
    config = {k: v for k, v in allocator.model_dump().items() if k != "overrides_file"}
    config.update(cost_bps=backtest.cost_bps, cash_rate=backtest.cash_rate)
    audit = AuditInputs(
        controls=controls, control_settings=dict(_latest_metadata(context, CONTROL_TABLE, "controls") or {}), governor_daily=governor,
        first_invested=first, benchmark_close=None if bench is None else bench[0],
        benchmark_name="benchmark" if bench is None else bench[1], probabilities=probs,
        next_scalar=None if nxt[1] is None or mode is AllocatorMode.OFF else float(nxt[1]), next_computed_on=nxt[0])
    # when cash earns a rate, that rate is the risk-free rate of Sharpe and Sortino (quantstats' rf)
    report = build_report(dates, result_from_table(base), result_from_table(scaled), scalar_dates, scalars, labels,
                          profile=backtest.profile, mode=backtest.allocator_mode, allocator_config=config,
                          risk_free=daily_rate(backtest.cash_rate), audit=audit)
    report["data"] = data_fallbacks(warehouse, bench)
    if report.get("exposure") is not None:  # the rule that set the caps of this universe
        report["exposure"]["limits_rule"] = list(_latest_metadata(context, "weights_raw", "limits_rule") or [])
    out_dir = backtest.reports_root() / backtest.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "two_pass_comparison.json", out_dir / "two_pass_comparison.md"
    atomic_write(json_path, json.dumps(report, indent=2).encode())  # readers never see a half-written report
    atomic_write(md_path, report_markdown(report, {k: f"{k}.png" for k in REPORT_FIGURES}).encode())
    context.log.info("Run summary\n" + run_summary(report, sources=None))
    missing_keys = [k for k in REPORT_KEYS if k not in report]
    sev, desc = REPORT_CHECKS[CHECK_REPORT_KEYS]
    outcomes = [CheckOutcome(CHECK_REPORT_KEYS, not missing_keys, sev, desc,
                             pl.DataFrame({"missing_key": missing_keys}) if missing_keys else pl.DataFrame())]
    yield dg.MaterializeResult(metadata={
        "verdict": report["verdict"]["status"],
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in report["verdict"]["reasons"]) or "_none_"),
        "comparison": dg.MetadataValue.md(comparison_table_md(report)),
        "episodes": dg.MetadataValue.md(episodes_md(report)),
        "report_json": dg.MetadataValue.path(str(json_path)),
        "report_md": dg.MetadataValue.path(str(md_path)),
        "window": f"{report['window']['start']} .. {report['window']['end']}",
        "scaled_fraction": report["allocator_usage"]["scaled_fraction"],
    })
    for o in outcomes:
        yield check_result(o, "comparison_report")


def _latest_metadata(context, asset: str, key: str):
    """A metadata value of an upstream asset's latest materialization (None if there is none)."""
    try:
        ev = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    except Exception:  # noqa: BLE001 - an instance without the event: the value is then unknown
        ev = None
    md = ev.asset_materialization.metadata if ev is not None and ev.asset_materialization else {}
    value = md.get(key)
    return None if value is None else value.value


REPORT_FIGURES = ("equity", "drawdown", "scalar", "regime_probabilities", "exposure", "episodes")


@dg.asset(
    deps=["comparison_report"],
    group_name=GROUP_REPORT,
    backfill_policy=SINGLE_RUN,
    kinds={"matplotlib"},
    code_version="figures-1",
)
def report_figures(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings,
                   allocator: AllocatorSettings):
    """The report's figures, rendered after the numbers (matplotlib costs seconds in a fresh run
    process, the report does not wait for it): equity of every book with regime shading and the
    benchmark, drawdowns, the applied scalar, regime probabilities, gross exposure and the drawdown
    episodes. PNGs beside the report, the equity figure inline in the UI."""
    from alloc_assets.core.report.figures import write_report_figures  # imported when used (slow import)

    with failing_without_retry():
        base, scaled, regimes, weights, _, _, _, controls, bench = report_inputs(warehouse)
    labels, probs = regimes_on_dates(regimes, base["date"].to_list(), fill=True)
    dates = base["date"].to_numpy().astype("datetime64[D]")
    out_dir = backtest.reports_root() / backtest.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    report = json.loads((out_dir / "two_pass_comparison.json").read_text())
    extra = {name: r.equity for name, r in controls.items()}
    if bench is not None:
        extra[bench[1]] = bench[0] / bench[0][0]
    figures = write_report_figures(out_dir, dates, base["equity"].to_numpy(), scaled["equity"].to_numpy(),
                                   weights["date"].to_numpy().astype("datetime64[D]"), weights["scalar"].to_numpy(), labels,
                                   probabilities=probs, floor=allocator.floor, others=extra,
                                   exposure={"baseline": 1.0 - base["cash_weight"].to_numpy(),
                                             "scaled": 1.0 - scaled["cash_weight"].to_numpy()},
                                   episodes=report.get("episodes", []))
    equity_png = base64.b64encode(figures["equity"].read_bytes()).decode()
    yield dg.MaterializeResult(metadata={
        "equity_curves": dg.MetadataValue.md(f"![equity](data:image/png;base64,{equity_png})"),
        "figures": dg.MetadataValue.json({k: str(p) for k, p in figures.items()}),
    })


REPORT_ASSETS = [control_backtests, comparison_report, report_figures]
