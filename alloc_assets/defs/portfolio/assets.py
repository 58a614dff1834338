"""Strategy and twin backtests (whole history, unpartitioned).

weights_raw -> baseline_backtest; weights_raw + applied scalars -> weights_scaled -> scaled_backtest.
One engine (``core.portfolio.backtest.run_backtest``) and the same costs and calendar for both
passes. The audit of the two passes (controls, report, figures) is in ``defs.report.assets``.
"""


import dagster as dg
import numpy as np
import polars as pl

from alloc_assets.core.portfolio.backtest import AllocatorMode, BacktestResult, overlay_trades, run_backtest, scalar_in_force
from alloc_assets.core.portfolio.profiles import get_profile
from alloc_assets.core.portfolio.weights import profile_weights
from alloc_assets.core.report.rendering import weights_md
from alloc_assets.defs.common import (
    SINGLE_RUN,
    WAREHOUSE_POOL,
    WAREHOUSE_RETRY,
    asset_check_specs,
    check_result,
    column_schema,
    failing_without_retry,
    load_panel,
    raise_on_blocking,
)
from alloc_assets.schemas import (
    BACKTEST_CHECKS,
    CHECK_BACKTEST_FINITE,
    CHECK_SCALED_CONSISTENT,
    CHECK_WEIGHTS_VALID,
    WEIGHT_CHECKS,
    Backtest,
    CheckOutcome,
    Weights,
    mask_outcome,
)
from alloc_assets.store.backtests import applied_series, full_window, panel_and_trades, strategy_book
from resources.allocator import AllocatorSettings
from resources.backtest import BacktestSettings
from resources.warehouse import DuckDBWarehouse

GROUP_STRATEGY = "strategy"


def _pct(x: float | None) -> str:
    return "off" if x is None else f"{100 * x:.0f} %"


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


def backtest_frame(dates: np.ndarray, result: BacktestResult) -> pl.DataFrame:
    return pl.DataFrame({
        "date": dates, "portfolio_return": result.portfolio_return, "equity": result.equity,
        "turnover": result.turnover, "cost": result.cost, "cash_weight": result.cash_weight,
    }).with_columns(pl.col("date").cast(pl.Date))


def _run(warehouse: DuckDBWarehouse, settings: BacktestSettings, table: str) -> tuple[pl.DataFrame, BacktestResult]:
    panel, idx, weights = panel_and_trades(warehouse, table)
    result = run_backtest(panel.returns(), idx, weights, None, settings.cost_bps, settings.cash_rate)
    return backtest_frame(panel.dates, result), result


def backtest_outcome(frame: pl.DataFrame) -> CheckOutcome:
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


def _backtest_table(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, settings: BacktestSettings,
                    weights_table: str, asset: str):
    """Backtest a stored weights table, check it, store it as ``asset`` (both twin backtests)."""
    with failing_without_retry(), warehouse.session():
        frame, _ = _run(warehouse, settings, weights_table)
        outcomes = [backtest_outcome(frame)]
        yield from raise_on_blocking(context, outcomes, asset=asset)
        warehouse.replace_table(asset, frame)
        yield dg.MaterializeResult(metadata=_backtest_metadata(frame))
        for o in outcomes:
            yield check_result(o, asset)


@dg.asset(
    deps=["market_prices"],
    group_name=GROUP_STRATEGY,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy"},
    code_version="weights-2",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=asset_check_specs("weights_raw", WEIGHT_CHECKS),
    metadata={"dagster/column_schema": column_schema(Weights), "dagster/table_name": "weights_raw"},
)
def weights_raw(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings):
    """Target weights of the strategy profile at its trade dates (allocator off).

    Default profile: risk parity (equal risk contribution, solved exactly), monthly, 126-day
    covariance, max single weight 0.20, max sector weight 0.30 (capped weight is redistributed pro
    rata to uncapped names, cash only if infeasible), minimum change 5 % of a name's weight.
    Weights decided at the close of t earn returns from t+1.
    """
    with failing_without_retry(), warehouse.session():
        start, end = full_window(warehouse)
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
            "last_weights": dg.MetadataValue.md(weights_md(last["symbol"], last["weight"])),
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
    check_specs=asset_check_specs("baseline_backtest", {CHECK_BACKTEST_FINITE: BACKTEST_CHECKS[CHECK_BACKTEST_FINITE]}),
    metadata={"dagster/column_schema": column_schema(Backtest), "dagster/table_name": "baseline_backtest"},
)
def baseline_backtest(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings):
    """The strategy with the allocator off: daily net return, equity (1 before the first day),
    turnover and cost (bps x turnover, charged on the trade day); weights drift between trades and
    any remainder earns the cash rate."""
    yield from _backtest_table(context, warehouse, backtest, "weights_raw", "baseline_backtest")


@dg.asset(
    deps=["weights_raw", "applied_scalars", "risk_scalars", "market_prices"],
    group_name=GROUP_STRATEGY,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy"},
    code_version="weights-scaled-2",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=asset_check_specs("weights_scaled", {**WEIGHT_CHECKS, CHECK_SCALED_CONSISTENT: BACKTEST_CHECKS[CHECK_SCALED_CONSISTENT]}),
    metadata={"dagster/column_schema": column_schema(Weights), "dagster/table_name": "weights_scaled"},
)
def weights_scaled(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings,
                   allocator: AllocatorSettings):
    """The trades of the governed book: the overlay acts at its own cadence (the allocator's
    ``rebalance_frequency``, default weekly), independent of the strategy's calendar.

    The book trades at every strategy trade date and on every overlay date whose applied scalar
    differs from the one in force; each time to ``scalar x`` the strategy's book at that close (its
    new target on a strategy trade date, its drifted weights otherwise), the rest in cash
    (``core.portfolio.backtest.overlay_trades``). The scalar applied at an overlay date is the one computed at
    the previous overlay date (``applied_scalars``: one overlay rebalance of lag). Column ``kind``:
    ``strategy`` or ``overlay``. Mode ``precomputed`` reads ``applied_scalars``, ``compute``
    recomputes them from ``risk_scalars`` (identical), ``off`` leaves the weights unscaled."""
    with failing_without_retry(), warehouse.session():
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
    check_specs=asset_check_specs("scaled_backtest", {CHECK_BACKTEST_FINITE: BACKTEST_CHECKS[CHECK_BACKTEST_FINITE]}),
    metadata={"dagster/column_schema": column_schema(Backtest), "dagster/table_name": "scaled_backtest"},
)
def scaled_backtest(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, backtest: BacktestSettings):
    """The strategy with the allocator on: the same engine, costs and calendar as the baseline,
    trading the scaled weights."""
    yield from _backtest_table(context, warehouse, backtest, "weights_scaled", "scaled_backtest")


BACKTEST_ASSETS = [weights_raw, baseline_backtest, weights_scaled, scaled_backtest]
