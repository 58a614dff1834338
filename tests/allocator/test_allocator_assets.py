"""The allocator layers through Dagster: no look-ahead, incremental == one run, determinism, lag,
no-op runs and settings changes.

Every run goes through ``dagster.materialize`` on an ephemeral instance with the real assets and
resources (``market_prices`` by year, the four unpartitioned incremental allocator layers). The
reference for "incremental" is the same assets run once over the whole range from the same data; the
reference for "no look-ahead" is the same range computed from data that stops at (or crashes after)
the date T; the reference for a corrected day or a settings change is a fresh run from an empty
warehouse on the corrected data or with the new settings.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import polars as pl
import pytest

from alloc_assets.core.market.calendar import rebalance_mask, sessions_between
from alloc_assets.core.market.landing import accept
from alloc_assets.core.market.panel import load_bundled_panel
from alloc_assets.defs.allocator.assets import ALLOCATOR_ASSETS
from alloc_assets.defs.market.assets import market_prices
from alloc_assets.defs.market.partitions import range_tags
from resources.allocator import AllocatorSettings
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

FIRST = "2006-01-03"
LAST = "2008-09-30"  # the source ends mid-year: partition 2008 holds what the source has
YEARS = ("2006", "2008")
TABLES = ("latent_state", "regime_series", "risk_scalars", "applied_scalars")
INCREMENTAL = ("latent_state", "regime_series", "risk_scalars")  # planned from the change log
METHODS = ("stress_score", "hmm")
#: One in-memory instance for the module's runs (the assets keep their state in the warehouse, not
#: in the instance); a new ephemeral instance per run would add a schema setup to every run.
INSTANCE = dg.DagsterInstance.ephemeral()


def _day(s: str) -> dt.date:
    return dt.date.fromisoformat(s)


def write_source(directory: Path, cut: str | None = LAST, shock_after: str | None = None,
                 patch: tuple[str, str, float] | None = None) -> Path:
    """The bundled set from FIRST through ``cut``, optionally crashed by 50-70 % after
    ``shock_after``, or with one close (day, symbol) multiplied by a factor (``patch``)."""
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
    if patch:
        day, symbol, factor = patch
        close[dates == pd.Timestamp(day), panel.symbols.index(symbol)] *= factor
    directory.mkdir(parents=True, exist_ok=True)
    wide = pd.DataFrame(close[keep], columns=panel.symbols)
    wide.insert(0, "date", dates[keep].strftime("%Y-%m-%d"))
    wide.to_csv(directory / "prices.csv", index=False, float_format="%.17g")
    pd.DataFrame({"date": dates[keep].strftime("%Y-%m-%d"), "SP500": bench[keep]}).to_csv(
        directory / "sp500_index.csv", index=False, float_format="%.17g")
    return directory


def land(home: Path, day: str, patch: tuple[str, float] | None = None) -> Path:
    """A one-day landing file (wide: the stocks and the SP500 column) made an accepted copy under
    ``home/landing/accepted/<day>/``, as the sensor does; ``patch`` (symbol, factor) changes a close."""
    panel = load_bundled_panel()
    i = int(np.flatnonzero(pd.DatetimeIndex(panel.dates) == pd.Timestamp(day))[0])
    row = panel.close[i].copy()
    if patch:
        row[panel.symbols.index(patch[0])] *= patch[1]
    frame = pd.DataFrame([row], columns=panel.symbols)
    frame.insert(0, "date", [day])
    frame["SP500"] = [panel.benchmark[i]]
    drop = home / "drop"
    drop.mkdir(parents=True, exist_ok=True)
    path = drop / f"prices_{day}.csv"
    frame.to_csv(path, index=False, float_format="%.17g")
    return accept(path, home / "landing" / "accepted", _day(day))


def resources_for(home: Path, source: Path, method: str, **settings) -> dict:
    return {"warehouse": DuckDBWarehouse(path=str(home / "warehouse.duckdb")),
            "market_source": MarketDataSource(path=str(source)),
            "landing": LandingZone(path=str(home / "landing")),
            "allocator": AllocatorSettings(regime_method=method, overrides_file=str(home / "none.csv"), **settings)}


def run(home: Path, source: Path, method: str, start: str = YEARS[0], end: str | None = YEARS[1], **settings):
    """Materialize market (years ``start``..``end`` in one run, or the one year ``start``) and the
    allocator layers into ``home``'s warehouse. Returns (warehouse, result)."""
    resources = resources_for(home, source, method, **settings)
    kwargs = {"tags": range_tags(start, end)} if end else {"partition_key": start}
    result = dg.materialize([market_prices, *ALLOCATOR_ASSETS], instance=INSTANCE,
                            resources=resources, **kwargs)
    assert result.success
    return resources["warehouse"], result


