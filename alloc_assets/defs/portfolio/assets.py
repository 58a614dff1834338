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

from alloc_assets.core.portfolio.backtest import AllocatorMode, BacktestResult, overlay_trades, run_backtest, run_overlay, scalar_in_force
from alloc_assets.core.report.metrics import daily_rate
from alloc_assets.core.regime import PROBABILITY_COLUMNS
from alloc_assets.core.report.report import REPORT_KEYS, AuditInputs, build_report, jsonable, report_markdown, run_summary
from alloc_assets.core.allocator.scalars import applied_scalars as compute_applied
from alloc_assets.core.portfolio.strategies import get_profile, profile_weights
from alloc_assets.defs.common import SINGLE_RUN, WAREHOUSE_POOL, WAREHOUSE_RETRY, check_result, column_schema, load_panel, raise_on_blocking
from alloc_assets.store.jump_fits import JUMP_FITS_TABLE, jump_fit_rows, new_fit_rows
from alloc_assets.store.readers import history_span, stored_indicator_names
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
from resources.backtest import BacktestSettings
from resources.settings import default_reports_dir
from resources.warehouse import DuckDBWarehouse

GROUP_STRATEGY = "strategy"
GROUP_REPORT = "report"


def _pct(x: float | None) -> str:
    return "off" if x is None else f"{100 * x:.0f} %"


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
    code_version="weights-2",
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
        sw = profile_weights(panel, profile, backtest.cash_rate)  # the no-trade band drifts cash at the backtest's rate
        rebalance_dates = panel.dates[sw.rebalance_idx][sw.trade_source]
        frame = _weights_frame(panel.dates, sw.trade_idx, panel.symbols, sw.trade_target,
                               {"rebalance_date": rebalance_dates})
        frame = frame.with_columns(pl.col("rebalance_date").cast(pl.Date), pl.lit(profile.name).alias("profile"))
        outcomes = [_weights_outcome(frame)]
        yield from raise_on_blocking(context, outcomes, asset="weights_raw")
        warehouse.replace_table("weights_raw", frame)
        last = frame.filter(pl.col("date") == frame["date"].max()).sort("weight", descending=True)
        lim = sw.limits or profile.limits
        rule = list(sw.limit_notes) or [
            f"caps as configured: max single weight {_pct(lim.max_weight)}, max sector weight {_pct(lim.max_sector_weight)}"]
        yield dg.MaterializeResult(metadata={
            "dagster/row_count": frame.height,
            "profile": profile.name,
            "limits_rule": dg.MetadataValue.json(rule),
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


CONTROL_TABLE = "control_backtests"


def _benchmark_returns(warehouse: DuckDBWarehouse, dates: np.ndarray, panel) -> tuple[np.ndarray, str]:
    """Daily simple returns of the benchmark index over ``dates`` (0 on the first day) and its name;
    the equal-weight index of the universe when the data set has no benchmark (named so)."""
    if panel.benchmark is not None:
        name = warehouse.query("SELECT any_value(name) AS n FROM market_benchmark")["n"][0] or "benchmark"
        close = panel.benchmark
    else:
        name = "equal-weight index"
        r = np.nan_to_num(panel.returns(), nan=0.0).mean(axis=1)
        close = np.cumprod(1.0 + r)
    out = np.zeros(len(close))
    out[1:] = close[1:] / close[:-1] - 1.0
    return out, str(name)


def control_scalars(dates: np.ndarray, base: BacktestResult, first: int, governor_daily: np.ndarray,
                    bench_returns: np.ndarray, allocator: AllocatorSettings,
                    jump_cache: dict[str, dict]) -> tuple[dict[str, np.ndarray], dict[str, dict], dict[str, dict], list[dict]]:
    """Daily risk scalars of each control, computed at each close from data through it
    (``core.controls``), their settings, and the jump-model refits fitted now (new cache entries)
    with the list of refits in force. The governor's own applied scalars give ``exposure_matched``."""
    from alloc_assets.core.report import controls as ctl
    from alloc_assets.core.allocator import jump_model as jm

    level = ctl.exposure_matched_scalar(governor_daily, first)
    risk = {"exposure_matched": np.full(len(dates), level),
            "vol_cap": ctl.vol_cap_scalar(base.portfolio_return, first, allocator.floor)}
    r = bench_returns.copy()
    r[0] = np.nan  # the first day has no earlier close
    state, _, new, fits = jm.cached_walk_forward(dates, r, jump_cache)
    risk["jump_model"] = jm.jump_model_scalars(state, allocator.floor)
    first_fit = int(np.searchsorted(dates, np.datetime64(fits[0]["fit_date"]))) if fits else len(dates)
    fitted = np.arange(len(dates)) >= first_fit
    settings = {
        "exposure_matched": {"scalar": level, "rule": "mean of the governor's scalar in force from the strategy's first trade"},
        "vol_cap": {"floor": allocator.floor, "window_days": ctl.VOL_CAP_WINDOW, "min_history_days": ctl.VOL_CAP_MIN_HISTORY,
                    "target": "expanding volatility of the strategy book through the date"},
        "jump_model": {"floor": allocator.floor, "penalty": jm.DEFAULT_PENALTY, "refit": jm.DEFAULT_REFIT.value,
                       "n_init": jm.DEFAULT_N_INIT, "min_train_days": jm.DEFAULT_MIN_TRAIN_DAYS, "fits": len(fits),
                       "first_fit": fits[0]["fit_date"] if fits else None,
                       "switches_per_year": float(jm.switches_per_year(state, fitted)),
                       "input": "benchmark index daily returns", "package": "jumpmodels (online inference only)"},
    }
    return risk, settings, new, fits


@dg.asset(
    deps=["weights_raw", "applied_scalars", "market_prices"],
    group_name=GROUP_STRATEGY,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy"},
    code_version="controls-1",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=_specs(CONTROL_TABLE, {CHECK_BACKTEST_FINITE: BACKTEST_CHECKS[CHECK_BACKTEST_FINITE]}),
    metadata={"dagster/table_name": CONTROL_TABLE},
)
def control_backtests(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings,
                      allocator: AllocatorSettings):
    """The controls the governor is judged against, in the same engine with the same costs, cash
    rate, lag and overlay cadence (``core.controls``): ``exposure_matched`` (a constant scalar at the
    governor's mean exposure), ``vol_cap`` (recent volatility capped at the book's own long-run
    volatility, same floor) and ``jump_model`` (a statistical jump model on the benchmark, fitted
    walk-forward with online inference only, bull 1 / bear floor). Each daily scalar goes through
    ``applied_scalars`` at the allocator's cadence (computed at one overlay date, acting from the
    next) and the overlay of the strategy's book. One row per day and control."""
    with warehouse.session():
        mode = AllocatorMode(backtest.allocator_mode)
        panel, idx, _, base = strategy_book(warehouse, backtest)
        a_dates, a_vals = applied_series(warehouse, allocator, AllocatorMode.PRECOMPUTED if mode is AllocatorMode.OFF else mode)
        governor = scalar_in_force(panel.dates, a_dates, a_vals, allocator.apply_missing_scalar_as)
        first = int(idx[0]) if idx.size else len(panel.dates)
        bench_r, _ = _benchmark_returns(warehouse, panel.dates, panel)
        cached = jump_fit_rows(warehouse)
        cache = {k: json.loads(v) for k, v in zip(cached["key"].to_list(), cached["record"].to_list())}
        risk, settings, new_fits, fits = control_scalars(panel.dates, base, first, governor, bench_r, allocator, cache)
        cfg = allocator.apply_config()
        returns = panel.returns()
        frames = []
        for name, r in risk.items():
            table = compute_applied(panel.dates, r, cfg.frequency, cfg.apply_missing_scalar_as, ())
            daily = scalar_in_force(panel.dates, table["date"].to_numpy().astype("datetime64[D]"),
                                    table["risk_scalar_applied"].to_numpy(dtype=np.float64), cfg.apply_missing_scalar_as)
            result, _ = run_overlay(returns, base, idx, daily, backtest.cost_bps, backtest.cash_rate)
            frames.append(_backtest_frame(panel.dates, result).with_columns(
                pl.lit(name).alias("control"), pl.Series("scalar", daily), pl.Series("risk_scalar", r)))
        frame = pl.concat(frames)
        outcomes = [_backtest_outcome(frame)]
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


def read_controls(warehouse: DuckDBWarehouse, dates: list) -> dict[str, BacktestResult]:
    """The stored control books aligned with ``dates`` (empty if the table is missing)."""
    if not warehouse.table_exists(CONTROL_TABLE):
        return {}
    rows = warehouse.query(f"SELECT * FROM {CONTROL_TABLE} ORDER BY control, date")
    out = {}
    for name in dict.fromkeys(rows["control"].to_list()):
        f = rows.filter(pl.col("control") == name)
        if f["date"].to_list() != dates:
            raise dg.Failure(allow_retries=False, description=f"{CONTROL_TABLE} ({name}) covers other dates than the backtests; re-run it.")
        out[name] = _result_from_table(f)
    return out


def _result_from_table(frame: pl.DataFrame) -> BacktestResult:
    n = frame.height
    return BacktestResult(frame["portfolio_return"].to_numpy(), frame["equity"].to_numpy(),
                          frame["turnover"].to_numpy(), frame["cost"].to_numpy(),
                          (1.0 - frame["cash_weight"].to_numpy()).reshape(n, 1))


def _report_inputs(warehouse: DuckDBWarehouse):
    """What the report and its figures read (one read-only session)."""
    with warehouse.session(read_only=True):  # a reader: never takes the writer's lock
        base = warehouse.query("SELECT * FROM baseline_backtest ORDER BY date")
        scaled = warehouse.query("SELECT * FROM scaled_backtest ORDER BY date")
        regimes = warehouse.query("SELECT * FROM regime_series ORDER BY date")
        weights = warehouse.query("SELECT DISTINCT date, scalar, kind FROM weights_scaled ORDER BY date")
        raw_first = warehouse.query("SELECT min(date) AS d FROM weights_raw")["d"][0]
        applied = warehouse.query("SELECT date, risk_scalar_applied FROM applied_scalars ORDER BY date")
        # the scalar the next overlay date applies: the one computed at the latest overlay date
        computed = warehouse.query("SELECT date, risk_scalar FROM risk_scalars "
                                   "WHERE date = (SELECT max(date) FROM applied_scalars)")
        if base.height == 0 or base["date"].to_list() != scaled["date"].to_list():
            raise dg.Failure(allow_retries=False, description="baseline_backtest and scaled_backtest cover different dates; re-run both.")
        dates_list = base["date"].to_list()
        controls = read_controls(warehouse, dates_list)
        bench = None
        if warehouse.table_exists("market_benchmark"):
            b = warehouse.query("SELECT date, name, close FROM market_benchmark WHERE date BETWEEN ? AND ? ORDER BY date",
                                [dates_list[0], dates_list[-1]])
            if b["date"].to_list() == dates_list:
                bench = (b["close"].to_numpy(), str(b["name"][0]))
    return base, scaled, regimes, weights, raw_first, applied, computed, controls, bench


@dg.asset(
    deps=["baseline_backtest", "scaled_backtest", "control_backtests", "regime_series", "applied_scalars"],
    group_name=GROUP_REPORT,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "json"},
    code_version="report-2",
    check_specs=_specs("comparison_report", REPORT_CHECKS),
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
    base, scaled, regimes, weights, raw_first, applied, computed, controls, bench = _report_inputs(warehouse)
    dates = base["date"].to_numpy().astype("datetime64[D]")
    reg = dict(zip(regimes["date"].to_list(), regimes["regime"].to_list()))
    missing = [d for d in base["date"].to_list() if d not in reg]
    if missing:
        raise dg.Failure(allow_retries=False, description=f"regime_series lacks {len(missing)} backtest dates (first {missing[0]}); "
                                     "run the refresh job.")
    labels = [reg[d] for d in base["date"].to_list()]
    probs_by_date = {r["date"]: [r[c] for c in PROBABILITY_COLUMNS] for r in regimes.iter_rows(named=True)}
    probs = np.array([probs_by_date[d] for d in base["date"].to_list()])
    mode = AllocatorMode(backtest.allocator_mode)
    a_dates = applied["date"].to_numpy().astype("datetime64[D]")
    a_vals = applied["risk_scalar_applied"].to_numpy()
    governor = (np.ones(len(dates)) if mode is AllocatorMode.OFF
                else scalar_in_force(dates, a_dates, a_vals, allocator.apply_missing_scalar_as))
    first = int(np.searchsorted(dates, np.datetime64(raw_first, "D"))) if raw_first is not None else len(dates)
    # the verdict and the usage block sample the governor at its overlay dates once the strategy is
    # invested (every date counts once; trade rows would over-weight the dates where it changed)
    on = a_dates >= dates[min(first, len(dates) - 1)]
    scalar_dates = a_dates[on]
    scalars = np.ones(int(on.sum())) if mode is AllocatorMode.OFF else a_vals[on]
    nxt = computed.row(0) if computed.height else (None, None)
    config = {k: v for k, v in allocator.model_dump().items() if k != "overrides_file"}
    config.update(cost_bps=backtest.cost_bps, cash_rate=backtest.cash_rate)
    audit = AuditInputs(
        controls=controls, control_settings=_control_settings(context, allocator), governor_daily=governor,
        first_invested=first, benchmark_close=None if bench is None else bench[0],
        benchmark_name="benchmark" if bench is None else bench[1], probabilities=probs,
        next_scalar=None if nxt[1] is None or mode is AllocatorMode.OFF else float(nxt[1]), next_computed_on=nxt[0])
    # when cash earns a rate, that rate is the risk-free rate of Sharpe and Sortino (quantstats' rf)
    report = build_report(dates, _result_from_table(base), _result_from_table(scaled), scalar_dates, scalars, labels,
                          profile=backtest.profile, mode=backtest.allocator_mode, allocator_config=config,
                          risk_free=daily_rate(backtest.cash_rate), audit=audit)
    report["data"] = _data_fallbacks(warehouse, bench)
    if report.get("exposure") is not None:  # the rule that set the caps of this universe
        report["exposure"]["limits_rule"] = list(_latest_metadata(context, "weights_raw", "limits_rule") or [])
    out_dir = backtest.reports_root() / backtest.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "two_pass_comparison.json", out_dir / "two_pass_comparison.md"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2))
    tmp.replace(json_path)  # atomic: readers never see a half-written report
    tmp_md = md_path.with_suffix(".md.tmp")
    tmp_md.write_text(report_markdown(report, {k: f"{k}.png" for k in REPORT_FIGURES}))
    tmp_md.replace(md_path)
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


