"""Strategy, twin backtests and the two-pass comparison report (whole history, unpartitioned).

weights_raw -> baseline_backtest; weights_raw + applied scalars -> weights_scaled -> scaled_backtest;
both backtests + regimes -> comparison_report. One engine (``core.backtest.run_backtest``) and the
same costs and calendar for both passes.
"""

import base64
import datetime as dt
import json
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from alloc_assets.core.backtest import AllocatorMode, BacktestResult, overlay_trades, run_backtest, scalar_in_force
from alloc_assets.core.figures import write_report_figures
from alloc_assets.core.metrics import daily_rate
from alloc_assets.core.regimes import PROBABILITY_COLUMNS
from alloc_assets.core.report import build_report, report_markdown, run_summary
from alloc_assets.core.scalars import applied_scalars as compute_applied
from alloc_assets.core.strategies import get_profile, profile_weights
from alloc_assets.defs.allocator import load_panel
from alloc_assets.defs.common import SINGLE_RUN, history_span, WAREHOUSE_POOL, WAREHOUSE_RETRY, check_result, column_schema, raise_on_blocking
from alloc_assets.schemas import (
    BACKTEST_CHECKS,
    CHECK_BACKTEST_FINITE,
    CHECK_REPORT_KEYS,
    CHECK_SCALED_CONSISTENT,
    CHECK_WEIGHTS_VALID,
    REPORT_CHECKS,
    WEIGHT_CHECKS,
    Backtest,
    CheckOutcome,
    Weights,
    mask_outcome,
)
from resources.allocator import AllocatorSettings
from resources.settings import default_reports_dir
from resources.warehouse import DuckDBWarehouse

GROUP_STRATEGY = "strategy"
GROUP_REPORT = "report"
REPORT_KEYS = ("window", "profile", "allocator", "metrics", "allocator_usage", "regime_distribution",
               "regime_transitions", "top_derisk_events", "verdict")


class BacktestSettings(dg.ConfigurableResource):
    """The strategy profile and the backtest's costs, cash rate and allocator mode."""

    profile: str = Field(default="risk_parity", description="equal_weight | inverse_vol | risk_parity | momentum | "
                         "performance_weighted | hybrid | vol_target")
    cost_bps: float = Field(default=5.0, description="Cost in basis points of traded notional")
    cash_rate: float = Field(default=0.0, description="Annual rate earned by the unscaled remainder (decimal)")
    allocator_mode: str = Field(default="precomputed", description="off | compute | precomputed")
    reports_dir: str = Field(default="", description="Where report files go; empty = $ALLOC_HOME/reports")

    def reports_root(self) -> Path:
        return Path(self.reports_dir or default_reports_dir())


def _specs(asset: str, checks: dict) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, description=desc, blocking=sev == "ERROR")
            for name, (sev, desc) in checks.items()]


def _full_window(warehouse: DuckDBWarehouse) -> tuple[dt.date, dt.date]:
    """The stored history the backtests run over: the first market day through the last day reached
    without a gap (the allocator layers stop there too)."""
    first, last = history_span(warehouse)
    if first is None:
        raise dg.Failure(allow_retries=False, description="market_prices is empty: run the refresh job first.")
    return first, last


def _weights_frame(dates: np.ndarray, idx: np.ndarray, symbols, weights: np.ndarray, extra: dict | None = None) -> pl.DataFrame:
    n = len(symbols)
    data = {
        "date": np.repeat(dates[idx], n),
        "symbol": np.tile(np.array(symbols), len(idx)),
        "weight": weights.reshape(-1),
    }
    for k, v in (extra or {}).items():
        data[k] = np.repeat(v, n)
    return pl.DataFrame(data).with_columns(pl.col("date").cast(pl.Date))


def _weights_outcome(frame: pl.DataFrame) -> CheckOutcome:
    per_date = frame.group_by("date").agg(pl.col("weight").sum().alias("total")).sort("date")
    bad_rows = (frame["weight"] < -1e-12) | (frame["weight"] > 1 + 1e-12) | ~frame["weight"].is_finite()
    bad_dates = per_date.filter(pl.col("total") > 1 + 1e-9)["date"].to_list()
    bad = bad_rows | frame["date"].is_in(bad_dates)
    return mask_outcome(CHECK_WEIGHTS_VALID, WEIGHT_CHECKS, frame, bad, "weight outside [0, 1] or date sums above 1")


