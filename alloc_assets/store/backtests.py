"""Warehouse reads of the strategy, the twin backtests, the controls and the report.

Every function takes the ``DuckDBWarehouse`` resource object. A table that is missing, empty or out
of step with ``market_prices`` raises :class:`~alloc_assets.store.readers.WarehouseDataError`, whose message says which asset to
re-run; the Dagster layer turns it into a non-retried failure.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from alloc_assets.core.allocator.scalars import applied_scalars as compute_applied
from alloc_assets.core.portfolio.backtest import AllocatorMode, BacktestResult, run_backtest
from alloc_assets.core.regime import PROBABILITY_COLUMNS, Regime
from alloc_assets.store.readers import WarehouseDataError, history_span, load_panel, stored_indicator_names
from resources.allocator import AllocatorSettings
from resources.backtest import BacktestSettings
from resources.warehouse import DuckDBWarehouse

CONTROL_TABLE = "control_backtests"


def full_window(warehouse: DuckDBWarehouse) -> tuple[dt.date, dt.date]:
    """The stored history the backtests run over: the first market day through the last day reached
    without a gap (the allocator layers stop there too)."""
    first, last = history_span(warehouse)
    if first is None:
        raise WarehouseDataError("market_prices is empty: run the refresh job first.")
    return first, last


def read_weights(warehouse: DuckDBWarehouse, table: str) -> tuple[np.ndarray, list[str], np.ndarray, pl.DataFrame]:
    """A stored weights table: ``(trade dates, symbols, (dates, symbols) weights, long rows)``."""
    rows = warehouse.query(f"SELECT * FROM {table} ORDER BY date, symbol")
    if rows.height == 0:
        raise WarehouseDataError(f"{table} is empty: materialize it first.")
    wide = rows.pivot(on="symbol", index="date", values="weight").sort("date")
    symbols = sorted(c for c in wide.columns if c != "date")
    return wide["date"].to_numpy().astype("datetime64[D]"), symbols, wide.select(symbols).to_numpy(), rows


def trade_rows(dates: np.ndarray, trade_dates: np.ndarray, table: str) -> np.ndarray:
    """Rows of ``trade_dates`` in the market calendar ``dates`` (each must be a market day)."""
    idx = np.searchsorted(dates, trade_dates)
    if not np.array_equal(dates[np.minimum(idx, len(dates) - 1)], trade_dates):
        raise WarehouseDataError(f"{table} has dates that are not in market_prices; re-run {table}.")
    return idx


def panel_and_trades(warehouse: DuckDBWarehouse, table: str):
    """The stored history and the trades of a weights table on it: ``(panel, trade rows, weights)``."""
    start, end = full_window(warehouse)
    panel = load_panel(warehouse, start, end)
    trade_dates, symbols, weights, _ = read_weights(warehouse, table)
    if tuple(symbols) != panel.symbols:
        raise WarehouseDataError(f"{table} symbols {symbols} differ from market_prices {panel.symbols}; re-run {table}.")
    return panel, trade_rows(panel.dates, trade_dates, table), weights


def strategy_book(warehouse: DuckDBWarehouse, settings: BacktestSettings):
    """The stored history, the strategy's trades (``weights_raw``) and its unscaled backtest:
    ``(panel, trade_idx, raw_weights, baseline_result)``."""
    panel, idx, weights = panel_and_trades(warehouse, "weights_raw")
    base = run_backtest(panel.returns(), idx, weights, None, settings.cost_bps, settings.cash_rate)
    return panel, idx, weights, base


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
            raise WarehouseDataError("applied_scalars is empty: run the refresh job (allocator mode precomputed).")
        return applied["date"].to_numpy().astype("datetime64[D]"), applied["risk_scalar_applied"].to_numpy()
    rs = warehouse.query("SELECT date, risk_scalar FROM risk_scalars ORDER BY date")
    if rs.height == 0:
        raise WarehouseDataError("risk_scalars is empty: run the refresh job (allocator mode compute).")
    cfg = allocator.apply_config()
    table = compute_applied(rs["date"].to_numpy().astype("datetime64[D]"), rs["risk_scalar"].to_numpy(),
                            cfg.frequency, cfg.apply_missing_scalar_as, cfg.overrides)
    return table["date"].to_numpy().astype("datetime64[D]"), table["risk_scalar_applied"].to_numpy(dtype=np.float64)


def benchmark_returns(warehouse: DuckDBWarehouse, dates: np.ndarray, panel) -> tuple[np.ndarray, str]:
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


def result_from_table(frame: pl.DataFrame) -> BacktestResult:
    """A stored backtest table (``baseline_backtest`` layout) as a ``BacktestResult``."""
    n = frame.height
    return BacktestResult(frame["portfolio_return"].to_numpy(), frame["equity"].to_numpy(),
                          frame["turnover"].to_numpy(), frame["cost"].to_numpy(),
                          (1.0 - frame["cash_weight"].to_numpy()).reshape(n, 1))


def read_controls(warehouse: DuckDBWarehouse, dates: list) -> dict[str, BacktestResult]:
    """The stored control books aligned with ``dates`` (empty if the table is missing)."""
    if not warehouse.table_exists(CONTROL_TABLE):
        return {}
    rows = warehouse.query(f"SELECT * FROM {CONTROL_TABLE} ORDER BY control, date")
    out = {}
    for name in dict.fromkeys(rows["control"].to_list()):
        f = rows.filter(pl.col("control") == name)
        if f["date"].to_list() != dates:
            raise WarehouseDataError(f"{CONTROL_TABLE} ({name}) covers other dates than the backtests; re-run it.")
        out[name] = result_from_table(f)
    return out


def report_inputs(warehouse: DuckDBWarehouse):
    """What the report and its figures read (one read-only session): ``(baseline, scaled, regimes,
    scaled trade rows, first raw trade date, applied scalars, next computed scalar, controls,
    (benchmark close, name) or None)``."""
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
            raise WarehouseDataError("baseline_backtest and scaled_backtest cover different dates; re-run both.")
        dates_list = base["date"].to_list()
        controls = read_controls(warehouse, dates_list)
        bench = None
        if warehouse.table_exists("market_benchmark"):
            b = warehouse.query("SELECT date, name, close FROM market_benchmark WHERE date BETWEEN ? AND ? ORDER BY date",
                                [dates_list[0], dates_list[-1]])
            if b["date"].to_list() == dates_list:
                bench = (b["close"].to_numpy(), str(b["name"][0]))
    return base, scaled, regimes, weights, raw_first, applied, computed, controls, bench


def data_fallbacks(warehouse: DuckDBWarehouse, bench) -> dict:
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


def regimes_on_dates(regimes: pl.DataFrame, days: list, fill: bool = False) -> tuple[list[str], np.ndarray]:
    """The stored regime label and probabilities (columns ``PROBABILITY_COLUMNS``) of each of
    ``days``. A day without a stored regime is an error, or with ``fill`` NORMAL with certainty."""
    reg = dict(zip(regimes["date"].to_list(), regimes["regime"].to_list()))
    if not fill:
        missing = [d for d in days if d not in reg]
        if missing:
            raise WarehouseDataError(f"regime_series lacks {len(missing)} backtest dates (first {missing[0]}); run the refresh job.")
    normal = [1.0 if r is Regime.NORMAL else 0.0 for r in Regime]
    labels = [reg.get(d, Regime.NORMAL.name) for d in days]
    probs_by_date = {r["date"]: [r[c] for c in PROBABILITY_COLUMNS] for r in regimes.iter_rows(named=True)}
    return labels, np.array([probs_by_date.get(d, normal) for d in days])
