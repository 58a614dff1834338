"""The allocator layers through Dagster: no look-ahead, incremental == batch, determinism, lag.

Every run goes through ``dagster.materialize`` on an ephemeral instance with the real assets and
resources; the reference for "incremental" is the same assets run over a range in one run, and the
reference for "no look-ahead" is the same range computed from data that stops at (or changes after)
the date T.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import polars as pl
import pytest

from alloc_assets.core.calendar import rebalance_mask, sessions_between
from alloc_assets.core.panel import load_bundled_panel
from alloc_assets.defs.allocator import ALLOCATOR_ASSETS
from alloc_assets.defs.market import market_prices
from alloc_assets.partitions import range_tags
from resources.allocator import AllocatorSettings
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

FIRST = "2006-01-03"
LAST = "2008-09-30"
TABLES = ("latent_state", "regime_series", "risk_scalars", "applied_scalars")
METHODS = ("stress_score", "hmm")
_INSTANCE = dg.DagsterInstance.ephemeral()


def write_source(directory: Path, cut: str | None = None, shock_after: str | None = None) -> Path:
    """The bundled set from FIRST, optionally cut after ``cut`` or crashed by 50 % after ``shock_after``."""
    panel = load_bundled_panel()
    dates = pd.DatetimeIndex(panel.dates)
    keep = dates >= pd.Timestamp(FIRST)
    if cut:
        keep &= dates <= pd.Timestamp(cut)
    close = panel.close.copy()
    bench = panel.benchmark.copy()
    if shock_after:
        after = dates > pd.Timestamp(shock_after)
        close[after] *= np.linspace(0.5, 0.3, after.sum())[:, None]
        bench[after] *= np.linspace(0.5, 0.3, after.sum())
    directory.mkdir(parents=True, exist_ok=True)
    wide = pd.DataFrame(close[keep], columns=panel.symbols)
    wide.insert(0, "date", dates[keep].strftime("%Y-%m-%d"))
    wide.to_csv(directory / "prices.csv", index=False, float_format="%.17g")
    pd.DataFrame({"date": dates[keep].strftime("%Y-%m-%d"), "SP500": bench[keep]}).to_csv(
        directory / "sp500_index.csv", index=False, float_format="%.17g")
    return directory


def run(home: Path, source: Path, method: str, start: str, end: str | None = None):
    """Materialize market + allocator layers for [start, end] (one run) into ``home``'s warehouse."""
    warehouse = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    resources = {"warehouse": warehouse, "market_source": MarketDataSource(path=str(source)),
                 "allocator": AllocatorSettings(regime_method=method, overrides_file=str(home / "none.csv"))}
    kwargs = {"tags": range_tags(start, end)} if end else {"partition_key": start}
    result = dg.materialize([market_prices, *ALLOCATOR_ASSETS], instance=dg.DagsterInstance.ephemeral(),
                            resources=resources, **kwargs)
    assert result.success
    return warehouse


def table(warehouse: DuckDBWarehouse, name: str, upto: str | None = None) -> pl.DataFrame:
    where = f"WHERE date <= DATE '{upto}'" if upto else ""
    return warehouse.query(f"SELECT * FROM {name} {where} ORDER BY date")


def assert_tables_close(a: pl.DataFrame, b: pl.DataFrame, tol: float, what: str) -> None:
    assert a.columns == b.columns, what
    assert a.height == b.height and a.height > 0, what
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype.is_float():
            xa, ya = x.to_numpy(), y.to_numpy()
            both_nan = np.isnan(xa) & np.isnan(ya)
            diff = np.where(both_nan, 0.0, np.abs(xa - ya))
            assert np.nanmax(diff) <= tol, f"{what}: column {col} differs by {np.nanmax(diff)}"
        else:
            assert x.to_list() == y.to_list(), f"{what}: column {col} differs"


@pytest.fixture(scope="module")
def full_source(tmp_path_factory):
    return write_source(tmp_path_factory.mktemp("src_full"))


@pytest.fixture(scope="module", params=METHODS)
def batch(request, tmp_path_factory, full_source):
    """One range run FIRST..LAST per method (the reference)."""
    home = tmp_path_factory.mktemp(f"batch_{request.param}")
    return request.param, run(home, full_source, request.param, FIRST, LAST)


def test_layers_filled_from_the_first_day(batch):
    method, wh = batch
    n = len(sessions_between(FIRST, LAST))
    for name in TABLES[:3]:
        assert table(wh, name).height == n, name
    state = table(wh, "latent_state")
    assert not state["warm"][0] and state["warm"][-1]
    regimes = table(wh, "regime_series")
    probs = regimes.select("p_normal", "p_elevated", "p_stress", "p_crisis").to_numpy()
    assert np.all((probs >= 0) & (probs <= 1)) and np.max(np.abs(probs.sum(axis=1) - 1)) <= 1e-9
    # early warning: stress score above 0.6 or P(STRESS) + P(CRISIS) above 0.35
    expected = (regimes["score"].to_numpy() > 0.6) | (probs[:, 2] + probs[:, 3] > 0.35)
    assert np.array_equal(regimes["early_warning"].to_numpy(), expected) and expected.any()


def test_deterministic(batch, tmp_path, full_source):
    method, wh = batch
    again = run(tmp_path, full_source, method, FIRST, LAST)
    for name in TABLES:
        assert table(wh, name).equals(table(again, name)), f"{name} not bit-identical ({method})"