def meta(result, asset: str) -> dict:
    mats = result.asset_materializations_for_node(asset)
    assert mats, asset
    return {k: v.value for k, v in mats[-1].metadata.items()}


def table(warehouse: DuckDBWarehouse, name: str, upto: str | dt.date | None = None) -> pl.DataFrame:
    where = f"WHERE date <= DATE '{upto}'" if upto else ""
    return warehouse.query(f"SELECT * FROM {name} {where} ORDER BY date")


def snapshot(warehouse: DuckDBWarehouse) -> dict[str, pl.DataFrame]:
    return {name: table(warehouse, name) for name in ("market_prices", "market_benchmark", *TABLES)}


def last_market_change(warehouse: DuckDBWarehouse) -> dict:
    return warehouse.query("SELECT * FROM layer_changes WHERE asset = 'market_prices' "
                           "ORDER BY version DESC LIMIT 1").row(0, named=True)


def assert_tables_close(a: pl.DataFrame, b: pl.DataFrame, tol: float, what: str) -> None:
    assert a.columns == b.columns, what
    assert a.height == b.height and a.height > 0, f"{what}: {a.height} vs {b.height} rows"
    for col in a.columns:
        x, y = a[col], b[col]
        if x.dtype.is_float():
            xa, ya = x.to_numpy(), y.to_numpy()
            assert np.array_equal(np.isnan(xa), np.isnan(ya)), f"{what}: column {col} NaN pattern differs"
            diff = np.where(np.isnan(xa), 0.0, np.abs(xa - ya))
            assert diff.max() <= tol, f"{what}: column {col} differs by {diff.max()}"
        else:
            assert x.to_list() == y.to_list(), f"{what}: column {col} differs"


