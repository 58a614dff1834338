"""Schedule and sensor through Dagster's harnesses (build_schedule_context / build_sensor_context)."""

from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from alloc_assets.definitions import defs
from alloc_assets.defs.automation import LandingZone, daily_schedule, new_market_data_sensor

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
