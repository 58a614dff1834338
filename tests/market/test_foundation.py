"""Foundation: yearly partitions and a pinned calendar that do not depend on the day the code loads,
the full-history refresh in one run equal to the bundled file, definitions load and the CLI."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import os
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from alloc_assets.core.market.panel import BUNDLED_DIR
from alloc_assets.defs.market.partitions import market_partitions, partition_key_for, range_tags

REPO = Path(__file__).resolve().parents[2]
NEW_YORK = ZoneInfo("America/New_York")


def _bundled_rows() -> tuple[list[str], list[str], np.ndarray]:
    """The bundled file parsed with the csv module and Python's float (independent of our reader)."""
    with gzip.open(BUNDLED_DIR / "prices.csv.gz", "rt") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    dates = [r[0] for r in body]
    values = np.array([[float(x) for x in r[1:]] for r in body])
    return header[1:], dates, values


def test_partitions_are_years_whatever_the_day_the_code_loads():
    """Keys are the calendar years from 1990; a later 'now' only appends years, and the years of
    the bundled set are exactly 1990..2022."""
    in_2022 = market_partitions.get_partition_keys(current_time=dt.datetime(2022, 6, 1, tzinfo=NEW_YORK))
    assert in_2022 == [str(y) for y in range(1990, 2023)]
    in_2031 = market_partitions.get_partition_keys(current_time=dt.datetime(2031, 7, 1, tzinfo=NEW_YORK))
    assert in_2031[:len(in_2022)] == in_2022 and in_2031[len(in_2022):] == [str(y) for y in range(2023, 2032)]
    # the current year's partition exists from January 1st, New York time
    new_year = market_partitions.get_partition_keys(current_time=dt.datetime(2023, 1, 1, 0, 0, 1, tzinfo=NEW_YORK))
    assert new_year[-1] == "2023"
    now = market_partitions.get_partition_keys()
    assert now[:len(in_2022)] == in_2022 and now[-1] == str(dt.datetime.now(NEW_YORK).year)
    window = market_partitions.time_window_for_partition_key("2008")
    assert (window.start.date(), window.end.date()) == (dt.date(2008, 1, 1), dt.date(2009, 1, 1))
    _, dates, _ = _bundled_rows()
    assert sorted({partition_key_for(d) for d in dates}) == in_2022
    assert partition_key_for(dt.date(2008, 12, 31)) == "2008" and partition_key_for("2009-01-02") == "2009"
    assert range_tags("1990", "2022") == {"dagster/asset_partition_range_start": "1990",
                                          "dagster/asset_partition_range_end": "2022"}


def test_calendar_is_the_nyse_sessions_of_the_bundled_set():
    from alloc_assets.core.market.calendar import is_trading_day, sessions_between

    _, dates, _ = _bundled_rows()
    assert len(dates) == 8313
    assert [d.strftime("%Y-%m-%d") for d in sessions_between(dates[0], dates[-1])] == dates
    for holiday in ("2001-09-11", "2012-10-29", "2018-12-05", "2022-12-26", "2020-01-01"):
        assert not is_trading_day(holiday), holiday
    for weekend in ("2022-12-24", "2022-12-25"):
        assert not is_trading_day(weekend)


def test_calendar_sessions_do_not_depend_on_the_day_the_code_loads(monkeypatch):
    """``exchange_calendars`` ends a calendar one year after 'today' unless told otherwise: with its
    notion of today moved (to 2023 and to 2034), the sessions are the same, through the pinned end."""
    import exchange_calendars.exchange_calendar as xcal

    from alloc_assets.core.market import calendar

    def fresh() -> list[pd.Timestamp]:  # rebuilt by exchange_calendars (not the on-disk session cache)
        calendar._calendar.cache_clear()
        calendar._loaded = None
        return list(pd.DatetimeIndex(calendar._sessions_from_package().astype("datetime64[ns]")))

    end = pd.Timestamp(calendar.CALENDAR_END)
    assert end == pd.Timestamp("2035-12-31")
    today = fresh()
    assert today[0] == pd.Timestamp("1990-01-02") and today[-1] <= end and today[-1] >= end - pd.Timedelta(days=7)
    try:
        for fake_today in ("2023-03-01", "2034-03-01"):
            monkeypatch.setattr(xcal, "GLOBAL_DEFAULT_START", pd.Timestamp(fake_today) - pd.DateOffset(years=20))
            monkeypatch.setattr(xcal, "GLOBAL_DEFAULT_END", pd.Timestamp(fake_today) + pd.DateOffset(years=1))
            assert fresh() == today, fake_today
            assert calendar.next_session(today[-1].date()) is None
    finally:
        monkeypatch.undo()
        assert fresh() == today