def copy_warehouse(src: DuckDBWarehouse, home: Path) -> None:
    """A copy of a finished warehouse (no connection is open between runs)."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(src.file, home / "warehouse.duckdb")


@pytest.fixture(scope="module")
def full_source(tmp_path_factory):
    return write_source(tmp_path_factory.mktemp("src_full"))


@pytest.fixture(scope="module", params=METHODS)
def batch(request, tmp_path_factory, full_source):
    """One run over the years 2006..2008 from the source FIRST..LAST, per method (the reference)."""
    home = tmp_path_factory.mktemp(f"batch_{request.param}")
    wh, _ = run(home, full_source, request.param)
    return request.param, wh


def test_layers_filled_from_the_first_day(batch):
    method, wh = batch
    n = len(sessions_between(FIRST, LAST))
    assert n > 600
    for name in INCREMENTAL:
        t = table(wh, name)
        assert t.height == n, name
        assert str(t["date"][0]) == FIRST and str(t["date"][-1]) == LAST, name
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
    again, _ = run(tmp_path, full_source, method)
    for name in TABLES:
        assert table(wh, name).equals(table(again, name)), f"{name} not bit-identical ({method})"


def test_nothing_new_upstream_is_a_no_op(batch, tmp_path, full_source):
    """Re-materializing a year whose data did not change, or the allocator layers alone, stores
    nothing new: every table stays bit-identical and each layer's metadata says why."""
    method, wh = batch
    copy_warehouse(wh, tmp_path)
    local = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    before = snapshot(local)
    _, result = run(tmp_path, full_source, method, "2008", None)
    assert meta(result, "market_prices")["changed_from"] == "nothing changed"
    assert last_market_change(local)["changed_from"] is None
    for name in INCREMENTAL:
        m = meta(result, name)
        assert m["dagster/row_count"] == 0 and m["computed_rows_from"] == "nothing to compute", (name, m)
        assert m["why"].startswith(f"up to date through {LAST}"), (name, m["why"])
        assert m["full_recompute"] is False
    # the derive path (no market partition): still nothing to do, after the watermarks moved
    derive = dg.materialize([market_prices, *ALLOCATOR_ASSETS], selection=ALLOCATOR_ASSETS,
                            instance=INSTANCE, resources=resources_for(tmp_path, full_source, method))
    assert derive.success
    for name in INCREMENTAL:
        assert meta(derive, name)["computed_rows_from"] == "nothing to compute", name
    after = snapshot(local)
    for name, frame in before.items():
        assert frame.height > 0 and frame.equals(after[name]), f"{name} changed in a no-op run ({method})"


def test_settings_change_recomputes_from_the_first_day(batch, tmp_path, full_source):
    """A hysteresis setting changes the regime and risk layers' settings hash: they recompute from
    the first day (the state layer, whose settings did not change, does not) and equal a fresh run
    with the new settings; going back to the old settings gives the reference tables again."""
    method, wh = batch
    copy_warehouse(wh, tmp_path / "inc")
    inc, result = run(tmp_path / "inc", full_source, method, "2008", None, min_dwell_days=15)
    assert meta(result, "latent_state")["computed_rows_from"] == "nothing to compute"
    for name in ("regime_series", "risk_scalars"):
        m = meta(result, name)
        assert m["full_recompute"] is True and m["computed_rows_from"] == FIRST, (name, m)
        assert m["computed_through"] == LAST and "settings changed" in m["why"], (name, m)
    fresh, _ = run(tmp_path / "fresh", full_source, method, min_dwell_days=15)
    for name in TABLES:
        assert_tables_close(table(inc, name), table(fresh, name), 1e-12, f"{name} after a settings change ({method})")
    # the setting did act: the labels differ from the reference's
    assert table(inc, "regime_series")["regime"].to_list() != table(wh, "regime_series")["regime"].to_list()
    _, back = run(tmp_path / "inc", full_source, method, "2008", None)
    assert meta(back, "regime_series")["full_recompute"] is True
    for name in TABLES:
        assert_tables_close(table(inc, name), table(wh, name), 1e-12, f"{name} back to the old settings ({method})")


START_CUT = "2008-06-20"
#: the days added one run at a time (12 runs per method keep the module within its time budget)
ONE_BY_ONE = [d.strftime("%Y-%m-%d") for d in sessions_between("2008-06-23", "2008-07-09")]
LANDED_LATE = ("2008-07-11", "2008-07-10")  # the later day lands first


