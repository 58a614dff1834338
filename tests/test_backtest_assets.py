"""Strategy, twin backtests and the report through Dagster: allocator modes and the report contract."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from alloc_assets.defs.allocator import ALLOCATOR_ASSETS
from alloc_assets.defs.backtest import BACKTEST_ASSETS, REPORT_KEYS, BacktestSettings
from alloc_assets.defs.market import market_prices
from alloc_assets.partitions import range_tags
from resources.allocator import AllocatorSettings
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

METRIC_KEYS = {"cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar", "worst_month", "worst_quarter",
               "var_95", "cvar_95", "turnover"}


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    home = tmp_path_factory.mktemp("bt")
    wh = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    resources = {"warehouse": wh, "market_source": MarketDataSource(path=""),
                 "allocator": AllocatorSettings(overrides_file=str(home / "none.csv"))}
    assert dg.materialize([market_prices, *ALLOCATOR_ASSETS], instance=dg.DagsterInstance.ephemeral(),
                          resources=resources, tags=range_tags("2005-01-03", "2009-12-31")).success
    return home, wh, resources


def run_backtests(history, mode: str) -> dict[str, pl.DataFrame]:
    home, wh, resources = history
    settings = BacktestSettings(allocator_mode=mode, reports_dir=str(home / f"reports_{mode}"))
    result = dg.materialize([*BACKTEST_ASSETS], instance=dg.DagsterInstance.ephemeral(),
                            resources={**resources, "backtest": settings},
                            selection=[a.key for a in BACKTEST_ASSETS])
    assert result.success
    return {t: wh.query(f"SELECT * FROM {t} ORDER BY date{', symbol' if 'weights' in t else ''}")
            for t in ("weights_raw", "baseline_backtest", "weights_scaled", "scaled_backtest")}


def test_compute_and_precomputed_are_identical_and_off_is_the_baseline(history):
    pre = run_backtests(history, "precomputed")
    comp = run_backtests(history, "compute")
    for table in pre:
        assert pre[table].equals(comp[table]), table
    off = run_backtests(history, "off")
    assert off["scaled_backtest"].drop("date").equals(off["baseline_backtest"].drop("date"))
    assert (off["weights_scaled"]["scalar"] == 1.0).all()
    # the allocator did act in 2005-2009 (2008): the scaled pass differs from the baseline
    assert not pre["scaled_backtest"]["equity"].equals(pre["baseline_backtest"]["equity"])
    # the baseline is the same in every mode
    assert pre["baseline_backtest"].equals(off["baseline_backtest"])


def test_scaled_weights_use_the_applied_scalar_in_force(history):
    home, wh, _ = history
    tables = run_backtests(history, "precomputed")
    applied = wh.query("SELECT date, risk_scalar_applied FROM applied_scalars ORDER BY date")
    ws = tables["weights_scaled"].select("date", "scalar").unique().sort("date")
    joined = ws.join_asof(applied.sort("date"), on="date", strategy="backward")
    np.testing.assert_array_equal(joined["scalar"].to_numpy(), joined["risk_scalar_applied"].fill_null(1.0).to_numpy())
    raw = tables["weights_raw"].select("date", "symbol", pl.col("weight").alias("raw"))
    both = tables["weights_scaled"].join(raw, on=["date", "symbol"])
    np.testing.assert_array_equal(both["weight"].to_numpy(), (both["raw"] * both["scalar"]).to_numpy())


def test_report_files_keys_and_figures(history):
    home, _, _ = history
    run_backtests(history, "precomputed")
    out = home / "reports_precomputed" / "risk_parity"
    report = json.loads((out / "two_pass_comparison.json").read_text())
    assert tuple(report) == REPORT_KEYS
    assert set(report["window"]) == {"start", "end"}
    assert set(report["allocator"]) == {"mode", "config"} and report["allocator"]["mode"] == "precomputed"
    for part in ("baseline", "scaled", "delta"):
        assert set(report["metrics"][part]) == METRIC_KEYS
    assert set(report["allocator_usage"]) == {"rebalances", "scaled_rebalances", "scaled_fraction",
                                              "scalar_mean", "scalar_min", "scalar_max"}
    assert set(report["regime_distribution"]) >= {"NORMAL", "ELEVATED", "STRESS", "CRISIS"}
    assert set(report["regime_transitions"]) == {"count", "per_year", "matrix"}
    assert all(set(e) == {"date", "scalar", "regime"} for e in report["top_derisk_events"])
    assert len(report["top_derisk_events"]) <= 10
    assert report["verdict"]["status"] in {"good", "warning", "failure"} and report["verdict"]["reasons"]
    md = (out / "two_pass_comparison.md").read_text()
    assert "baseline" in md.lower() and "verdict" in md.lower()
    for name in ("equity", "drawdown", "scalar", "regime_probabilities"):
        png = (out / f"{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000, name