def test_full_history_in_one_refresh_run_equals_the_bundled_file(alloc_home):
    """ONE refresh_job run over the years 1990..2022 (33 partitions of market_prices, then every
    derived layer): stored closes equal the file's decimals to the last digit, and the allocator
    layers cover every one of the 8,313 days."""
    from alloc_assets.core.market.calendar import sessions_between
    from alloc_assets.definitions import defs
    from resources.warehouse import DuckDBWarehouse

    symbols, dates, values = _bundled_rows()
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("refresh_job").execute_in_process(instance=instance, tags=range_tags("1990", "2022"))
    assert result.success
    assert len(instance.get_runs()) == 1
    assert len(result.asset_materializations_for_node("market_prices")) == 33
    wh = DuckDBWarehouse()
    assert Path(wh.file) == alloc_home / "warehouse.duckdb"
    stored = wh.query("PIVOT (SELECT date, symbol, close FROM market_prices) ON symbol USING first(close) ORDER BY date")
    assert stored.height == 8313 and len(symbols) == 20
    assert [str(d) for d in stored["date"].to_list()] == dates
    got = stored.select(symbols).to_numpy()
    assert np.array_equal(got, values)  # bit-for-bit: the stored double is the file's decimal
    assert wh.query("SELECT count(*) AS n FROM market_benchmark")["n"][0] == 8313
    for table in ("latent_state", "regime_series", "risk_scalars"):
        got_dates = [str(d) for d in wh.query(f"SELECT date FROM {table} ORDER BY date")["date"].to_list()]
        assert got_dates == dates, table
    # one overlay date per ISO week (the default cadence), on its last trading day; the file's last
    # week counts only if the file reaches that week's last NYSE session
    week_of = {d: pd.Timestamp(d).isocalendar()[:2] for d in dates}
    last_of_week = {week_of[d]: d for d in dates}
    rebalances = list(last_of_week.values())
    last = pd.Timestamp(dates[-1])
    week_end = (last + pd.Timedelta(days=7 - last.isoweekday())).strftime("%Y-%m-%d")
    if len(sessions_between(last + pd.Timedelta(days=1), week_end)):
        rebalances = rebalances[:-1]
    applied = wh.query("SELECT date FROM applied_scalars ORDER BY date")["date"].to_list()
    assert [str(d) for d in applied] == rebalances and len(rebalances) > 1700
    assert [str(d) for d in wh.query("SELECT date FROM scaled_backtest ORDER BY date")["date"].to_list()] == dates
    assert (alloc_home / "reports" / "risk_parity" / "two_pass_comparison.json").exists()


def test_definitions_load():
    from alloc_assets.definitions import defs
    from alloc_assets.defs.resources import RESOURCES

    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"market_prices", "latent_state", "regime_series", "risk_scalars", "applied_scalars",
            "comparison_report"} <= keys
    node = defs.resolve_assets_def("market_prices")
    assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert node.partitions_def == market_partitions
    for name in ("latent_state", "regime_series", "risk_scalars", "applied_scalars", "comparison_report"):
        assert defs.resolve_assets_def(name).partitions_def is None, name
    assert {"warehouse", "market_source", "landing", "allocator", "backtest"} <= set(RESOURCES)
    refresh = defs.resolve_job_def("refresh_job")
    derive = defs.resolve_job_def("derive_job")
    assert refresh.partitions_def == market_partitions and derive.partitions_def is None
    in_refresh = {k.to_user_string() for k in refresh.asset_layer.executable_asset_keys}
    in_derive = {k.to_user_string() for k in derive.asset_layer.executable_asset_keys}
    assert in_refresh == in_derive | {"market_prices"} and "market_prices" not in in_derive
    # a range of years is ONE run end to end only if every asset of the job runs its range in one
    # run (what `dg launch --partition-range` checks before it starts anything)
    for key in refresh.asset_layer.executable_asset_keys:
        assert refresh.asset_layer.get(key).backfill_policy == dg.BackfillPolicy.single_run(), key