def test_day_by_day_equals_one_run(batch, tmp_path):
    """The source grows one trading day at a time (across the 2008-06-30 month end and the
    2008-07-01 walk-forward refit), then two days arrive as landing copies out of order, then the
    rest of the source in one go: each step recomputes only the new day(s), a day after a gap waits
    for the gap, and the end result equals the single run over the whole range."""
    method, wh = batch
    home = tmp_path / "inc"
    src = tmp_path / "src"
    inc, _ = run(home, write_source(src, cut=START_CUT), method)
    assert str(table(inc, "latent_state")["date"][-1]) == START_CUT
    assert len(ONE_BY_ONE) == 12 and "2008-06-30" in ONE_BY_ONE and "2008-07-01" in ONE_BY_ONE
    for day in ONE_BY_ONE:
        _, result = run(home, write_source(src, cut=day), method, "2008", None)
        assert meta(result, "market_prices")["changed_from"] == day
        for name in INCREMENTAL:
            m = meta(result, name)
            assert (m["computed_rows_from"], m["computed_through"], m["full_recompute"]) == (day, day, False), (name, m)
            assert m["dagster/row_count"] == 1, (name, m)
        assert str(table(inc, "latent_state")["date"][-1]) == day
    # a later day lands before the one before it: the layers stop at the gap ...
    land(home, LANDED_LATE[0])
    _, result = run(home, src, method, "2008", None)
    assert meta(result, "market_prices")["changed_from"] == LANDED_LATE[0]
    for name in INCREMENTAL:
        m = meta(result, name)
        assert m["computed_rows_from"] == "nothing to compute", (name, m)
        assert m["why"].startswith(f"up to date through {ONE_BY_ONE[-1]}"), (name, m)
        assert str(table(inc, name)["date"][-1]) == ONE_BY_ONE[-1]
    # ... and catch up through both days when the missing one lands
    land(home, LANDED_LATE[1])
    _, result = run(home, src, method, "2008", None)
    for name in INCREMENTAL:
        m = meta(result, name)
        assert (m["computed_rows_from"], m["computed_through"]) == (LANDED_LATE[1], LANDED_LATE[0]), (name, m)
    # the rest of the source at once (the landed days are identical to the source's rows)
    _, result = run(home, write_source(src, cut=LAST), method, "2008", None)
    assert meta(result, "latent_state")["computed_rows_from"] == "2008-07-14"
    for name in TABLES:
        assert_tables_close(table(inc, name), table(wh, name), 1e-12, f"{name} day by day ({method})")


CORRECTED = ("2007-03-14", "AAPL", 1.05)


def test_corrected_day_recomputes_from_that_day(batch, tmp_path):
    """A landing copy corrects one close on an earlier day (a year that was already stored): the
    market change log says that day, the allocator layers recompute from it (not from the first
    day), rows before it stay bit-identical, and the result equals a fresh run on a source that
    holds the corrected close."""
    method, wh = batch
    day, symbol, factor = CORRECTED
    home = tmp_path / "inc"
    copy_warehouse(wh, home)
    local = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    before = snapshot(local)
    land(home, day, patch=(symbol, factor))
    _, result = run(home, write_source(tmp_path / "src", cut=LAST), method, "2007", None)
    assert meta(result, "market_prices")["changed_from"] == day
    assert str(last_market_change(local)["changed_from"]) == day
    for name in INCREMENTAL:
        m = meta(result, name)
        assert m["computed_rows_from"] == day and m["computed_through"] == LAST and m["full_recompute"] is False, (name, m)
        assert FIRST < m["recomputed_from_carry_of"] <= day, (name, m)  # resumed from a stored carry
    prev = (pd.Timestamp(day) - pd.Timedelta(days=1)).date()
    for name in INCREMENTAL:
        assert before[name].filter(pl.col("date") <= prev).equals(table(local, name, upto=prev)), name
        assert not before[name].equals(table(local, name)), f"{name}: the correction changed nothing"
    fresh, _ = run(tmp_path / "fresh", write_source(tmp_path / "src_fixed", patch=CORRECTED), method)
    for name in ("market_prices", *TABLES):
        assert_tables_close(table(local, name).sort("date", *(["symbol"] if name == "market_prices" else [])),
                            table(fresh, name).sort("date", *(["symbol"] if name == "market_prices" else [])),
                            1e-12, f"{name} after the correction ({method})")


