"""Schedule and sensors through Dagster's harnesses (build_schedule_context / build_sensor_context /
build_run_status_sensor_context)."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import dagster as dg
import numpy as np
import pytest
from polars.testing import assert_frame_equal

from alloc_assets.core.calendar import stored_sessions_after
from alloc_assets.core.panel import load_bundled_panel
from alloc_assets.definitions import defs
from alloc_assets.defs.allocator import ALLOCATOR_ASSETS
from alloc_assets.defs.automation import LandingZone, daily_schedule, new_market_data_sensor, report_after_history
from alloc_assets.defs.market import market_prices
from alloc_assets.partitions import RANGE_END_TAG, RANGE_START_TAG, range_tags
from resources.allocator import AllocatorSettings
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

NY = ZoneInfo("America/New_York")
SYMS = ["AAA", "BBB", "CCC"]


def tick(day: dt.date):
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(day.year, day.month, day.day, 18, 30, tzinfo=NY))
    return daily_schedule(context)


def test_schedule_targets_the_trading_day_of_the_tick():
    result = tick(dt.date(2023, 1, 3))
    assert isinstance(result, dg.RunRequest) and result.partition_key == "2023-01-03"
    assert daily_schedule.execution_timezone == "America/New_York"
    assert daily_schedule.cron_schedule == "30 18 * * 1-5"


@pytest.mark.parametrize("holiday", [dt.date(2023, 1, 2), dt.date(2022, 12, 26), dt.date(2023, 7, 4), dt.date(2001, 9, 11)])
def test_schedule_skips_exchange_holidays(holiday):
    result = tick(holiday)
    assert isinstance(result, dg.SkipReason) and "not an NYSE trading day" in result.skip_message


def test_schedule_through_evaluate_tick():
    """The schedule as the daemon evaluates it, with its definitions (partition key validated)."""
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2023, 1, 4, 18, 30, tzinfo=NY),
                                        repository_def=defs.get_repository_def())
    data = daily_schedule.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == ["2023-01-04"]


def write(path, rows, header=("date", *SYMS)):
    path.write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    return path


def evaluate(landing, cursor=None):
    instance = dg.DagsterInstance.ephemeral()
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"landing": LandingZone(path=str(landing))},
                                      definitions=defs)
    return new_market_data_sensor(context), context


def test_sensor_new_same_corrected_bad_and_cursor(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    f = write(landing / "prices_2023-01-03.csv", [["2023-01-03", 1, 2, 3]])
    # new file -> one run request for its partition, with the file as run config
    result, ctx = evaluate(landing)
    assert [r.partition_key for r in result.run_requests] == ["2023-01-03"]
    req = result.run_requests[0]
    assert req.run_config["ops"]["market_prices"]["config"]["files"] == [str(f)]
    assert "prices_2023-01-03.csv" in req.run_key
    cursor = ctx.cursor
    assert json.loads(cursor)["prices_2023-01-03.csv"]
    # same file, next tick (cursor persisted) -> nothing
    result2, ctx2 = evaluate(landing, cursor)
    assert isinstance(result2, dg.SkipReason)
    assert ctx2.cursor == cursor
    # corrected file -> a new request with a new run key
    write(f, [["2023-01-03", 1, 2, 3.5]])
    result3, ctx3 = evaluate(landing, cursor)
    assert [r.partition_key for r in result3.run_requests] == ["2023-01-03"]
    assert result3.run_requests[0].run_key != req.run_key
    # days out of order: an earlier day lands later -> its own request
    write(landing / "prices_2022-12-30.csv", [["2022-12-30", 1, 2, 3]])
    result4, ctx4 = evaluate(landing, ctx3.cursor)
    assert [r.partition_key for r in result4.run_requests] == ["2022-12-30"]
    # bad file -> rejected with its reason, no request, sensor does not crash
    write(landing / "prices_2023-01-04.csv", [["2023-01-04", 1, "x", 3]])
    result5, ctx5 = evaluate(landing, ctx4.cursor)
    assert isinstance(result5, dg.SkipReason) and "prices_2023-01-04.csv" in result5.skip_message
    assert not (landing / "prices_2023-01-04.csv").exists()
    assert (landing / "rejected" / "prices_2023-01-04.csv").exists()
    reason = (landing / "rejected" / "prices_2023-01-04.csv.reason.txt").read_text()
    assert "row 1" in reason and "column 'BBB'" in reason
    assert ctx5.cursor == ctx4.cursor


@pytest.mark.parametrize("name,rows,fragment", [
    ("prices_2023-01-02.csv", [["2023-01-02", 1, 2, 3]], "not an NYSE trading day"),
    ("prices_2023-01-05.csv", [["2023-01-05", 1, -2, 3]], "finite number > 0"),
    ("prices_2023-01-05.csv", [["2023-01-06", 1, 2, 3]], "row 1"),
    ("prices_2023-01-05.csv", [], "no data rows"),
])
def test_sensor_rejects_with_reason(tmp_path, name, rows, fragment):
    landing = tmp_path / "landing"
    landing.mkdir()
    write(landing / name, rows)
    result, _ = evaluate(landing)
    assert isinstance(result, dg.SkipReason)
    assert fragment in (landing / "rejected" / f"{name}.reason.txt").read_text()


def test_sensor_tick_over_many_files_is_cheap(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    days = [d for d in defs.resolve_job_def("history_job").partitions_def.get_partition_keys()
            if "2018-01-01" <= d <= "2022-12-31"][:300]
    for d in days:
        write(landing / f"prices_{d}.csv", [[d, 1, 2, 3]])
    result, ctx = evaluate(landing)
    assert len(result.run_requests) == len(days)
    result2, _ = evaluate(landing, ctx.cursor)
    assert isinstance(result2, dg.SkipReason)


def test_stored_sessions_after_stops_at_the_first_gap():
    # 2022-12-26 is a holiday (Christmas observed): 12-23 and 12-27 are consecutive sessions
    stored = ["2022-12-20", "2022-12-23", "2022-12-27", "2022-12-29"]
    assert stored_sessions_after("2022-12-22", stored) == ["2022-12-23", "2022-12-27"]
    assert stored_sessions_after("2022-12-21", stored) == []          # 12-22 itself is missing
    assert stored_sessions_after("2022-12-29", stored) == []


def _day_file(directory, day: str):
    """The bundled closes of ``day`` (every digit) as a landing file, with the benchmark column."""
    panel = load_bundled_panel()
    i = int(np.searchsorted(panel.dates, np.datetime64(day)))
    assert str(panel.dates[i])[:10] == day
    header = ["date", *panel.symbols, "SP500"]
    values = [day, *[f"{v:.17g}" for v in panel.close[i]], f"{panel.benchmark[i]:.17g}"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"prices_{day}.csv"
    path.write_text(",".join(header) + "\n" + ",".join(values) + "\n")
    return path


def _after(instance, result):
    context = dg.build_run_status_sensor_context(
        sensor_name="report_after_history", dagster_event=result.get_run_success_event(),
        dagster_instance=instance, dagster_run=result.dagster_run)
    return report_after_history(context)


def test_days_out_of_order_are_caught_up_and_equal_the_in_order_run(alloc_home, tmp_path):
    """History to 12-21; the file of 12-23 lands before the one of 12-22. The 12-23 run stores its
    prices but its allocator layers stop (12-22 missing, nothing written); after 12-22 succeeds,
    the run-status sensor asks for the allocator layers of 12-23, and that run's success asks for
    the report. The tables then equal one in-order range run on a separate warehouse."""
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("history_job")
    first, late, early = "2022-11-01", "2022-12-23", "2022-12-22"
    assert job.execute_in_process(instance=instance, tags=range_tags(first, "2022-12-21")).success

    def land(day):
        path = _day_file(alloc_home / "landing", day)
        return job.execute_in_process(instance=instance, partition_key=day, raise_on_error=False,
                                      run_config={"ops": {"market_prices": {"config": {"files": [str(path)]}}}})

    wh = DuckDBWarehouse(path=str(alloc_home / "warehouse.duckdb"))
    assert not land(late).success
    assert wh.query(f"SELECT count(*) AS n FROM market_prices WHERE date = DATE '{late}'")["n"][0] == 20
    assert wh.query(f"SELECT count(*) AS n FROM latent_state WHERE date = DATE '{late}'")["n"][0] == 0

    on_time = land(early)
    assert on_time.success
    request = _after(instance, on_time)
    assert request.job_name == "history_job"
    assert set(request.asset_selection) == {a.key for a in ALLOCATOR_ASSETS}
    assert (request.tags[RANGE_START_TAG], request.tags[RANGE_END_TAG]) == (late, late)

    catch_up = job.execute_in_process(instance=instance, asset_selection=request.asset_selection, tags=request.tags)
    assert catch_up.success
    follow = _after(instance, catch_up)
    assert follow.job_name == "report_job" and follow.asset_selection is None

    ref = DuckDBWarehouse(path=str(tmp_path / "in_order.duckdb"))
    assert dg.materialize([market_prices, *ALLOCATOR_ASSETS], instance=dg.DagsterInstance.ephemeral(),
                          resources={"warehouse": ref, "market_source": MarketDataSource(),
                                     "allocator": AllocatorSettings()},
                          tags=range_tags(first, late)).success
    for name in ("latent_state", "regime_series", "risk_scalars", "applied_scalars"):
        got = wh.query(f"SELECT * FROM {name} ORDER BY date")
        want = ref.query(f"SELECT * FROM {name} ORDER BY date")
        if name != "applied_scalars":  # that one has rows at rebalance dates only (month ends)
            assert got["date"].max() == dt.date.fromisoformat(late), name
        assert_frame_equal(got, want, check_exact=False, rel_tol=0.0, abs_tol=1e-12)
