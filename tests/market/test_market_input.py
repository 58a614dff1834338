"""Bad market input: a clear error naming file, row and column, and an unchanged warehouse.

Each case runs the real ``market_prices`` asset (year partition 2022) through ``dagster.materialize``
on an ephemeral instance, after a first good materialization; the warehouse must then be the same
table as before the failed run. Landing files go through the landing zone's ``accept`` first (a
run reads only accepted copies).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import dagster as dg
import polars as pl
import math

import pytest

import datetime as dt

from alloc_assets.core.market.landing import accept
from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.market.landing_names import LANDING_NAME
from alloc_assets.core.market.source import read_market_data
from alloc_assets.defs.market.assets import market_prices
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

DAY1, DAY2, DAY3 = "2022-12-21", "2022-12-22", "2022-12-23"
SYMS = ["AAA", "BBB", "CCC"]


def wide_csv(path: Path, rows: list[list[str]], header: list[str] | None = None) -> Path:
    header = header or ["date", *SYMS]
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


GOOD = [[DAY1, "10.0", "20.0", "30.0"], [DAY2, "10.5", "19.5", "30.25"], [DAY3, "10.4", "19.9", "30.5"]]


def run(files: list[str] | None, source: Path | None, start: str = "", end: str = "", raise_on_error=False):
    """Materialize the 2022 partition from ``source`` (and landing ``files``, accepted first)."""
    zone = LandingZone()
    copies = [str(accept(Path(f), zone.accepted(), dt.date.fromisoformat(LANDING_NAME.search(Path(f).name).group(1))))
              for f in files or []]
    resources = {"warehouse": DuckDBWarehouse(), "landing": zone,
                 "market_source": MarketDataSource(path=str(source) if source else "")}
    config = {"ops": {"market_prices": {"config": {"files": copies}}}}
    return dg.materialize([market_prices], instance=dg.DagsterInstance.ephemeral(), resources=resources,
                          partition_key="2022", run_config=config, raise_on_error=raise_on_error)


def snapshot() -> pl.DataFrame:
    return DuckDBWarehouse().query("SELECT * FROM market_prices ORDER BY date, symbol")


def side_tables() -> dict[str, pl.DataFrame]:
    """The benchmark and indicator tables (absent: empty): a rejection must leave them as they were too."""
    wh = DuckDBWarehouse()
    return {t: wh.query(f"SELECT * FROM {t} ORDER BY ALL") if wh.table_exists(t) else pl.DataFrame()
            for t in ("market_benchmark", "market_indicators")}


def failure_message(result) -> str:
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures, "the run should fail"
    data = failures[0].step_failure_data
    return (data.user_failure_data.description if data.user_failure_data else "") + " " + data.error.message


@pytest.fixture()
def stored(alloc_home, tmp_path):
    """A warehouse holding two good days, written through the asset."""
    src = wide_csv(tmp_path / "good.csv", GOOD[:2])
    result = run(None, src, DAY1, DAY2, raise_on_error=True)
    assert result.success
    before = snapshot()
    assert before.height == 6
    return before


def expect_rejected(tmp_path, before, *, source=None, files=None, start=DAY3, end=DAY3, contains=()):
    side = side_tables()
    result = run(files, source, start, end)
    assert not result.success
    message = failure_message(result)
    for fragment in contains:
        assert fragment in message, f"{fragment!r} not in message:\n{message}"
    after = snapshot()
    assert after.equals(before), "the warehouse changed after a rejected input"
    for table, frame in side_tables().items():
        assert frame.equals(side[table]), f"{table} changed after a rejected input"
    return message


def test_good_source_round_trip(stored, tmp_path):
    src = wide_csv(tmp_path / "good.csv", GOOD)
    assert run(None, src, DAY3, DAY3, raise_on_error=True).success
    after = snapshot()
    assert after.height == 9
    assert after.filter(pl.col("date") == pl.date(2022, 12, 23))["close"].to_list() == [10.4, 19.9, 30.5]


def test_missing_file(stored, tmp_path):
    expect_rejected(tmp_path, stored, source=tmp_path / "nope.csv", contains=("nope.csv", "does not exist"))


def test_empty_file(stored, tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    expect_rejected(tmp_path, stored, source=p, contains=("empty.csv", "empty"))


def test_truncated_csv(stored, tmp_path):
    p = tmp_path / "cut.csv"
    p.write_text("date,AAA,BBB,CCC\n2022-12-21,10,20,30\n2022-12-22,10.5,19")
    msg = expect_rejected(tmp_path, stored, source=p, start=DAY1, end=DAY2, contains=("cut.csv", "row 2", "truncated"))
    assert "column" in msg


def test_truncated_gzip(stored, tmp_path):
    p = tmp_path / "cut.csv.gz"
    p.write_bytes(gzip.compress(b"date,AAA,BBB,CCC\n2022-12-23,10,20,30\n" * 50)[:-20])
    expect_rejected(tmp_path, stored, source=p, contains=("cut.csv.gz", "truncated"))


def test_no_date_column(stored, tmp_path):
    p = wide_csv(tmp_path / "nodate.csv", [["2022-12-23", "1", "2", "3"]], header=["day", *SYMS])
    expect_rejected(tmp_path, stored, source=p, contains=("nodate.csv", "no date column", "row 0"))


def test_unparseable_date(stored, tmp_path):
    p = wide_csv(tmp_path / "baddate.csv", [GOOD[2], ["23/12/2022x", "1", "2", "3"]])
    expect_rejected(tmp_path, stored, source=p, contains=("baddate.csv", "row 2", "column 'date'", "23/12/2022x"))


def test_duplicate_date_symbol(stored, tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text("date,symbol,close\n2022-12-23,AAA,10\n2022-12-23,BBB,20\n2022-12-23,CCC,30\n2022-12-23,AAA,11\n")
    expect_rejected(tmp_path, stored, source=p, contains=("dup.csv", "row 1", "unique_date_symbol", "symbol"))


@pytest.mark.parametrize("value,fragment", [("", "NaN"), ("nan", "NaN"), ("inf", "inf"), ("0", "greater_than(0)"),
                                            ("-3.5", "greater_than(0)")])
def test_bad_price_values(stored, tmp_path, value, fragment):
    p = wide_csv(tmp_path / "vals.csv", [[DAY3, "10.4", value, "30.5"]])
    expect_rejected(tmp_path, stored, source=p,
                    contains=("vals.csv", "row 1", "column 'BBB'", "symbol=BBB", fragment, "prices_finite_positive"))


def test_non_numeric_price(stored, tmp_path):
    p = wide_csv(tmp_path / "text.csv", [[DAY3, "10.4", "abc", "30.5"]])
    expect_rejected(tmp_path, stored, source=p, contains=("text.csv", "row 1", "column 'BBB'", "'abc'", "not a number"))


def test_row_of_another_day_in_a_landing_file(stored, tmp_path):
    landing = tmp_path / "prices_2022-12-23.csv"
    wide_csv(landing, [[DAY3, "10.4", "19.9", "30.5"], [DAY2, "10.5", "19.5", "30.25"]])
    src = wide_csv(tmp_path / "good.csv", GOOD[:2])
    expect_rejected(tmp_path, stored, source=src, files=[str(landing)],
                    contains=("_2022-12-23.csv", "row 2", "column 'date'", "2022-12-22"))


def test_a_landing_file_adds_its_day_to_the_year(stored, tmp_path):
    landing = wide_csv(tmp_path / "prices_2022-12-23.csv", [GOOD[2]])
    src = wide_csv(tmp_path / "good.csv", GOOD[:2])
    assert run([str(landing)], src, raise_on_error=True).success
    after = snapshot()
    assert after.height == 9 and after.filter(pl.col("date") == pl.date(2022, 12, 23))["close"].to_list() == [10.4, 19.9, 30.5]


def test_mixed_wide_and_long(stored, tmp_path):
    p = tmp_path / "mixed.csv"
    p.write_text("date,symbol,close,AAA\n2022-12-23,BBB,20,10\n2022-12-23,CCC,30,10\n")
    expect_rejected(tmp_path, stored, source=p, contains=("mixed.csv", "column 'AAA'", "mixes long columns"))


def test_weekend_row(stored, tmp_path):
    p = wide_csv(tmp_path / "weekend.csv", [[DAY3, "10.4", "19.9", "30.5"], ["2022-12-24", "1", "2", "3"]])
    expect_rejected(tmp_path, stored, source=p, contains=("weekend.csv", "row 2", "not an NYSE trading day"))


def test_missing_session_is_not_a_silent_hole(stored, tmp_path):
    """A source must be complete over its own span: a day missing in the middle is an error."""
    src = wide_csv(tmp_path / "holes.csv", [GOOD[0], GOOD[2]])
    expect_rejected(tmp_path, stored, source=src, contains=("no_missing_sessions", "2022-12-22"))


def test_missing_symbol(stored, tmp_path):
    p = tmp_path / "long.csv"
    p.write_text("date,symbol,close\n2022-12-23,AAA,10\n2022-12-23,BBB,20\n")
    expect_rejected(tmp_path, stored, source=p, contains=("expected_symbols", "CCC", "2022-12-23"))


def test_failed_checks_reach_the_instance_with_offending_rows(stored, tmp_path):
    p = wide_csv(tmp_path / "vals.csv", [*GOOD[:2], [DAY3, "10.4", "-1", "30.5"]])
    result = run(None, p, DAY3, DAY3)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    bad = evals["prices_finite_positive"]
    assert not bad.passed and bad.severity == dg.AssetCheckSeverity.ERROR
    assert bad.metadata["failing_rows"].value == 1
    table = bad.metadata["offending_rows"].value
    assert "vals.csv" in table and "BBB" in table and "-1.0" in table


def test_return_jump_warns_but_stores(stored, tmp_path):
    p = wide_csv(tmp_path / "jump.csv", [*GOOD[:2], [DAY3, "10.4", "60.0", "30.5"]])  # BBB 19.5 -> 60: +208 %
    result = run(None, p, DAY3, DAY3, raise_on_error=True)
    evals = {e.check_name: e for e in result.get_asset_check_evaluations()}
    warn = evals["return_jumps"]
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    assert "BBB" in warn.metadata["offending_rows"].value
    assert snapshot().height == 9


def test_write_failure_rolls_back(alloc_home, tmp_path, monkeypatch):
    """An error in the middle of the write transaction leaves the old rows in place."""
    src = wide_csv(tmp_path / "good.csv", GOOD)
    assert run(None, src, DAY1, DAY3, raise_on_error=True).success
    before = snapshot()
    import resources.warehouse as wh

    calls = {"n": 0}
    real_insert = wh._insert

    def failing_insert(con, table, frame):
        calls["n"] += 1
        real_insert(con, table, frame)
        if table == "market_benchmark" or calls["n"] >= 1:
            raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(wh, "_insert", failing_insert)
    changed = wide_csv(tmp_path / "changed.csv", [[d[0], "1", "2", "3"] for d in GOOD])
    assert not run(None, changed, DAY1, DAY3).success
    assert snapshot().equals(before)


def test_reader_errors_carry_location(tmp_path):
    p = wide_csv(tmp_path / "x.csv", [[DAY3, "1", "oops", "3"]])
    with pytest.raises(MarketDataError) as info:
        read_market_data(p)
    err = info.value
    assert (Path(err.file).name, err.row, err.column) == ("x.csv", 1, "BBB")


def test_long_and_wide_read_the_same(tmp_path):
    wide = read_market_data(wide_csv(tmp_path / "w.csv", GOOD)).prices.select("date", "symbol", "close")
    long_path = tmp_path / "l.csv"
    long_path.write_text("date,symbol,close,volume\n" + "\n".join(
        f"{r[0]},{s},{v},100" for r in GOOD for s, v in zip(SYMS, r[1:])) + "\n")
    long = read_market_data(long_path).prices.select("date", "symbol", "close").sort("date", "symbol")
    assert wide.equals(long)


def test_parquet_source(tmp_path):
    frame = pl.DataFrame({"date": [DAY3] * 3, "symbol": SYMS, "close": [1.0, 2.0, 3.0]}).with_columns(
        pl.col("date").str.to_date())
    frame.write_parquet(tmp_path / "p.parquet")
    got = read_market_data(tmp_path / "p.parquet").prices
    assert got["close"].to_list() == [1.0, 2.0, 3.0]


# ------------------------------------------------------------------ files as people export them


def test_yahoo_ohlcv_exports_one_per_ticker_read_with_no_edits(tmp_path):
    """``Date,Open,High,Low,Close,Adj Close,Volume`` with ``M/D/YYYY`` dates: the ticker is the
    file name, the price is ``Adj Close`` (``Close`` when there is none)."""
    from alloc_assets.core.market.price_files import read_price_file

    (tmp_path / "SPY.csv").write_text("Date,Open,High,Low,Close,Adj Close,Volume\n"
                                      "1/12/1999,1,1,1,123.0,90.1,1000\n1/13/1999,1,1,1,124.5,91.2,1200\n")
    (tmp_path / "QQQ.csv").write_text("Date,Open,High,Low,Close,Volume\n1/12/1999,1,1,1,55.5,10\n1/13/1999,1,1,1,56.0,10\n")
    spy = read_price_file(tmp_path / "SPY.csv")
    assert spy["symbol"].to_list() == ["SPY", "SPY"] and spy["close"].to_list() == [90.1, 91.2]
    assert [str(d) for d in spy["date"].to_list()] == ["1999-01-12", "1999-01-13"]
    assert set(spy["source_column"].to_list()) == {"Adj Close"}
    qqq = read_price_file(tmp_path / "QQQ.csv")
    assert qqq["close"].to_list() == [55.5, 56.0] and set(qqq["source_column"].to_list()) == {"Close"}


def test_day_month_order_is_detected_or_named_as_a_setting(tmp_path):
    from alloc_assets.core.market.io_errors import MarketDataError
    from alloc_assets.core.market.price_files import read_price_file
    from alloc_assets.core.market.reader_settings import ReaderSettings

    (tmp_path / "EU.csv").write_text("Date,Close\n13/01/2021,10\n14/01/2021,11\n")
    assert [str(d) for d in read_price_file(tmp_path / "EU.csv")["date"].to_list()] == ["2021-01-13", "2021-01-14"]
    (tmp_path / "AMB.csv").write_text("Date,Close\n1/4/2021,10\n1/5/2021,11\n")
    with pytest.raises(MarketDataError) as err:
        read_price_file(tmp_path / "AMB.csv")
    assert "ALLOC_DATE_FORMAT" in str(err.value) and "AMB.csv" in str(err.value) and "row 1" in str(err.value)
    day_month = ReaderSettings(date_format="d/m/y")
    assert [str(d) for d in read_price_file(tmp_path / "AMB.csv", day_month)["date"].to_list()] == ["2021-04-01", "2021-05-01"]


def test_semicolon_files_with_decimal_commas_and_fred_dots(tmp_path):
    from alloc_assets.core.market.price_files import read_price_file

    (tmp_path / "p.csv").write_text("date;AAA;BBB\n2021-01-04;1.234,5;10,25\n2021-01-05;1.240,0;.\n")
    f = read_price_file(tmp_path / "p.csv").sort(["date", "symbol"])
    assert f["close"].to_list()[:3] == [1234.5, 10.25, 1240.0] and math.isnan(f["close"].to_list()[3])


def test_a_stray_carriage_return_names_the_file_and_line(tmp_path):
    from alloc_assets.core.market.io_errors import MarketDataError
    from alloc_assets.core.market.price_files import read_price_file

    (tmp_path / "cr.csv").write_bytes(b"date,AAA\n2021-01-04,1\r0\n2021-01-05,11\n")  # unquoted CR
    with pytest.raises(MarketDataError) as err:
        read_price_file(tmp_path / "cr.csv")
    assert "cr.csv" in str(err.value) and "carriage return" in str(err.value)


# ------------------------------------------------------------------ the same files through the asset: no edits, or a
# rejection with the message described and the warehouse unchanged


def _rows_mdy(sep: str = ",", dec: str = ".") -> list[str]:
    out = []
    for r in GOOD:
        d = dt.date.fromisoformat(r[0])
        out.append(sep.join([f"{d.month}/{d.day}/{d.year}", *[v.replace(".", dec) for v in r[1:]]]))
    return out


def test_ohlcv_exports_and_a_fred_indicator_are_stored_with_no_edits(stored, tmp_path):
    folder = tmp_path / "exports"
    (folder / "indicators").mkdir(parents=True)
    for j, s in enumerate(SYMS):
        lines = ["Date,Open,High,Low,Close,Adj Close,Volume"] + [
            f"{r[0]},1,1,1,{float(r[1 + j]) * 2},{r[1 + j]},100" for r in GOOD]
        (folder / f"{s}.csv").write_text("\n".join(lines) + "\n")
    (folder / "indicators" / "VIX.csv").write_text(
        "DATE,VIXCLS\n2022-12-21,21.97\n2022-12-22,.\n2022-12-23,20.87\n2022-12-26,.\n")  # 12-26: holiday
    assert run(None, folder, raise_on_error=True).success
    after = snapshot()
    assert after.filter(pl.col("date") == pl.date(2022, 12, 23))["close"].to_list() == [10.4, 19.9, 30.5]
    ind = DuckDBWarehouse().query("SELECT date, name, value FROM market_indicators ORDER BY date")
    assert [str(d) for d in ind["date"].to_list()] == ["2022-12-21", "2022-12-22", "2022-12-23"]
    assert ind["name"].to_list() == ["vix"] * 3
    v = ind["value"].to_list()
    assert v[0] == 21.97 and math.isnan(v[1]) and v[2] == 20.87


def test_a_semicolon_file_with_decimal_commas_is_stored_with_no_edits(stored, tmp_path):
    src = tmp_path / "eu.csv"
    src.write_text("\n".join(["date;" + ";".join(SYMS)] + [";".join([r[0], *[v.replace(".", ",") for v in r[1:]]])
                                                           for r in GOOD]) + "\n")
    assert run(None, src, raise_on_error=True).success
    assert snapshot().filter(pl.col("date") == pl.date(2022, 12, 23))["close"].to_list() == [10.4, 19.9, 30.5]


def test_ambiguous_dates_run_with_the_one_documented_setting(stored, tmp_path, monkeypatch):
    """12/1/2022, 12/2/2022, 12/5/2022 read both ways (no day above 12): rejected naming the setting,
    then stored as December with ALLOC_DATE_FORMAT=m/d/y (the parse cache is keyed by the setting)."""
    src = tmp_path / "us.csv"
    days = ["12/1/2022", "12/2/2022", "12/5/2022"]
    src.write_text("\n".join(["date," + ",".join(SYMS)] + [f"{d},10,20,30" for d in days]) + "\n")
    expect_rejected(tmp_path, stored, source=src, contains=("us.csv", "row 1", "ALLOC_DATE_FORMAT=m/d/y"))
    monkeypatch.setenv("ALLOC_DATE_FORMAT", "m/d/y")
    assert run(None, src, raise_on_error=True).success
    dates = sorted({str(d) for d in snapshot()["date"].to_list()})
    assert dates == ["2022-12-01", "2022-12-02", "2022-12-05"]


def test_a_semicolon_column_mixing_thousands_and_decimal_points_is_an_error_not_a_1000x_price(stored, tmp_path):
    src = tmp_path / "eu.csv"
    src.write_text("date;AAA;BBB;CCC\n" + "".join(f"{d};12.345;20;30\n" for d in (DAY1, DAY2, DAY3)))
    expect_rejected(tmp_path, stored, source=src, contains=("eu.csv", "column 'AAA'", "ALLOC_CSV_DECIMAL"))
    src.write_text("date;AAA;BBB;CCC\n" + f"{DAY1};12.345;20;30\n{DAY2};12.5;20;30\n{DAY3};12.4;20;30\n")
    assert run(None, src, raise_on_error=True).success  # a dot that cannot group thousands: decimals
    assert snapshot().filter(pl.col("symbol") == "AAA")["close"].to_list() == [12.345, 12.5, 12.4]


@pytest.mark.parametrize("case", ["delimiter", "decimal", "carriage_return", "index_among_prices",
                                  "volatility_index_column", "benchmark_ends_early"])
def test_rejected_inputs_name_the_fix_and_leave_the_warehouse_unchanged(stored, tmp_path, monkeypatch, case):
    header = "date," + ",".join(SYMS)
    if case == "delimiter":
        src = tmp_path / "p.csv"
        src.write_text("\n".join(["date;" + ";".join(SYMS)] + [";".join(r) for r in GOOD]) + "\n")
        monkeypatch.setenv("ALLOC_CSV_DELIMITER", ",")
        contains = ("p.csv", "ALLOC_CSV_DELIMITER=;")
    elif case == "decimal":
        src = tmp_path / "p.csv"
        src.write_text("\n".join([header, *[",".join([r[0], f'"{r[1].replace(".", ",")}"', *r[2:]]) for r in GOOD]]) + "\n")
        contains = ("p.csv", "row 1", "column 'AAA'", "ALLOC_CSV_DECIMAL=,")
    elif case == "carriage_return":
        src = tmp_path / "p.csv"
        src.write_bytes(("\n".join([header, *[",".join(r) for r in GOOD]]) + "\n").replace("10.5", "10\r.5").encode())
        contains = ("p.csv", "carriage return", "line")
    elif case == "index_among_prices":
        src = tmp_path / "exports"
        src.mkdir()
        wide_csv(src / "prices.csv", GOOD)
        (src / "^VIX.csv").write_text("Date,Open,High,Low,Close,Adj Close,Volume\n" +
                                      "".join(f"{r[0]},1,1,1,20,20,0\n" for r in GOOD))
        contains = ("^VIX.csv", "indicators/", "benchmark_")
    elif case == "volatility_index_column":
        src = wide_csv(tmp_path / "p.csv", [[*r, "20.1"] for r in GOOD], header=["date", *SYMS, "VIX"])
        contains = ("p.csv", "column 'VIX'", "indicators/")
    else:
        src = tmp_path / "data"
        src.mkdir()
        wide_csv(src / "prices.csv", GOOD)
        (src / "benchmark_IDX.csv").write_text(f"date,IDX\n{DAY1},100\n{DAY2},101\n")
        contains = ("benchmark_IDX.csv", "IDX", DAY3)
    expect_rejected(tmp_path, stored, source=src, contains=contains)