@pytest.mark.parametrize("cmd", [["dg", "check", "defs"],
                                 ["dagster", "definitions", "validate", "-w", "workspace.yaml"]])
def test_cli_validates_definitions(cmd, tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ALLOC_HOME": str(tmp_path / "alloc")}
    exe = Path(sys.executable).parent / cmd[0]
    proc = subprocess.run([str(exe), *cmd[1:]], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_dg_launch_partition_range(tmp_path):
    """The documented CLI backfill: ``dg launch --job refresh_job --partition-range 2021...2022`` is
    ONE run over both years (market through the report), recorded in the instance."""
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ALLOC_HOME": str(tmp_path / "alloc")}
    env.pop("ALLOC_MARKET_DATA", None)
    exe = Path(sys.executable).parent / "dg"
    proc = subprocess.run([str(exe), "launch", "--job", "refresh_job", "--partition-range", "2021...2022"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _, dates, _ = _bundled_rows()
    expected = [d for d in dates if d >= "2021-01-01"]
    import duckdb

    con = duckdb.connect(str(tmp_path / "alloc" / "warehouse.duckdb"), read_only=True)
    try:
        n_dates, n_rows, first, last = con.execute(
            "SELECT count(DISTINCT date), count(*), min(date), max(date) FROM market_prices").fetchone()
        n_state = con.execute("SELECT count(*) FROM latent_state").fetchone()[0]
    finally:
        con.close()
    assert (n_dates, n_rows) == (len(expected), len(expected) * 20)
    assert (str(first), str(last)) == (expected[0], expected[-1]) and n_state == len(expected)
    assert (tmp_path / "alloc" / "reports" / "risk_parity" / "two_pass_comparison.json").exists()
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    runs = instance.get_runs()
    assert len(runs) == 1 and runs[0].job_name == "refresh_job" and runs[0].status == dg.DagsterRunStatus.SUCCESS
    assert runs[0].tags.get("dagster/asset_partition_range_start") == "2021"
    assert runs[0].tags.get("dagster/asset_partition_range_end") == "2022"
    assert set(instance.get_materialized_partitions(dg.AssetKey("market_prices"))) == {"2021", "2022"}


def test_the_cached_session_list_equals_exchange_calendars(tmp_path):
    """``trading_sessions(cache_dir)`` keeps the list on disk per exchange_calendars version and pinned
    span: a cold build, a warm load and the package's own XNYS sessions are the same index."""
    import exchange_calendars as xc
    import pandas as pd

    from alloc_assets.core.market import calendar as cal

    ref = xc.get_calendar("XNYS", start="1990-01-01", end=cal.CALENDAR_END).sessions
    ref = ref[ref >= pd.Timestamp(cal.CALENDAR_START)]
    cal._loaded = None
    cold = cal.trading_sessions(cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").glob("sessions-*.npy"))
    cal._loaded = None
    warm = cal.trading_sessions(cache_dir=tmp_path / "cache")
    cal._loaded = None
    assert cold.equals(ref) and warm.equals(ref) and len(ref) == 11577
    assert cal.last_contiguous_session(ref[0].date(), [d.date() for d in ref[:30]]) == ref[29].date()
    assert cal.last_contiguous_session(ref[0].date(), [d.date() for d in ref[:30] if d != ref[7]]) == ref[6].date()
    assert cal.last_contiguous_session(ref[1].date(), [d.date() for d in ref[:30]]) == ref[29].date()
