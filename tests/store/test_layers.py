"""The incremental-layer machinery on a real DuckDB file: plans, resume points, writes.

An upstream table ``up`` (one value per session) feeds a layer ``lay``. Sessions used (NYSE):
January 2020 has 21 (2, 3, 6-10, 13-17, 21-24, 27-31; the 20th is a holiday), February starts
3, 4, 5, 6, 7.
"""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from alloc_assets.store.changes import first_change
from alloc_assets.store.layers import (
    month_end_carries,
    plan_layer,
    previous_session,
    previous_value,
    require_complete,
    skip_layer,
    start_layer,
    table_span,
    to_polars,
    window_filter,
    write_layer,
)
from alloc_assets.store.readers import WarehouseDataError
from resources.warehouse import Change, DuckDBWarehouse

D = dt.date
JAN = [D(2020, 1, d) for d in (2, 3, 6, 7, 8, 9, 10, 13, 14, 15, 16, 17, 21, 22, 23, 24, 27, 28, 29, 30, 31)]
FEB = [D(2020, 2, d) for d in (3, 4, 5, 6, 7)]


@pytest.fixture()
def wh(tmp_path):
    w = DuckDBWarehouse(path=str(tmp_path / "w.duckdb"))
    w.ensure_tables("allocator")
    return w


def _rows(days, value=1.0):
    return pl.DataFrame({"date": days, "x": [value] * len(days)}, schema={"date": pl.Date, "x": pl.Float64})


def _land(wh, days, value=1.0):
    """Write ``days`` of the upstream and log the change (as the upstream asset does)."""
    wh.replace_window({"up": _rows(days, value)}, days[0], days[-1], change=Change("up", days[0], days[-1], "r"))


def _plan(wh, h="h1"):
    first, through = table_span(wh, "up")
    return plan_layer(wh, "lay", "up", h, first, through)


def test_previous_session_skips_weekends_and_holidays():
    assert previous_session(D(2020, 1, 6)) == D(2020, 1, 3)
    assert previous_session(D(2020, 1, 21)) == D(2020, 1, 17)
    assert previous_session(D(1800, 1, 1)) is None


def test_first_run_is_a_full_recompute(wh):
    _land(wh, JAN)
    plan = _plan(wh)
    assert (plan.start, plan.through, plan.compute_from, plan.carry, plan.full) == (JAN[0], JAN[-1], JAN[0], None, True)
    assert plan.reason == "first run: recompute from the first day"
    assert plan.upstream_version == 1


def test_empty_upstream_plans_nothing_and_start_layer_refuses(wh):
    plan = plan_layer(wh, "lay", "up", "h1", None, None)
    assert plan.start is None and plan.reason == "up holds no contiguous days yet"
    with pytest.raises(WarehouseDataError, match="up is empty: materialize it first"):
        start_layer(wh, "lay", "up", "h1")


