"""Strategy, twin backtests and the report through Dagster: allocator modes, the report contract,
and ``refresh_job`` taking market data for a range of years to the report in one run."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import polars as pl
import pytest

from alloc_assets.defs.allocator.assets import ALLOCATOR_ASSETS
from alloc_assets.core.report.report import REPORT_KEYS
from alloc_assets.defs.portfolio.assets import BACKTEST_ASSETS
from alloc_assets.defs.report.assets import REPORT_ASSETS
from resources.backtest import BacktestSettings
from alloc_assets.defs.automation.jobs import refresh_job
from alloc_assets.defs.market.assets import market_prices
from alloc_assets.defs.market.partitions import range_tags
from resources.allocator import AllocatorSettings
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

YEARS = ("2005", "2009")
BACKTEST_TABLES = ("weights_raw", "baseline_backtest", "weights_scaled", "scaled_backtest")

METRIC_KEYS = {"cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar", "worst_month", "worst_quarter",
               "var_95", "cvar_95", "turnover"}


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    home = tmp_path_factory.mktemp("bt")
    wh = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    resources = {"warehouse": wh, "market_source": MarketDataSource(path=""),
                 "landing": LandingZone(path=str(home / "landing")),
                 "allocator": AllocatorSettings(overrides_file=str(home / "none.csv"))}
    assert dg.materialize([market_prices, *ALLOCATOR_ASSETS], instance=dg.DagsterInstance.ephemeral(),
                          resources=resources, tags=range_tags(*YEARS)).success
    return home, wh, resources


def read_tables(wh: DuckDBWarehouse) -> dict[str, pl.DataFrame]:
    return {t: wh.query(f"SELECT * FROM {t} ORDER BY date{', symbol' if 'weights' in t else ''}")
            for t in BACKTEST_TABLES}


def run_backtests(history, mode: str) -> dict[str, pl.DataFrame]:
    home, wh, resources = history
    settings = BacktestSettings(allocator_mode=mode, reports_dir=str(home / f"reports_{mode}"))
    result = dg.materialize([*BACKTEST_ASSETS, *REPORT_ASSETS], instance=dg.DagsterInstance.ephemeral(),
                            resources={**resources, "backtest": settings},
                            selection=[a.key for a in (*BACKTEST_ASSETS, *REPORT_ASSETS)])
    assert result.success
    return read_tables(wh)


@pytest.fixture(scope="module")
def precomputed(history):
    """The backtests and the report in the default mode (allocator precomputed)."""
    return run_backtests(history, "precomputed")


def test_backtests_cover_the_stored_history(history, precomputed):
    """The backtests run over the whole stored history: the first market day through the last."""
    _, wh, _ = history
    tables = precomputed
    days = wh.query("SELECT DISTINCT date FROM market_prices ORDER BY date")["date"].to_list()
    assert str(days[0]) == "2005-01-03" and str(days[-1]) == "2009-12-31"
    for name in ("baseline_backtest", "scaled_backtest"):
        assert tables[name]["date"].to_list() == days, name
    applied = wh.query("SELECT min(date) AS a, max(date) AS b FROM applied_scalars").row(0)
    # the overlay's default cadence is weekly: the last trading day of each ISO week
    assert str(applied[0]) == "2005-01-07" and str(applied[1]) == "2009-12-31"


def test_compute_and_precomputed_are_identical_and_off_is_the_baseline(history, precomputed):
    pre = precomputed
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


def test_scaled_weights_use_the_applied_scalar_in_force(history, precomputed):
    home, wh, _ = history
    tables = precomputed
    applied = wh.query("SELECT date, risk_scalar_applied FROM applied_scalars ORDER BY date")
    ws = tables["weights_scaled"].select("date", "scalar", "kind").unique().sort("date")
    joined = ws.join_asof(applied.sort("date"), on="date", strategy="backward")
    np.testing.assert_array_equal(joined["scalar"].to_numpy(), joined["risk_scalar_applied"].fill_null(1.0).to_numpy())
    raw = tables["weights_raw"].select("date", "symbol", pl.col("weight").alias("raw"))
    # on the strategy's own trade dates the governed book is scalar x the strategy's target
    both = tables["weights_scaled"].filter(pl.col("kind") == "strategy").join(raw, on=["date", "symbol"])
    assert both.height == raw.height
    np.testing.assert_array_equal(both["weight"].to_numpy(), (both["raw"] * both["scalar"]).to_numpy())
    # between them, the weekly overlay trades when its scalar changes: each such date is an applied
    # scalar date whose value differs from the previous one, and never a strategy trade date
    overlay = ws.filter(pl.col("kind") == "overlay")
    assert overlay.height > 0
    changes = applied.with_columns(prev=pl.col("risk_scalar_applied").shift(1).fill_null(1.0)).filter(
        pl.col("risk_scalar_applied") != pl.col("prev"))["date"].to_list()
    assert set(overlay["date"].to_list()) <= set(changes)
    assert not set(overlay["date"].to_list()) & set(raw["date"].to_list())


def test_report_files_keys_and_figures(history, precomputed):
    home, _, _ = history
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


def test_refresh_job_is_one_run_from_market_data_to_the_report(history, precomputed, tmp_path):
    """``refresh_job`` over the years 2005..2009 (one run: market, allocator, strategy, backtests,
    report) stores the same tables as the assets materialized step by step above."""
    _, wh, _ = history
    reference = precomputed
    home = tmp_path / "job"
    local = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    defs = dg.Definitions(
        assets=[market_prices, *ALLOCATOR_ASSETS, *BACKTEST_ASSETS, *REPORT_ASSETS], jobs=[refresh_job],
        resources={"warehouse": local, "market_source": MarketDataSource(path=""),
                   "landing": LandingZone(path=str(home / "landing")),
                   "allocator": AllocatorSettings(overrides_file=str(home / "none.csv")),
                   "backtest": BacktestSettings(reports_dir=str(home / "reports"))})
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("refresh_job").execute_in_process(instance=instance, tags=range_tags(*YEARS))
    assert result.success
    assert len(instance.get_runs()) == 1
    assert len(result.asset_materializations_for_node("market_prices")) == 5  # one per year
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert done == {"market_prices", "latent_state", "regime_series", "risk_scalars", "applied_scalars",
                    *(a.key.to_user_string() for a in (*BACKTEST_ASSETS, *REPORT_ASSETS))}
    for name in ("latent_state", "regime_series", "risk_scalars", "applied_scalars"):
        q = f"SELECT * FROM {name} ORDER BY date"
        assert local.query(q).equals(wh.query(q)), name
    got = read_tables(local)
    for name in BACKTEST_TABLES:
        assert got[name].equals(reference[name]), name
    assert (home / "reports" / "risk_parity" / "two_pass_comparison.json").exists()


def test_the_report_uses_the_cash_rate_as_risk_free_rate(history, precomputed):
    """Cash earning 3 % a year: Sharpe and Sortino in the report are empyrical's with that daily rate
    as risk-free / required return (a rate of 0 here inflated the allocator's Sharpe gain)."""
    import empyrical

    home, wh, resources = history
    settings = BacktestSettings(cash_rate=0.03, reports_dir=str(home / "reports_cash"))
    assert dg.materialize([*BACKTEST_ASSETS, *REPORT_ASSETS], instance=dg.DagsterInstance.ephemeral(),
                          resources={**resources, "backtest": settings},
                          selection=[a.key for a in (*BACKTEST_ASSETS, *REPORT_ASSETS)]).success
    report = json.loads((home / "reports_cash" / "risk_parity" / "two_pass_comparison.json").read_text())
    rf = 1.03 ** (1 / 252) - 1
    for book, table in (("baseline", "baseline_backtest"), ("scaled", "scaled_backtest")):
        r = wh.query(f"SELECT portfolio_return FROM {table} ORDER BY date")["portfolio_return"].to_numpy()
        np.testing.assert_allclose(report["metrics"][book]["sharpe"], empyrical.sharpe_ratio(r, risk_free=rf), rtol=1e-9)
        np.testing.assert_allclose(report["metrics"][book]["sortino"], empyrical.sortino_ratio(r, required_return=rf),
                                   rtol=1e-9)
        assert report["metrics"][book]["sharpe"] < empyrical.sharpe_ratio(r)


def test_overlay_and_controls_have_no_look_ahead(history, precomputed, tmp_path):
    """The same pipeline on the history cut at 2007-12-31 gives, for every day through the cut, the
    same governed book (weekly overlay), the same baseline and the same vol_cap and jump_model
    controls. (``exposure_matched`` is the exception by its definition: a constant at the governor's
    mean exposure over the whole window, an evaluation control, not a tradeable rule.)"""
    _, wh, _ = history
    run_backtests(history, "precomputed")  # other tests leave other settings' tables in the shared warehouse
    home = tmp_path / "cut"
    cut_wh = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    resources = {"warehouse": cut_wh, "market_source": MarketDataSource(path=""),
                 "landing": LandingZone(path=str(home / "landing")),
                 "allocator": AllocatorSettings(overrides_file=str(home / "none.csv")),
                 "backtest": BacktestSettings(reports_dir=str(home / "reports"))}
    assets = [market_prices, *ALLOCATOR_ASSETS, *BACKTEST_ASSETS, *REPORT_ASSETS]
    assert dg.materialize(assets, instance=dg.DagsterInstance.ephemeral(), resources=resources,
                          tags=range_tags("2005", "2007")).success
    cut = "2007-12-31"
    for table in ("baseline_backtest", "scaled_backtest"):
        full = wh.query(f"SELECT * FROM {table} WHERE date <= DATE '{cut}' ORDER BY date")
        part = cut_wh.query(f"SELECT * FROM {table} ORDER BY date")
        assert part.equals(full), table
    ws_full = wh.query(f"SELECT * FROM weights_scaled WHERE date <= DATE '{cut}' ORDER BY date, symbol")
    assert cut_wh.query("SELECT * FROM weights_scaled ORDER BY date, symbol").equals(ws_full)
    for control in ("vol_cap", "jump_model"):
        q = f"SELECT * FROM control_backtests WHERE control = '{control}' AND date <= DATE '{cut}' ORDER BY date"
        assert cut_wh.query(q).equals(wh.query(q)), control
    assert (wh.query("SELECT DISTINCT kind FROM weights_scaled")["kind"].sort().to_list() == ["overlay", "strategy"])