def _read_weights(warehouse: DuckDBWarehouse, table: str) -> tuple[np.ndarray, list[str], np.ndarray, pl.DataFrame]:
    rows = warehouse.query(f"SELECT * FROM {table} ORDER BY date, symbol")
    if rows.height == 0:
        raise dg.Failure(allow_retries=False, description=f"{table} is empty: materialize it first.")
    wide = rows.pivot(on="symbol", index="date", values="weight").sort("date")
    symbols = sorted(c for c in wide.columns if c != "date")
    return wide["date"].to_numpy().astype("datetime64[D]"), symbols, wide.select(symbols).to_numpy(), rows


def _backtest_frame(dates: np.ndarray, result: BacktestResult) -> pl.DataFrame:
    return pl.DataFrame({
        "date": dates, "portfolio_return": result.portfolio_return, "equity": result.equity,
        "turnover": result.turnover, "cost": result.cost, "cash_weight": result.cash_weight,
    }).with_columns(pl.col("date").cast(pl.Date))


def _run(warehouse: DuckDBWarehouse, settings: BacktestSettings, table: str) -> tuple[pl.DataFrame, BacktestResult]:
    start, end = _full_window(warehouse)
    panel = load_panel(warehouse, start, end)
    trade_dates, symbols, weights, _ = _read_weights(warehouse, table)
    if tuple(symbols) != panel.symbols:
        raise dg.Failure(allow_retries=False, description=f"{table} symbols {symbols} differ from market_prices {panel.symbols}; re-run {table}.")
    idx = _trade_rows(panel.dates, trade_dates, table)
    result = run_backtest(panel.returns(), idx, weights, None, settings.cost_bps, settings.cash_rate)
    return _backtest_frame(panel.dates, result), result


def _backtest_outcome(frame: pl.DataFrame) -> CheckOutcome:
    bad = ~(frame["portfolio_return"].is_finite() & frame["equity"].is_finite() & (frame["equity"] > 0))
    return mask_outcome(CHECK_BACKTEST_FINITE, BACKTEST_CHECKS, frame, bad, "non-finite return or equity <= 0")


def _backtest_metadata(frame: pl.DataFrame) -> dict:
    eq = frame["equity"]
    return {
        "dagster/row_count": frame.height,
        "window": f"{frame['date'][0]} .. {frame['date'][-1]}",
        "final_equity": float(eq[-1]),
        "total_cost": float(frame["cost"].sum()),
        "trades": int((frame["turnover"] > 0).sum()),
    }


@dg.asset(
    deps=["market_prices"],
    group_name=GROUP_STRATEGY,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy"},
    code_version="weights-1",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=_specs("weights_raw", WEIGHT_CHECKS),
    metadata={"dagster/column_schema": column_schema(Weights), "dagster/table_name": "weights_raw"},
)
def weights_raw(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings):
    """Target weights of the strategy profile at its trade dates (allocator off).

    Default profile: risk parity (equal risk contribution, solved exactly), monthly, 126-day
    covariance, max single weight 0.20, max sector weight 0.30 (capped weight is redistributed pro
    rata to uncapped names, cash only if infeasible), minimum change 5 % of a name's weight.
    Weights decided at the close of t earn returns from t+1.
    """
    with warehouse.session():
        start, end = _full_window(warehouse)
        profile = get_profile(backtest.profile)
        panel = load_panel(warehouse, start, end)
        sw = profile_weights(panel, profile)
        rebalance_dates = panel.dates[sw.rebalance_idx][sw.trade_source]
        frame = _weights_frame(panel.dates, sw.trade_idx, panel.symbols, sw.trade_target,
                               {"rebalance_date": rebalance_dates})
        frame = frame.with_columns(pl.col("rebalance_date").cast(pl.Date), pl.lit(profile.name).alias("profile"))
        outcomes = [_weights_outcome(frame)]
        yield from raise_on_blocking(context, outcomes, asset="weights_raw")
        warehouse.replace_table("weights_raw", frame)
        last = frame.filter(pl.col("date") == frame["date"].max()).sort("weight", descending=True)
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": frame.height,
            "profile": profile.name,
            "trade_dates": int(len(sw.trade_idx)),
            "last_weights": dg.MetadataValue.md("| symbol | weight |\n|---|---:|\n" + "\n".join(
                f"| {s} | {w:.4f} |" for s, w in zip(last["symbol"], last["weight"]))),
        })
        for o in outcomes:
            yield check_result(o, "weights_raw")


