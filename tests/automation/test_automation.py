"""Schedule and sensors through Dagster's harnesses (build_schedule_context, build_sensor_context,
evaluate_tick), and the runs they request executed in process against a real DuckDB warehouse.

The reference for "days out of order" and "N files in one run" is the same days landed in order,
one run each: the derived tables must be identical.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
import pytest

from alloc_assets.core.market.panel import load_bundled_panel
from alloc_assets.definitions import defs
from alloc_assets.defs.automation.sensors import catch_up_sensor, daily_schedule, new_market_data_sensor
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

NY = ZoneInfo("America/New_York")
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
DERIVED = ("latent_state", "regime_series", "risk_scalars", "applied_scalars", "baseline_backtest", "scaled_backtest")
NEW_DAYS = ("2022-12-29", "2022-12-30", "2023-01-03", "2023-01-04")


# ------------------------------------------------------------------------------------------------
# schedule

def schedule_tick(day: dt.date, home: Path):
    context = dg.build_schedule_context(
        scheduled_execution_time=dt.datetime(day.year, day.month, day.day, 18, 30, tzinfo=NY),
        resources={"landing": LandingZone(path=str(home / "landing")), "market_source": MarketDataSource(),
                   "warehouse": DuckDBWarehouse(path=str(home / "warehouse.duckdb"))})
    return daily_schedule(context)


def test_schedule_runs_a_day_present_in_the_source_as_its_year(alloc_home):
    result = schedule_tick(dt.date(2022, 12, 28), alloc_home)
    assert isinstance(result, dg.RunRequest) and result.partition_key == "2022"
    assert result.run_key == "scheduled-2022-12-28"
    assert daily_schedule.execution_timezone == "America/New_York" and daily_schedule.cron_schedule == "30 18 * * 1-5"


@pytest.mark.parametrize("holiday", [dt.date(2023, 1, 2), dt.date(2022, 12, 26), dt.date(2023, 7, 4), dt.date(2001, 9, 11)])
def test_schedule_skips_exchange_holidays(alloc_home, holiday):
    result = schedule_tick(holiday, alloc_home)
    assert isinstance(result, dg.SkipReason) and "not an NYSE trading day" in result.skip_message


def test_schedule_skips_with_a_reason_when_data_has_not_arrived(alloc_home):
    """The bundled data ends in 2022: a 2023 weekday is a skip that says why, never a red run."""
    result = schedule_tick(dt.date(2023, 1, 4), alloc_home)
    assert isinstance(result, dg.SkipReason) and "has arrived" in result.skip_message


def test_schedule_through_evaluate_tick_with_the_definitions(alloc_home):
    from alloc_assets.defs.resources import RESOURCES

    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2022, 12, 27, 18, 30, tzinfo=NY),
                                        repository_def=defs.get_repository_def(), resources=RESOURCES)
    data = daily_schedule.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == ["2022"]


# ------------------------------------------------------------------------------------------------
# landing sensor

def landing_csv(path: Path, day: str, factor: float = 1.0, symbols=None, benchmark: bool = True) -> Path:
    """A wide landing file for ``day``: the bundled last closes times ``factor`` (+ the benchmark)."""
    panel = load_bundled_panel()
    syms = list(symbols or panel.symbols)
    idx = [panel.symbols.index(s) for s in syms]
    closes = panel.close[-1, idx] * factor
    header = ["date", *syms] + (["SP500"] if benchmark else [])
    row = [day, *[f"{c:.6f}" for c in closes]] + ([f"{panel.benchmark[-1] * factor:.6f}"] if benchmark else [])
    tmp = path.with_name("." + path.name + ".part")
    tmp.write_text(",".join(header) + "\n" + ",".join(row) + "\n")
    old = time.time() - 3600  # settled an hour ago
    os.utime(tmp, (old, old))
    tmp.rename(path)  # the atomic rename a careful producer does
    return path


def tick(landing: Path, cursor: str | None = None, instance=None, settle: float = 0.0):
    context = dg.build_sensor_context(instance=instance or dg.DagsterInstance.ephemeral(), cursor=cursor,
                                      resources={"landing": LandingZone(path=str(landing), settle_seconds=settle)},
                                      definitions=defs)
    return new_market_data_sensor(context), context


def test_sensor_new_same_corrected_and_bad_files(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    f = landing_csv(landing / "prices_2023-01-03.csv", "2023-01-03")
    result, ctx = tick(landing)
    assert len(result.run_requests) == 1
    req = result.run_requests[0]
    assert req.partition_key == "2023"
    files = req.run_config["ops"]["market_prices"]["config"]["files"]
    # the run reads the immutable accepted copy, not the file in the landing folder
    assert len(files) == 1 and Path(files[0]).parent == landing / "accepted" / "2023-01-03"
    assert Path(files[0]).read_bytes() == f.read_bytes()
    assert (landing / "accepted" / "2023-01-03" / "CURRENT").read_text() == Path(files[0]).name
    # same file, next tick (the run has not consumed it yet): nothing new
    again, ctx2 = tick(landing, ctx.cursor)
    assert isinstance(again, dg.SkipReason)
    # corrected content: a new request with a new run key, a new copy made CURRENT
    landing_csv(f, "2023-01-03", factor=1.01)
    fixed, ctx3 = tick(landing, ctx2.cursor)
    assert fixed.run_requests[0].run_key != req.run_key
    new_copy = fixed.run_requests[0].run_config["ops"]["market_prices"]["config"]["files"][0]
    assert new_copy != files[0] and Path(files[0]).exists()  # the earlier copy stays (immutable audit trail)
    # a bad file next to a good one: the bad one is rejected with file, row and column; the good one runs
    bad = landing / "prices_2023-01-05.csv"
    bad.write_text("date,AAPL,MSFT\n2023-01-05,1.5,x\n")
    os.utime(bad, (time.time() - 3600,) * 2)
    landing_csv(landing / "prices_2023-01-06.csv", "2023-01-06")
    mixed, _ = tick(landing, ctx3.cursor)
    assert [r.tags["alloc/landing_days"] for r in mixed.run_requests] == ["2023-01-06..2023-01-06"]
    reason = (landing / "rejected" / "prices_2023-01-05.csv.reason.txt").read_text()
    assert "row 1" in reason and "column 'MSFT'" in reason
    assert not bad.exists()


@pytest.mark.parametrize("name,body,fragment", [
    ("prices_2023-01-02.csv", "date,A\n2023-01-02,1\n", "not an NYSE trading day"),
    ("prices_2023-01-05.csv", "date,A,B\n2023-01-05,1,-2\n", "finite number > 0"),
    ("prices_2023-01-05.csv", "date,A\n2023-01-06,1\n", "row 1"),
    ("prices_2023-01-05.csv", "date,A\n", "no"),
    ("prices_2023-02-30.csv", "date,A\n2023-02-30,1\n", "not a date"),
    ("prices_1985-01-02.csv", "date,A\n1985-01-02,1\n", "outside the trading calendar"),
])
def test_sensor_rejects_with_reason_and_never_fails_the_tick(tmp_path, name, body, fragment):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / name).write_text(body)
    os.utime(landing / name, (time.time() - 3600,) * 2)
    good = landing_csv(landing / "prices_2022-12-30.csv", "2022-12-30")
    result, _ = tick(landing)
    assert len(result.run_requests) == 1 and good.exists()
    assert fragment in (landing / "rejected" / f"{name}.reason.txt").read_text()


def test_future_dated_file_is_left_for_a_later_tick_and_valid_files_still_run(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    future = landing / "prices_2034-01-03.csv"
    future.write_text("date,A\n2034-01-03,1\n")
    os.utime(future, (time.time() - 3600,) * 2)
    landing_csv(landing / "prices_2022-12-29.csv", "2022-12-29")
    result, ctx = tick(landing)
    assert len(result.run_requests) == 1 and result.run_requests[0].partition_key == "2022"
    assert future.exists() and not (landing / "rejected" / future.name).exists()
    alone, _ = tick(landing, ctx.cursor)
    assert isinstance(alone, dg.SkipReason) and "after today" in alone.skip_message


def test_a_file_still_being_written_is_left_alone_until_it_settles(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    partial = landing / "prices_2022-12-29.csv"
    partial.write_text("date,AAPL,MSFT\n2022-12-29,12")  # half-written, just modified
    result, ctx = tick(landing, settle=30)
    assert isinstance(result, dg.SkipReason) and "may still be being written" in result.skip_message
    assert partial.exists() and not (landing / "rejected").exists() and not (landing / "accepted").exists()
    landing_csv(partial, "2022-12-29")  # the writer finishes (settled)
    done, _ = tick(landing, ctx.cursor, settle=30)
    assert len(done.run_requests) == 1


def test_two_files_for_one_day_in_one_tick_give_one_run_on_the_newest(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    old = landing_csv(landing / "a_2022-12-29.csv", "2022-12-29", factor=1.0)
    new = landing_csv(landing / "b_2022-12-29.csv", "2022-12-29", factor=1.02)
    os.utime(old, (time.time() - 7200,) * 2)
    result, _ = tick(landing)
    assert len(result.run_requests) == 1
    copy = Path(result.run_requests[0].run_config["ops"]["market_prices"]["config"]["files"][0])
    assert copy.read_bytes() == new.read_bytes()
    assert (landing / "superseded" / "a_2022-12-29.csv").exists() and not old.exists()


def test_symbolic_links_and_foreign_names_never_escape_the_folder(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    outside = landing_csv(tmp_path / "secret_2022-12-29.csv", "2022-12-29")
    (landing / "link_2022-12-29.csv").symlink_to(outside)
    (landing / "..hidden_2022-12-29.csv").write_text("x")  # not a landing name: ignored
    (landing / "notes.txt").write_text("hello")
    result, _ = tick(landing)
    assert isinstance(result, dg.SkipReason)
    assert "symbolic links" in (landing / "rejected" / "link_2022-12-29.csv.reason.txt").read_text()
    assert outside.exists() and not (landing / "accepted").exists()


def test_many_files_in_one_tick_give_one_run_and_the_cursor_stays_bounded(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for day in NEW_DAYS:
        landing_csv(landing / f"p_{day}.csv", day)
    result, ctx = tick(landing)
    assert len(result.run_requests) == 1
    req = result.run_requests[0]
    assert req.tags["dagster/asset_partition_range_start"] == "2022"
    assert req.tags["dagster/asset_partition_range_end"] == "2023"
    assert len(req.run_config["ops"]["market_prices"]["config"]["files"]) == 4
    assert len(json.loads(ctx.cursor)) == 4
    for day in NEW_DAYS:  # the run consumed them
        (landing / f"p_{day}.csv").unlink()
    after, ctx2 = tick(landing, ctx.cursor)
    assert isinstance(after, dg.SkipReason) and json.loads(ctx2.cursor) == {}


# ------------------------------------------------------------------------------------------------
# the requested runs, executed: days out of order, N files -> one run, catch-up

def execute(instance, request: dg.RunRequest | None = None, job: str = "refresh_job", **kwargs):
    if request is not None:
        if request.partition_key:
            kwargs["partition_key"] = request.partition_key
        kwargs["tags"] = {**request.tags}
        kwargs["run_config"] = {**request.run_config, **QUIET}
    else:
        kwargs.setdefault("run_config", QUIET)
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, raise_on_error=False, **kwargs)
    assert result.success, [e.event_specific_data.error.message for e in result.all_events if e.is_step_failure]
    return result


FACTORS = {day: 1 + 0.003 * (k + 1) for k, day in enumerate(NEW_DAYS)}


def drop(home: Path, days) -> Path:
    landing = home / "landing"
    landing.mkdir(exist_ok=True)
    for day in days:
        landing_csv(landing / f"feed_{day}.csv", day, factor=FACTORS[day])
    return landing


def land(home: Path, instance, days, cursor=None):
    landing = drop(home, days)
    result, ctx = tick(landing, cursor, instance)
    assert len(result.run_requests) == 1
    execute(instance, result.run_requests[0])
    return ctx.cursor


def tables(home: Path) -> dict[str, pl.DataFrame]:
    wh = DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    out = {t: wh.query(f"SELECT * FROM {t} ORDER BY date") for t in DERIVED}
    out["market_prices"] = wh.query("SELECT date, symbol, close FROM market_prices ORDER BY date, symbol")
    return out


def fresh_home(root: Path, monkeypatch) -> tuple[Path, dg.DagsterInstance]:
    home = root / f"alloc-{uuid.uuid4().hex[:6]}"
    home.mkdir()
    monkeypatch.setenv("ALLOC_HOME", str(home))
    monkeypatch.setenv("ALLOC_OVERRIDES", str(home / "none.csv"))
    instance = dg.DagsterInstance.ephemeral()
    execute(instance, partition_key="2022")
    return home, instance


@pytest.mark.slow
def test_days_out_of_order_and_many_files_per_run_equal_the_in_order_runs(tmp_path, monkeypatch):
    # reference: each day lands on its own, in order
    ref, inst = fresh_home(tmp_path, monkeypatch)
    cursor = None
    for day in NEW_DAYS:
        cursor = land(ref, inst, [day], cursor)
    expected = tables(ref)
    assert expected["latent_state"]["date"][-1] == dt.date(2023, 1, 4)

    # out of order: 2023-01-04 first (a gap: the derived layers stop at 2022-12-28) ...
    home, inst = fresh_home(tmp_path, monkeypatch)
    cursor = land(home, inst, ["2023-01-04"])
    partial = tables(home)
    assert partial["market_prices"]["date"].max() == dt.date(2023, 1, 4)
    assert partial["latent_state"]["date"].max() == dt.date(2022, 12, 28)
    assert partial["baseline_backtest"]["date"].max() == dt.date(2022, 12, 28)
    # ... then the three missing days in ONE tick -> ONE run over 2022..2023
    landing = drop(home, NEW_DAYS[:3])
    result, _ = tick(landing, cursor, inst)
    assert len(result.run_requests) == 1
    execute(inst, result.run_requests[0])
    got = tables(home)
    assert not any(landing.glob("feed_*.csv"))  # the run consumed the originals
    for name, frame in expected.items():
        assert got[name].equals(frame), name


@pytest.mark.slow
def test_catch_up_sensor_derives_what_a_failed_run_left_behind(tmp_path, monkeypatch):
    home, inst = fresh_home(tmp_path, monkeypatch)
    context = dg.build_sensor_context(instance=inst, definitions=defs)
    skip = catch_up_sensor(context)
    assert isinstance(skip, dg.SkipReason) and "newer" in skip.skip_message
    # a run that stored a new day's market data and then failed before the derived layers
    result, _ = tick(drop(home, ["2022-12-29"]), None, inst)
    req = result.run_requests[0]
    execute(inst, None, partition_key=req.partition_key, tags=req.tags, run_config={**req.run_config, **QUIET},
            asset_selection=[dg.AssetKey("market_prices")])
    assert tables(home)["latent_state"]["date"].max() == dt.date(2022, 12, 28)
    # an active warehouse run: wait for it
    active = inst.create_run_for_job(defs.resolve_job_def("derive_job"), tags={"alloc/warehouse_writer": "true"})
    waiting = catch_up_sensor(dg.build_sensor_context(instance=inst, definitions=defs))
    assert isinstance(waiting, dg.SkipReason) and "active" in waiting.skip_message
    inst.report_run_canceled(active)
    request = catch_up_sensor(dg.build_sensor_context(instance=inst, definitions=defs))
    assert isinstance(request, dg.RunRequest) and request.run_key.startswith("derive-after-")
    execute(inst, None, job="derive_job")
    assert tables(home)["latent_state"]["date"].max() == dt.date(2022, 12, 29)
    assert tables(home)["scaled_backtest"]["date"].max() == dt.date(2022, 12, 29)
    done = catch_up_sensor(dg.build_sensor_context(instance=inst, definitions=defs))
    assert isinstance(done, dg.SkipReason)


def test_catch_up_sensor_through_evaluate_tick_skips_on_an_empty_instance():
    data = catch_up_sensor.evaluate_tick(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(),
                                                                 definitions=defs))
    assert not data.run_requests and "no market data" in data.skip_message


def land_rejected(home: Path, inst, **file_kwargs):
    """Land a 2022-12-29 file that the run (not the sensor) rejects; run it; return the landing
    folder, the rejection reason and the sensor context."""
    landing = home / "landing"
    landing.mkdir(exist_ok=True)
    landing_csv(landing / "feed_2022-12-29.csv", "2022-12-29", **file_kwargs)
    result, ctx = tick(landing, None, inst)
    req = result.run_requests[0]
    run = defs.resolve_job_def("refresh_job").execute_in_process(
        instance=inst, partition_key=req.partition_key, tags=req.tags, run_config={**req.run_config, **QUIET},
        raise_on_error=False)
    assert not run.success
    return landing, (landing / "rejected" / "feed_2022-12-29.csv.reason.txt").read_text(), ctx


@pytest.mark.slow
def test_a_landing_day_without_the_benchmark_is_an_error_not_a_silent_switch(tmp_path, monkeypatch):
    home, inst = fresh_home(tmp_path, monkeypatch)
    landing, reason, _ = land_rejected(home, inst, benchmark=False)
    assert "no_missing_sessions" in reason and "SP500" in reason and "2022-12-29" in reason
    assert tables(home)["market_prices"]["date"].max() == dt.date(2022, 12, 28)  # nothing stored


@pytest.mark.slow
def test_a_file_the_run_rejects_never_blocks_later_runs_of_its_year(tmp_path, monkeypatch):
    """A landing file that passes the sensor's per-file checks but fails the run's checks (a symbol
    of the stored universe is missing) is taken out of force and moved to rejected/ with the
    reason; the next day's run of the same year succeeds."""
    home, inst = fresh_home(tmp_path, monkeypatch)
    panel = load_bundled_panel()
    landing, reason, cursor_ctx = land_rejected(home, inst, symbols=panel.symbols[:-1])  # one symbol short
    assert "expected_symbols" in reason and panel.symbols[-1] in reason
    assert not (landing / "accepted" / "2022-12-29" / "CURRENT").exists()
    cursor = land(home, inst, ["2022-12-30"], cursor_ctx.cursor)
    got = tables(home)
    assert got["market_prices"]["date"].max() == dt.date(2022, 12, 30)
    assert dt.date(2022, 12, 29) not in got["market_prices"]["date"].to_list()
    assert got["latent_state"]["date"].max() == dt.date(2022, 12, 28)  # the gap at 12-29 waits for a good file
    quiet, after = tick(landing, cursor, inst)  # the run consumed 12-30; the rejected file is gone
    assert isinstance(quiet, dg.SkipReason) and json.loads(after.cursor) == {}