def _data_fallbacks(warehouse: DuckDBWarehouse, bench) -> dict:
    """Which benchmark and sectors the run used, and every fallback taken for a missing one (stated,
    never silent)."""
    with warehouse.session(read_only=True):
        n_sectors = (warehouse.query("SELECT count(DISTINCT sector) AS n FROM market_sectors")["n"][0]
                     if warehouse.table_exists("market_sectors") else 0)
        indicators = stored_indicator_names(warehouse)
    fallbacks = []
    if bench is None:
        fallbacks.append("no benchmark in the market data: the latent state uses the equal-weight index of the "
                         "universe and the report has no benchmark column")
    if not n_sectors:
        fallbacks.append("no sectors file: each name is its own sector (the sector cap acts as a second single-name cap)")
    return {"benchmark": None if bench is None else bench[1], "sectors": int(n_sectors or 0),
            "indicators": indicators, "fallbacks": fallbacks}


def _latest_metadata(context, asset: str, key: str):
    """A metadata value of an upstream asset's latest materialization (None if there is none)."""
    try:
        ev = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    except Exception:  # noqa: BLE001 - an instance without the event: the value is then unknown
        ev = None
    md = ev.asset_materialization.metadata if ev is not None and ev.asset_materialization else {}
    value = md.get(key)
    return None if value is None else value.value