@dg.asset(
    deps=["weights_raw", "market_prices"],
    group_name=GROUP_STRATEGY,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy"},
    code_version="backtest-1",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=_specs("baseline_backtest", {CHECK_BACKTEST_FINITE: BACKTEST_CHECKS[CHECK_BACKTEST_FINITE]}),
    metadata={"dagster/column_schema": column_schema(Backtest), "dagster/table_name": "baseline_backtest"},
)
def baseline_backtest(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings):
    """The strategy with the allocator off: daily net return, equity (1 before the first day),
    turnover and cost (bps x turnover, charged on the trade day); weights drift between trades and
    any remainder earns the cash rate."""
    with warehouse.session():
        frame, _ = _run(warehouse, backtest, "weights_raw")
        outcomes = [_backtest_outcome(frame)]
        yield from raise_on_blocking(context, outcomes, asset="baseline_backtest")
        warehouse.replace_table("baseline_backtest", frame)
        yield dg.MaterializeResult(metadata=_backtest_metadata(frame))
        for o in outcomes:
            yield check_result(o, "baseline_backtest")


def applied_series(warehouse: DuckDBWarehouse, allocator: AllocatorSettings, mode: AllocatorMode) -> tuple[np.ndarray, np.ndarray]:
    """The overlay dates and the scalar applied from each.

    ``precomputed`` reads the stored ``applied_scalars``; ``compute`` recomputes them here from
    ``risk_scalars`` with the same function and settings (so both give identical results); ``off``
    gives no overlay date (the scalar in force is 1.0 throughout).
    """
    if mode is AllocatorMode.OFF:
        return np.zeros(0, dtype="datetime64[D]"), np.zeros(0)
    if mode is AllocatorMode.PRECOMPUTED:
        applied = warehouse.query("SELECT date, risk_scalar_applied FROM applied_scalars ORDER BY date")
        if applied.height == 0:
            raise dg.Failure(allow_retries=False, description="applied_scalars is empty: run the refresh job (allocator mode precomputed).")
        return applied["date"].to_numpy().astype("datetime64[D]"), applied["risk_scalar_applied"].to_numpy()
    rs = warehouse.query("SELECT date, risk_scalar FROM risk_scalars ORDER BY date")
    if rs.height == 0:
        raise dg.Failure(allow_retries=False, description="risk_scalars is empty: run the refresh job (allocator mode compute).")
    cfg = allocator.apply_config()
    table = compute_applied(rs["date"].to_numpy().astype("datetime64[D]"), rs["risk_scalar"].to_numpy(),
                            cfg.frequency, cfg.apply_missing_scalar_as, cfg.overrides)
    return table["date"].to_numpy().astype("datetime64[D]"), table["risk_scalar_applied"].to_numpy(dtype=np.float64)


def strategy_book(warehouse: DuckDBWarehouse, settings: BacktestSettings):
    """The stored history, the strategy's trades (``weights_raw``) and its unscaled backtest:
    ``(panel, trade_idx, raw_weights, baseline_result)``."""
    start, end = _full_window(warehouse)
    panel = load_panel(warehouse, start, end)
    trade_dates, symbols, weights, _ = _read_weights(warehouse, "weights_raw")
    if tuple(symbols) != panel.symbols:
        raise dg.Failure(allow_retries=False, description=f"weights_raw symbols {symbols} differ from market_prices {panel.symbols}; re-run weights_raw.")
    idx = _trade_rows(panel.dates, trade_dates, "weights_raw")
    base = run_backtest(panel.returns(), idx, weights, None, settings.cost_bps, settings.cash_rate)
    return panel, idx, weights, base


def _trade_rows(dates: np.ndarray, trade_dates: np.ndarray, table: str) -> np.ndarray:
    idx = np.searchsorted(dates, trade_dates)
    if not np.array_equal(dates[np.minimum(idx, len(dates) - 1)], trade_dates):
        raise dg.Failure(allow_retries=False, description=f"{table} has dates that are not in market_prices; re-run {table}.")
    return idx