def test_new_days_resume_from_the_stored_carry_and_restatements_from_an_earlier_one(wh):
    _land(wh, JAN)
    plan = _plan(wh)
    carries = wh.carry_frame("lay", "h1", {D(2020, 1, 10): {"n": 7}, D(2020, 1, 31): {"n": 21}})
    assert write_layer(wh, plan, _rows(JAN), "run1", carries) == 2  # the layer's change is version 2
    # nothing new upstream: nothing to compute
    idle = _plan(wh)
    assert idle.start is None and idle.through == JAN[-1]
    assert idle.reason == "up to date through 2020-01-31 (up holds nothing new without a gap)"
    skip_layer(wh, idle)
    assert wh.watermark("lay").version == 1
    # five new days: computed from 3 February, continuing from the carry of 31 January
    _land(wh, FEB)
    plan = _plan(wh)
    assert (plan.start, plan.through, plan.compute_from, plan.carry, plan.full) == (FEB[0], FEB[-1], FEB[0], {"n": 21}, False)
    assert plan.reason == "up changed from 2020-02-03"
    write_layer(wh, plan, _rows(FEB, 2.0), "run2", wh.carry_frame("lay", "h1", {FEB[-1]: {"n": 26}}))
    stored = wh.query("SELECT date, x FROM lay ORDER BY date")
    assert stored["date"].to_list() == JAN + FEB and stored["x"].to_list() == [1.0] * 21 + [2.0] * 5
    # a restatement from 15 January: the latest carry before it is the one of 10 January, so the
    # computation restarts on the session after it (13 January) and rows are replaced from the 15th
    _land(wh, [D(2020, 1, 15)], 3.0)
    plan = _plan(wh)
    assert (plan.start, plan.compute_from, plan.carry) == (D(2020, 1, 15), D(2020, 1, 13), {"n": 7})
    assert plan.reason == "up changed from 2020-01-15"
    later = [d for d in JAN + FEB if d >= D(2020, 1, 15)]
    write_layer(wh, plan, _rows(later, 4.0), "run3")
    stored = wh.query("SELECT date, x FROM lay ORDER BY date")
    assert stored["date"].to_list() == JAN + FEB
    assert stored["x"].to_list() == [1.0] * 9 + [4.0] * 17
    # the carries dated on or after the restated day were computed from old data: dropped
    assert wh.query("SELECT date FROM layer_carry WHERE asset = 'lay' ORDER BY date")["date"].to_list() == [D(2020, 1, 10)]


def test_changed_settings_recompute_from_the_first_day(wh):
    _land(wh, JAN)
    write_layer(wh, _plan(wh), _rows(JAN), "run1")
    plan = _plan(wh, h="h2")
    assert plan.full and plan.start == JAN[0] and plan.carry is None
    assert plan.reason == "settings changed: recompute from the first day"


def test_require_complete_lists_the_missing_sessions():
    require_complete(JAN, JAN[0], JAN[-1], "up", "lay")
    with pytest.raises(WarehouseDataError) as err:
        require_complete([d for d in JAN if d.day not in (7, 21)], JAN[0], JAN[-1], "up", "lay")
    assert err.value.missing == [D(2020, 1, 7), D(2020, 1, 21)]
    assert "2 trading day(s)" in str(err.value) and "(first: 2020-01-07)" in str(err.value)


def test_month_end_carries_keep_month_ends_from_keep_from_and_the_last_date():
    dates = np.array(JAN + FEB, dtype="datetime64[D]")
    carries = list(range(len(dates)))
    assert month_end_carries(dates, carries) == {D(2020, 1, 31): 20, D(2020, 2, 7): 25}
    assert month_end_carries(dates, carries, keep_from=21) == {D(2020, 2, 7): 25}


def test_previous_value_and_first_change(wh):
    assert previous_value(wh, "lay", "x", JAN[5]) is None
    wh.replace_table("lay", pl.DataFrame({"date": JAN[:3], "x": [1.0, 2.0, 3.0]}))
    assert previous_value(wh, "lay", "x", JAN[2]) == 2.0
    assert previous_value(wh, "lay", "x", JAN[0]) is None
    same = pl.DataFrame({"date": JAN[:3], "x": [1.0, 2.0, 3.0]})
    assert first_change(wh, "lay", same, ["date"], "x") is None
    assert first_change(wh, "lay", same.with_columns(pl.Series("x", [1.0, 2.5, 3.0])), ["date"], "x") == JAN[1]
    assert first_change(wh, "lay", same.head(2), ["date"], "x") == JAN[2]  # a date only the table has
    assert first_change(wh, "missing_table", same, ["date"], "x") == JAN[0]


def test_frame_helpers():
    import pandas as pd

    pdf = pd.DataFrame({"date": pd.to_datetime(["2020-01-02", "2020-01-03"]), "v": [np.nan, 1.0]})
    assert to_polars(pdf)["v"].null_count() == 1
    kept = to_polars(pdf, keep_nan=True)
    assert kept["v"].null_count() == 0 and kept["date"].dtype == pl.Date
    assert window_filter(kept, D(2020, 1, 3), D(2020, 1, 3))["date"].to_list() == [D(2020, 1, 3)]