def _control_settings(context, allocator: AllocatorSettings) -> dict:
    """The settings each control was run with (from the latest ``control_backtests`` materialization)."""
    return dict(_latest_metadata(context, CONTROL_TABLE, "controls") or {})


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
    from alloc_assets.core.report.figures import write_report_figures

    
    base, scaled, regimes, weights, _, _, _, controls, bench = _report_inputs(warehouse)
    dates = base["date"].to_numpy().astype("datetime64[D]")
    reg = dict(zip(regimes["date"].to_list(), regimes["regime"].to_list()))
    labels = [reg.get(d, "NORMAL") for d in base["date"].to_list()]
    probs_by_date = {r["date"]: [r[c] for c in PROBABILITY_COLUMNS] for r in regimes.iter_rows(named=True)}
    probs = np.array([probs_by_date.get(d, [1.0, 0.0, 0.0, 0.0]) for d in base["date"].to_list()])
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


def episodes_md(report: dict) -> str:
    """The drawdown episodes as a markdown table (depth of each book, when the governor de-risked)."""
    eps = report.get("episodes") or []
    if not eps:
        return "_no baseline drawdown deeper than 15 %_"
    books = list(eps[0]["depth"])
    rows = ["| peak | trough | recovery | " + " | ".join(books) + " | de-risk vs trough (days) | share before trough |",
            "|---|---|---|" + "---:|" * (len(books) + 2)]
    for e in eps:
        depth = " | ".join("n/a" if e["depth"].get(b) is None else f"{100 * e['depth'][b]:.1f} %" for b in books)
        days = "never" if e["first_derisk_days_from_trough"] is None else f"{e['first_derisk_days_from_trough']:+d}"
        share = "n/a" if e["derisk_share_before_trough"] is None else f"{100 * e['derisk_share_before_trough']:.0f} %"
        rows.append(f"| {e['peak']} | {e['trough']} | {e['recovery'] or 'not yet'} | {depth} | {days} | {share} |")
    return "\n".join(rows)


def comparison_table_md(report: dict) -> str:
    """Baseline | scaled | delta | each control | the benchmark, as a markdown table."""
    m = report["metrics"]
    cols = [("baseline", m["baseline"]), ("scaled", m["scaled"]), ("delta", m["delta"])]
    cols += [(k, v["metrics"]) for k, v in (report.get("controls") or {}).items()]
    if report.get("benchmark"):
        cols.append((report["benchmark"]["name"], report["benchmark"]["metrics"]))
    rows = ["| metric | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    for key in m["baseline"]:
        rows.append(f"| {key} | " + " | ".join("n/a" if v.get(key) is None else f"{v[key]:.4f}" for _, v in cols) + " |")
    return "\n".join(rows)


BACKTEST_ASSETS = [weights_raw, baseline_backtest, weights_scaled, scaled_backtest, control_backtests, comparison_report,
                   report_figures]