@dg.asset(
    deps=["weights_raw", "applied_scalars", "risk_scalars", "market_prices"],
    group_name=GROUP_STRATEGY,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy"},
    code_version="weights-scaled-2",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=_specs("weights_scaled", {**WEIGHT_CHECKS, CHECK_SCALED_CONSISTENT: BACKTEST_CHECKS[CHECK_SCALED_CONSISTENT]}),
    metadata={"dagster/column_schema": column_schema(Weights), "dagster/table_name": "weights_scaled"},
)
def weights_scaled(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings,
                   allocator: AllocatorSettings):
    """The trades of the governed book: the overlay acts at its own cadence (the allocator's
    ``rebalance_frequency``, default weekly), independent of the strategy's calendar.

    The book trades at every strategy trade date and on every overlay date whose applied scalar
    differs from the one in force; each time to ``scalar x`` the strategy's book at that close (its
    new target on a strategy trade date, its drifted weights otherwise), the rest in cash
    (``core.backtest.overlay_trades``). The scalar applied at an overlay date is the one computed at
    the previous overlay date (``applied_scalars``: one overlay rebalance of lag). Column ``kind``:
    ``strategy`` or ``overlay``. Mode ``precomputed`` reads ``applied_scalars``, ``compute``
    recomputes them from ``risk_scalars`` (identical), ``off`` leaves the weights unscaled."""
    with warehouse.session():
        mode = AllocatorMode(backtest.allocator_mode)
        panel, idx, _, base = strategy_book(warehouse, backtest)
        a_dates, a_vals = applied_series(warehouse, allocator, mode)
        daily = scalar_in_force(panel.dates, a_dates, a_vals, allocator.apply_missing_scalar_as if mode is not AllocatorMode.OFF else 1.0)
        trades = overlay_trades(base.weights, idx, daily)
        pos = np.searchsorted(a_dates, panel.dates[trades.idx], side="right") - 1
        since = (np.where(pos >= 0, a_dates[np.maximum(pos, 0)], panel.dates[trades.idx]) if a_dates.size
                 else panel.dates[trades.idx])
        frame = _weights_frame(panel.dates, trades.idx, panel.symbols, trades.targets,
                               {"scalar": trades.scalar, "scalar_since": since,
                                "kind": np.where(trades.strategy, "strategy", "overlay")}).with_columns(pl.col("scalar_since").cast(pl.Date))
        outcomes = [_weights_outcome(frame)]
        expected = (base.weights[trades.idx] * trades.scalar[:, None]).reshape(-1)
        bad = pl.Series(np.abs(frame["weight"].to_numpy() - expected) > 0)
        outcomes.append(mask_outcome(CHECK_SCALED_CONSISTENT, BACKTEST_CHECKS, frame, bad,
                                     "weight != scalar x the strategy's weight at that close"))
        yield from raise_on_blocking(context, outcomes, asset="weights_scaled")
        warehouse.replace_table("weights_scaled", frame)
        n_overlay = int((~trades.strategy).sum())
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": frame.height, "mode": mode.value,
            "overlay_cadence": allocator.rebalance_frequency,
            "trade_dates": int(len(trades.idx)), "overlay_only_trades": n_overlay,
            "scaled_trade_dates": int((trades.scalar < 1 - 1e-12).sum()),
            "scalar_mean": float(daily[idx[0]:].mean()) if idx.size else 1.0,
            "scalar_min": float(trades.scalar.min()) if idx.size else 1.0,
        })
        for o in outcomes:
            yield check_result(o, "weights_scaled")


@dg.asset(
    deps=["weights_scaled", "market_prices"],
    group_name=GROUP_STRATEGY,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy"},
    code_version="backtest-1",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=_specs("scaled_backtest", {CHECK_BACKTEST_FINITE: BACKTEST_CHECKS[CHECK_BACKTEST_FINITE]}),
    metadata={"dagster/column_schema": column_schema(Backtest), "dagster/table_name": "scaled_backtest"},
)
def scaled_backtest(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings):
    """The strategy with the allocator on: the same engine, costs and calendar as the baseline,
    trading the scaled weights."""
    with warehouse.session():
        frame, _ = _run(warehouse, backtest, "weights_scaled")
        outcomes = [_backtest_outcome(frame)]
        yield from raise_on_blocking(context, outcomes, asset="scaled_backtest")
        warehouse.replace_table("scaled_backtest", frame)
        yield dg.MaterializeResult(metadata=_backtest_metadata(frame))
        for o in outcomes:
            yield check_result(o, "scaled_backtest")


def _result_from_table(frame: pl.DataFrame) -> BacktestResult:
    n = frame.height
    return BacktestResult(frame["portfolio_return"].to_numpy(), frame["equity"].to_numpy(),
                          frame["turnover"].to_numpy(), frame["cost"].to_numpy(),
                          (1.0 - frame["cash_weight"].to_numpy()).reshape(n, 1))