@pytest.mark.parametrize("body,ok", [
    ("date,AAA,BBB\n2023-01-03,1.5,2\n", True),
    ("date,AAA,BBB\n2023-01-03,1.5,x\n", False),      # not a number: the full reader names row and column
    ("date,AAA,AAA\n2023-01-03,1.5,2\n", False),      # a symbol twice
    ("date,AAA,BBB\n2023-01-04,1.5,2\n", False),      # another day
    ("date,symbol,close\n2023-01-03,AAA,1\n", False),  # long format: full reader
    ("date,AAA,BBB\n2023-01-03,1.5,0\n", False),
    ("date,AAA,BBB\n2023-01-03,1.5,inf\n", False),
])
def test_the_quick_landing_check_accepts_only_what_the_full_reader_accepts(tmp_path, body, ok):
    """The fast path for plain wide CSVs accepts the common case (which the full reader reads the
    same) and hands anything doubtful to the full reader (which names file, row and column)."""
    from alloc_assets.core.market.landing import _plain_wide_csv_ok

    path = tmp_path / "p_2023-01-03.csv"
    path.write_text(body)
    assert _plain_wide_csv_ok(path, dt.date(2023, 1, 3)) is ok
    if ok:  # the full reader agrees
        from alloc_assets.core.market.source import read_market_data

        assert read_market_data(path).prices.height == 2


def test_a_benchmark_gap_in_the_warehouse_fails_the_derived_layers_clearly(tmp_path, monkeypatch):
    """Defence in depth: whatever put it there, a stored day without the benchmark's close stops
    the layers that read the benchmark with the day named (never the equal-weight index instead)."""
    home, inst = fresh_home(tmp_path, monkeypatch)
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"))
    con.execute("DELETE FROM market_benchmark WHERE date = DATE '2022-06-01'")
    con.close()
    run = defs.resolve_job_def("derive_job").execute_in_process(instance=inst, run_config=QUIET, raise_on_error=False)
    assert not run.success
    text = " ".join(e.event_specific_data.error.message for e in run.all_events if e.is_step_failure)
    assert "market_benchmark has no close" in text and "2022-06-01" in text