@pytest.mark.parametrize("cut", ["2008-07-01", "2008-07-02"])  # HMM refit and score threshold refresh on 07-01
def test_no_look_ahead(batch, tmp_path, cut):
    """Data after T replaced by a crash, or absent: nothing dated at or before T changes."""
    method, wh = batch
    truncated, _ = run(tmp_path / "cut", write_source(tmp_path / "src_cut", cut=cut), method)
    shocked, _ = run(tmp_path / "shock", write_source(tmp_path / "src_shock", shock_after=cut), method)
    for name in TABLES:
        ref = table(wh, name, upto=cut)
        assert_tables_close(ref, table(truncated, name, upto=cut), 0.0, f"{name} truncated at {cut} ({method})")
        assert_tables_close(ref, table(shocked, name, upto=cut), 0.0, f"{name} shocked after {cut} ({method})")
    assert str(table(truncated, "latent_state")["date"][-1]) == cut
    # the shock is real: something after T did change
    after = table(wh, "latent_state").filter(pl.col("date") > _day(cut))
    after_shock = table(shocked, "latent_state").filter(pl.col("date") > _day(cut))
    assert after.height > 0 and not after.equals(after_shock)


def test_lag_at_every_rebalance(batch):
    """At each rebalance r(k), the applied scalar is the risk scalar computed at r(k-1)."""
    method, wh = batch
    rs = table(wh, "risk_scalars")
    dates = rs["date"].to_list()
    # overlay dates computed here: the last trading day of each ISO week among the dates (the
    # default overlay cadence is weekly)
    weeks = [d.isocalendar()[:2] for d in dates]
    reb = [d for i, d in enumerate(dates[:-1]) if weeks[i + 1] != weeks[i]]
    # the last stored day closes its week only if the exchange's next session is in another week
    nxt = pd.Timestamp(dates[-1]) + pd.Timedelta(days=1)
    if not len(sessions_between(nxt, nxt + pd.Timedelta(days=7 - nxt.isoweekday()))):
        reb.append(dates[-1])
    applied = table(wh, "applied_scalars")
    assert applied["date"].to_list() == reb
    scalar = dict(zip(dates, rs["risk_scalar"].to_list()))
    assert applied["source"][0] == "missing_default" and applied["risk_scalar_applied"][0] == 1.0
    for k in range(1, applied.height):
        row = applied.row(k, named=True)
        assert row["source"] == "computed"
        assert row["source_date"] == reb[k - 1]
        assert row["risk_scalar_applied"] == scalar[reb[k - 1]]
    assert list(rebalance_mask(np.array(dates, dtype="datetime64[D]"), "weekly")).count(True) == len(reb)


def test_override_is_recorded(tmp_path, full_source):
    (tmp_path / "overrides.csv").write_text("start,end,scalar,reason\n2006-01-01,2006-03-31,0.5,committee hold\n")
    warehouse = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    resources = {"warehouse": warehouse, "market_source": MarketDataSource(path=str(full_source)),
                 "landing": LandingZone(path=str(tmp_path / "landing")),
                 "allocator": AllocatorSettings(overrides_file=str(tmp_path / "overrides.csv"))}
    assert dg.materialize([market_prices, *ALLOCATOR_ASSETS], instance=INSTANCE,
                          resources=resources, partition_key="2006").success
    applied = table(warehouse, "applied_scalars")
    over = applied.filter(pl.col("source") == "override")
    days = table(warehouse, "risk_scalars")["date"].to_list()
    weeks = [d.isocalendar()[:2] for d in days]  # the weekly overlay dates of Q1 2006, computed here
    q1 = [d for i, d in enumerate(days) if dt.date(2006, 1, 1) <= d <= dt.date(2006, 3, 31)
          and (i == len(days) - 1 or weeks[i + 1] != weeks[i])]
    assert over["date"].to_list() == q1 and len(q1) == 13
    assert applied.filter(pl.col("date") == dt.date(2006, 4, 28))["source"][0] == "computed"
    assert set(over["risk_scalar_applied"].to_list()) == {0.5} and set(over["reason"].to_list()) == {"committee hold"}