@dg.asset(
    deps=["baseline_backtest", "scaled_backtest", "regime_series", "applied_scalars"],
    group_name=GROUP_REPORT,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "matplotlib", "json"},
    code_version="report-1",
    check_specs=_specs("comparison_report", REPORT_CHECKS),
)
def comparison_report(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings,
                      allocator: AllocatorSettings):
    """The two-pass audit: metrics baseline vs scaled vs delta (quantstats/empyrical conventions),
    allocator usage, regime distribution and transitions, the ten deepest de-risk events, a verdict
    with its reasons, and figures (equity with regime shading, drawdowns, applied scalar, regime
    probabilities). Files: ``$ALLOC_HOME/reports/<profile>/two_pass_comparison.{json,md}`` and PNGs."""
    with warehouse.session(read_only=True):  # a reader: never takes the writer's lock
        base = warehouse.query("SELECT * FROM baseline_backtest ORDER BY date")
        scaled = warehouse.query("SELECT * FROM scaled_backtest ORDER BY date")
        regimes = warehouse.query("SELECT * FROM regime_series ORDER BY date")
        weights = warehouse.query("SELECT DISTINCT date, scalar FROM weights_scaled ORDER BY date")
    if base.height == 0 or base["date"].to_list() != scaled["date"].to_list():
        raise dg.Failure(allow_retries=False, description="baseline_backtest and scaled_backtest cover different dates; re-run both.")
    dates = base["date"].to_numpy().astype("datetime64[D]")
    reg = dict(zip(regimes["date"].to_list(), regimes["regime"].to_list()))
    missing = [d for d in base["date"].to_list() if d not in reg]
    if missing:
        raise dg.Failure(allow_retries=False, description=f"regime_series lacks {len(missing)} backtest dates (first {missing[0]}); "
                                     "run the refresh job.")
    labels = [reg[d] for d in base["date"].to_list()]
    probs_by_date = {r["date"]: [r[c] for c in PROBABILITY_COLUMNS] for r in regimes.iter_rows(named=True)}
    probs = np.array([probs_by_date[d] for d in base["date"].to_list()])
    scalar_dates = weights["date"].to_numpy().astype("datetime64[D]")
    scalars = weights["scalar"].to_numpy()
    config = {k: v for k, v in allocator.model_dump().items() if k != "overrides_file"}
    config.update(cost_bps=backtest.cost_bps, cash_rate=backtest.cash_rate)
    # when cash earns a rate, that rate is the risk-free rate of Sharpe and Sortino (quantstats' rf)
    report = build_report(dates, _result_from_table(base), _result_from_table(scaled), scalar_dates, scalars, labels,
                          profile=backtest.profile, mode=backtest.allocator_mode, allocator_config=config,
                          risk_free=daily_rate(backtest.cash_rate))
    out_dir = backtest.reports_root() / backtest.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = write_report_figures(out_dir, dates, base["equity"].to_numpy(), scaled["equity"].to_numpy(),
                                   scalar_dates, scalars, labels, probabilities=probs, floor=allocator.floor)
    json_path, md_path = out_dir / "two_pass_comparison.json", out_dir / "two_pass_comparison.md"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(json_path)  # atomic: readers never see a half-written report
    tmp_md = md_path.with_suffix(".md.tmp")
    tmp_md.write_text(report_markdown(report, {k: p.name for k, p in figures.items()}))
    tmp_md.replace(md_path)
    context.log.info("Run summary\n" + run_summary(report, sources=None))
    missing_keys = [k for k in REPORT_KEYS if k not in report]
    sev, desc = REPORT_CHECKS[CHECK_REPORT_KEYS]
    outcomes = [CheckOutcome(CHECK_REPORT_KEYS, not missing_keys, sev, desc,
                             pl.DataFrame({"missing_key": missing_keys}) if missing_keys else pl.DataFrame())]
    equity_png = base64.b64encode(figures["equity"].read_bytes()).decode()
    yield dg.MaterializeResult(metadata={
        "verdict": report["verdict"]["status"],
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in report["verdict"]["reasons"]) or "_none_"),
        "comparison": dg.MetadataValue.md(comparison_table_md(report)),
        "equity_curves": dg.MetadataValue.md(f"![equity](data:image/png;base64,{equity_png})"),
        "report_json": dg.MetadataValue.path(str(json_path)),
        "report_md": dg.MetadataValue.path(str(md_path)),
        "figures": dg.MetadataValue.json({k: str(p) for k, p in figures.items()}),
        "window": f"{report['window']['start']} .. {report['window']['end']}",
        "scaled_fraction": report["allocator_usage"]["scaled_fraction"],
    })
    for o in outcomes:
        yield check_result(o, "comparison_report")


def comparison_table_md(report: dict) -> str:
    """Baseline | scaled | delta as a markdown table."""
    rows = ["| metric | baseline | scaled | delta |", "|---|---:|---:|---:|"]
    m = report["metrics"]
    for key in m["baseline"]:
        vals = [m[p][key] for p in ("baseline", "scaled", "delta")]
        rows.append(f"| {key} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in vals) + " |")
    return "\n".join(rows)


BACKTEST_ASSETS = [weights_raw, baseline_backtest, weights_scaled, scaled_backtest, comparison_report]