def run_day_direct(home: Path, method: str, day: str) -> None:
    """One partition through the allocator layers by invoking the asset functions with a partition
    context (the same code a run executes, without a run's event-log overhead)."""
    warehouse = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    settings = AllocatorSettings(regime_method=method, overrides_file=str(home / "none.csv"))
    for asset in ALLOCATOR_ASSETS:
        context = dg.build_asset_context(partition_key=day, instance=_INSTANCE)
        events = list(asset(context=context, warehouse=warehouse, allocator=settings))
        assert any(isinstance(e, dg.MaterializeResult) for e in events), asset.key


def test_incremental_equals_batch(batch, tmp_path, full_source):
    """A range run up to 2007-12-31, then every trading day to LAST one partition at a time
    (across the 2008-07-01 walk-forward refit), equals the single range run."""
    method, wh = batch
    inc = run(tmp_path, full_source, method, FIRST, "2007-12-31")
    # prices for the rest of the window first (market is not what this test is about)
    resources = {"warehouse": DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb")),
                 "market_source": MarketDataSource(path=str(full_source))}
    assert dg.materialize([market_prices], instance=_INSTANCE, resources=resources,
                          tags=range_tags("2008-01-02", LAST)).success
    days = sessions_between("2008-01-02", LAST)
    for day in days:
        run_day_direct(tmp_path, method, day.strftime("%Y-%m-%d"))
    assert len(days) >= 180
    for name in TABLES:
        assert_tables_close(table(wh, name), table(inc, name), 1e-12, f"{name} ({method})")


def test_one_day_through_a_run(batch, tmp_path, full_source):
    """The daily path as Dagster runs it (one partition, one run) continues the history exactly."""
    method, wh = batch
    inc = run(tmp_path, full_source, method, FIRST, "2008-09-29")
    run(tmp_path, full_source, method, LAST)
    for name in TABLES:
        assert_tables_close(table(wh, name), table(inc, name), 1e-12, f"{name} ({method})")


@pytest.mark.parametrize("cut", ["2008-07-01", "2008-07-02"])  # HMM refit and score threshold refresh on 07-01
def test_no_look_ahead(batch, tmp_path, cut):
    """Data after T replaced by a crash, or absent: nothing dated at or before T changes."""
    method, wh = batch
    truncated = run(tmp_path / "cut", write_source(tmp_path / "src_cut", cut=cut), method, FIRST, cut)
    shocked = run(tmp_path / "shock", write_source(tmp_path / "src_shock", shock_after=cut), method, FIRST, LAST)
    for name in TABLES:
        ref = table(wh, name, upto=cut)
        assert_tables_close(ref, table(truncated, name, upto=cut), 0.0, f"{name} truncated at {cut} ({method})")
        assert_tables_close(ref, table(shocked, name, upto=cut), 0.0, f"{name} shocked after {cut} ({method})")
    # the shock is real: something after T did change
    after = table(wh, "latent_state").filter(pl.col("date") > dt.date.fromisoformat(cut))
    after_shock = table(shocked, "latent_state").filter(pl.col("date") > dt.date.fromisoformat(cut))
    assert not after.equals(after_shock)


def test_lag_at_every_rebalance(batch):
    """At each rebalance r(k), the applied scalar is the risk scalar computed at r(k-1)."""
    method, wh = batch
    rs = table(wh, "risk_scalars")
    dates = rs["date"].to_list()
    # rebalance dates computed here: the last trading day of each calendar month among the dates
    months = [(d.year, d.month) for d in dates]
    reb = [d for i, d in enumerate(dates) if i == len(dates) - 1 or months[i + 1] != months[i]]
    applied = table(wh, "applied_scalars")
    assert applied["date"].to_list() == reb
    scalar = dict(zip(dates, rs["risk_scalar"].to_list()))
    assert applied["source"][0] == "missing_default" and applied["risk_scalar_applied"][0] == 1.0
    for k in range(1, applied.height):
        row = applied.row(k, named=True)
        assert row["source"] == "computed"
        assert row["source_date"] == reb[k - 1]
        assert row["risk_scalar_applied"] == scalar[reb[k - 1]]
    assert list(rebalance_mask(np.array(dates, dtype="datetime64[D]"), "monthly")).count(True) == len(reb)


def test_override_is_recorded(tmp_path, full_source):
    (tmp_path / "overrides.csv").write_text("start,end,scalar,reason\n2006-01-01,2006-03-31,0.5,committee hold\n")
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    resources = {"warehouse": warehouse, "market_source": MarketDataSource(path=str(full_source)),
                 "allocator": AllocatorSettings(overrides_file=str(tmp_path / "overrides.csv"))}
    assert dg.materialize([market_prices, *ALLOCATOR_ASSETS], instance=dg.DagsterInstance.ephemeral(),
                          resources=resources, tags=range_tags(FIRST, "2006-06-30")).success
    applied = table(warehouse, "applied_scalars")
    over = applied.filter(pl.col("source") == "override")
    assert over["date"].to_list() == [dt.date(2006, 1, 31), dt.date(2006, 2, 28), dt.date(2006, 3, 31)]
    assert applied.filter(pl.col("date") == dt.date(2006, 4, 28))["source"][0] == "computed"
    assert set(over["risk_scalar_applied"].to_list()) == {0.5} and set(over["reason"].to_list()) == {"committee hold"}
