"""The market-data readers (``core.market``) on files as people export them: indicators, benchmark
coverage, delimiters, decimal marks, thousands separators, BOM/CRLF and missing-value tokens.

Pure: each test writes small files into ``tmp_path`` and calls the reader directly (no Dagster).
Dates are real NYSE sessions: 2021-06-28 .. 2021-07-02 and 2021-07-06 are sessions, 2021-07-03/04 a
weekend and 2021-07-05 the Independence Day holiday. Expected values are the decimals written in
the files.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest

from alloc_assets.core.market.frames import INDICATOR_SCHEMA, MarketData
from alloc_assets.core.market.indicator_files import indicator_name, read_indicator_file
from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.market.price_files import read_price_file
from alloc_assets.core.market.reader_settings import ReaderSettings
from alloc_assets.core.market.source import read_market_data

D = dt.date
SESSIONS = ["2021-06-28", "2021-06-29", "2021-06-30", "2021-07-01", "2021-07-02"]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def prices_dir(root: Path, dates: list[str] = SESSIONS) -> Path:
    """A source directory with ``prices.csv`` (AAA, BBB) on ``dates``."""
    write(root / "prices.csv", "date,AAA,BBB\n" + "".join(f"{d},10.5,20.25\n" for d in dates))
    return root


def error_of(fn, *args, **kwargs) -> MarketDataError:
    with pytest.raises(MarketDataError) as info:
        fn(*args, **kwargs)
    return info.value


def values(frame: pl.DataFrame, name: str) -> list[float]:
    return frame.filter(pl.col("name") == name).sort("date")["value"].to_list()


# ------------------------------------------------------------------------------------------- indicators


def test_fred_indicator_file_is_named_after_the_file_with_exact_values_and_schema(tmp_path):
    p = write(tmp_path / "indicators" / "VIX.csv",
              "DATE,VIXCLS\n2021-06-30,15.83\n2021-07-01,15.48\n2021-07-02,15.07\n")
    frame, notes = read_indicator_file(p)
    assert dict(frame.schema) == INDICATOR_SCHEMA
    assert frame.columns == ["date", "name", "value", "source_file", "source_row", "source_column"]
    assert frame["name"].to_list() == ["vix", "vix", "vix"]
    assert frame["date"].to_list() == [D(2021, 6, 30), D(2021, 7, 1), D(2021, 7, 2)]
    assert frame["value"].to_list() == [15.83, 15.48, 15.07]
    assert frame["source_row"].to_list() == [1, 2, 3]
    assert set(frame["source_column"].to_list()) == {"VIXCLS"} and set(frame["source_file"].to_list()) == {str(p)}
    assert notes == []


def test_new_fred_observation_date_header(tmp_path):
    p = write(tmp_path / "BAA10Y.csv", "observation_date,BAA10Y\n2021-07-01,1.85\n2021-07-02,1.84\n")
    frame, _ = read_indicator_file(p)
    assert frame["name"].to_list() == ["baa10y", "baa10y"] and frame["value"].to_list() == [1.85, 1.84]


def test_yahoo_index_export_reads_adj_close_else_close(tmp_path):
    vix = write(tmp_path / "^VIX.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n"
                                       "2021-07-01,16.1,16.2,15.3,15.48,15.49,0\n2021-07-02,15.5,15.6,14.9,15.07,15.08,0\n")
    frame, _ = read_indicator_file(vix)
    assert frame["name"].to_list() == ["vix", "vix"] and frame["value"].to_list() == [15.49, 15.08]
    assert set(frame["source_column"].to_list()) == {"Adj Close"}
    vxn = write(tmp_path / "^VXN.csv", "Date,Open,High,Low,Close,Volume\n2021-07-01,20,21,19,19.75,0\n")
    frame, _ = read_indicator_file(vxn)
    assert frame["name"].to_list() == ["vxn"] and frame["value"].to_list() == [19.75]
    assert frame["source_column"].to_list() == ["Close"]


def test_names_one_column_after_the_file_several_after_their_columns():
    assert [indicator_name(t) for t in ("^VIX", "VIXCLS", "credit spread", "10Y yield", "__A-b__")] == [
        "vix", "vixcls", "credit_spread", "ind_10y_yield", "a_b"]


def test_file_names_and_column_names_normalised(tmp_path):
    one, _ = read_indicator_file(write(tmp_path / "credit spread.csv", "date,BAMLH0A0HYM2\n2021-07-01,3.1\n"))
    assert one["name"].to_list() == ["credit_spread"]
    many, _ = read_indicator_file(write(tmp_path / "rates.csv", "date,Credit Spread,10Y,T10Y2Y\n2021-07-01,3.1,1.45,1.2\n"))
    assert sorted(many["name"].to_list()) == ["credit_spread", "ind_10y", "t10y2y"]
    assert values(many, "credit_spread") == [3.1] and values(many, "ind_10y") == [1.45] and values(many, "t10y2y") == [1.2]
    assert dict(zip(many["name"].to_list(), many["source_column"].to_list())) == {
        "credit_spread": "Credit Spread", "ind_10y": "10Y", "t10y2y": "T10Y2Y"}


def test_rows_on_non_trading_days_are_dropped_with_a_note(tmp_path):
    p = write(tmp_path / "VIX.csv", "DATE,VIXCLS\n2021-07-02,15.07\n2021-07-03,15.1\n2021-07-04,15.2\n"
                                   "2021-07-05,15.3\n2021-07-06,16.44\n")
    frame, notes = read_indicator_file(p)
    assert frame["date"].to_list() == [D(2021, 7, 2), D(2021, 7, 6)] and frame["value"].to_list() == [15.07, 16.44]
    assert frame["source_row"].to_list() == [1, 5]
    assert notes == [f"indicator vix (file {p}): 3 rows on non-trading days skipped (first 2021-07-03)"]


def test_missing_values_on_sessions_are_kept_as_nan_with_a_note(tmp_path):
    p = write(tmp_path / "VIX.csv", "DATE,VIXCLS\n2021-06-29,16.02\n2021-06-30,.\n2021-07-01,\n2021-07-02,15.07\n")
    frame, notes = read_indicator_file(p)
    got = frame["value"].to_list()
    assert frame.height == 4 and got[0] == 16.02 and math.isnan(got[1]) and math.isnan(got[2]) and got[3] == 15.07
    assert notes == ["indicator vix: 2 trading days without a value (the last value carries forward)"]


@pytest.mark.parametrize("cell,fragment", [("inf", "'inf' is infinite"), ("-Infinity", "'-Infinity' is infinite"),
                                           ("abc", "'abc' is not a number")])
def test_infinite_or_text_values_name_file_row_and_column(tmp_path, cell, fragment):
    p = write(tmp_path / "VIX.csv", f"DATE,VIXCLS\n2021-07-01,15.48\n2021-07-02,{cell}\n")
    err = error_of(read_indicator_file, p)
    assert (Path(err.file).name, err.row, err.column) == ("VIX.csv", 2, "VIXCLS")
    assert fragment in str(err) and "row 2" in str(err) and "column 'VIXCLS'" in str(err)


def test_a_date_twice_names_file_row_and_the_date_column(tmp_path):
    p = write(tmp_path / "VIX.csv", "date,VIXCLS\n2021-07-01,15.48\n2021-07-02,15.07\n2021-07-01,15.5\n")
    err = error_of(read_indicator_file, p)
    assert (Path(err.file).name, err.row, err.column) == ("VIX.csv", 3, "date")
    assert "2021-07-01 appears twice (rows 1 and 3)" in str(err)


@pytest.mark.parametrize("stem", ["warm", "Date"])
def test_a_reserved_name_is_an_error(tmp_path, stem):
    p = write(tmp_path / f"{stem}.csv", "observation_date,X\n2021-07-01,1.5\n")
    err = error_of(read_indicator_file, p)
    assert f"{stem}.csv" in str(err) and f"'{stem.lower()}'" in str(err) and "reserved" in str(err)


def test_two_columns_with_one_name_are_an_error(tmp_path):
    p = write(tmp_path / "spreads.csv", "date,Credit Spread,credit_spread\n2021-07-01,1,2\n")
    err = error_of(read_indicator_file, p)
    assert err.column == "credit_spread" and "'Credit Spread' and 'credit_spread'" in str(err)


def test_two_files_with_one_name_are_an_error(tmp_path):
    src = prices_dir(tmp_path / "src")
    write(src / "indicators" / "VIX.csv", "DATE,VIXCLS\n2021-07-01,15.48\n")
    write(src / "indicators" / "^VIX.csv", "Date,Open,High,Low,Close,Volume\n2021-07-01,16,16,15,15.48,0\n")
    err = error_of(read_market_data, src)
    assert "'vix'" in str(err) and "VIX.csv" in str(err) and "^VIX.csv" in str(err)


def test_source_directory_reads_its_indicators_folder_never_as_prices(tmp_path):
    src = prices_dir(tmp_path / "src")
    write(src / "indicators" / "VIX.csv", "DATE,VIXCLS\n2021-06-30,15.83\n2021-07-01,.\n2021-07-02,15.07\n2021-07-05,15.2\n")
    write(src / "indicators" / "credit spread.csv", "date,BAMLH0A0HYM2\n2021-07-01,3.1\n")
    data = read_market_data(src)
    assert sorted(data.prices["symbol"].unique().to_list()) == ["AAA", "BBB"]
    assert data.files == (str(src / "prices.csv"),)
    ind = data.indicators
    assert ind is not None and dict(ind.schema) == INDICATOR_SCHEMA
    assert values(ind, "credit_spread") == [3.1]
    vix = values(ind, "vix")
    assert vix[0] == 15.83 and math.isnan(vix[1]) and vix[2] == 15.07
    assert data.notes == (
        f"indicator vix (file {src / 'indicators' / 'VIX.csv'}): 1 row on non-trading days skipped (first 2021-07-05)",
        "indicator vix: 1 trading day without a value (the last value carries forward)",
    )
    window = data.window("2021-07-01", "2021-07-02")
    assert window.indicators["date"].min() == D(2021, 7, 1) and window.indicators.height == 3
    assert window.notes == data.notes
    assert read_market_data(prices_dir(tmp_path / "plain")).indicators is None


def test_the_indicators_argument_adds_a_file_or_a_folder(tmp_path):
    src = prices_dir(tmp_path / "src")
    write(tmp_path / "extra" / "T10Y2Y.csv", "DATE,T10Y2Y\n2021-07-02,1.2\n")
    one = read_market_data(src / "prices.csv", indicators=tmp_path / "extra" / "T10Y2Y.csv")
    assert one.indicators["name"].to_list() == ["t10y2y"] and one.indicators["value"].to_list() == [1.2]
    folder = read_market_data(src, indicators=str(tmp_path / "extra"))
    assert folder.indicators["name"].to_list() == ["t10y2y"]
    err = error_of(read_market_data, src, indicators=tmp_path / "nope")
    assert "nope" in str(err) and "ALLOC_INDICATORS" in str(err)


def test_positional_construction_and_defaults_still_work():
    prices = pl.DataFrame({"date": [D(2021, 7, 1)], "symbol": ["AAA"], "close": [1.5]})
    data = MarketData(prices, None, {"AAA": "Tech"}, ("p.csv",))
    assert data.indicators is None and data.notes == () and data.files == ("p.csv",)
    assert data.window("2021-07-01", "2021-07-01").indicators is None


# ------------------------------------------------------------------------------ indices among the prices

INDEX_HINT_FRAGMENTS = ("indicators/", "never traded", "benchmark_<name>.csv")


@pytest.mark.parametrize("ticker", ["^VIX", "^GSPC"])
def test_a_yahoo_index_export_in_the_price_folder_is_an_error(tmp_path, ticker):
    src = prices_dir(tmp_path / "src")
    (src / "prices.csv").rename(src / "AAA.csv")
    write(src / f"{ticker}.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n2021-07-01,1,1,1,4300.5,4300.5,0\n")
    err = error_of(read_market_data, src)
    assert f"{ticker}.csv" in str(err) and f"'{ticker}' is an index" in str(err) and "not a tradeable asset" in str(err)
    for fragment in INDEX_HINT_FRAGMENTS:
        assert fragment in str(err)


def test_an_index_file_beside_a_prices_file_is_an_error_too(tmp_path):
    src = prices_dir(tmp_path / "src")
    write(src / "^VIX.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n2021-07-01,1,1,1,15.48,15.48,0\n")
    err = error_of(read_market_data, src)
    assert "^VIX.csv" in str(err) and "indicators/" in str(err)


@pytest.mark.parametrize("column", ["VIX", "vixcls", "VXV", "VIX3M", "VXN", "VVIX", "^GSPC"])
def test_a_volatility_index_price_column_is_an_error(tmp_path, column):
    p = write(tmp_path / "p.csv", f"date,AAA,{column}\n2021-07-01,10.5,15.48\n")
    err = error_of(read_price_file, p)
    assert (err.row, err.column) == (0, column) and "p.csv" in str(err) and "not a tradeable asset" in str(err)
    for fragment in INDEX_HINT_FRAGMENTS:
        assert fragment in str(err)


def test_a_volatility_index_symbol_in_a_long_file_names_its_row(tmp_path):
    p = write(tmp_path / "long.csv", "date,symbol,close\n2021-07-01,AAA,10.5\n2021-07-01,VIX,15.48\n")
    err = error_of(read_price_file, p)
    assert (err.row, err.column) == (2, "symbol") and "'VIX' is a volatility index" in str(err)


def test_a_benchmark_may_be_an_index(tmp_path):
    src = prices_dir(tmp_path / "src", SESSIONS[-2:])
    write(src / "benchmark_GSPC.csv", "Date,Open,High,Low,Close,Adj Close,Volume\n"
                                      "2021-07-01,1,1,1,4319.94,4319.94,0\n2021-07-02,1,1,1,4352.34,4352.34,0\n")
    data = read_market_data(src)
    assert data.benchmark["name"].to_list() == ["GSPC", "GSPC"] and data.benchmark["close"].to_list() == [4319.94, 4352.34]


# ----------------------------------------------------------------------------------- benchmark coverage


def test_a_benchmark_that_ends_before_the_prices_names_its_file_and_first_missing_date(tmp_path):
    src = prices_dir(tmp_path / "src")
    write(src / "sp500_index.csv", "date,SP500\n2021-06-25,4280.7\n2021-06-28,4290.61\n2021-06-29,4291.8\n"
                                   "2021-06-30,4297.5\n")
    err = error_of(read_market_data, src)
    msg = str(err)
    assert Path(err.file).name == "sp500_index.csv" and "file " + str(src / "sp500_index.csv") in msg
    assert "the benchmark SP500 has no close on 2021-07-01 (and 1 later price date)" in msg
    assert "it ends on 2021-06-30 but the prices run to 2021-07-02" in msg
    assert "equal-weight index of the universe" in msg and "Extend the benchmark file" in msg


def test_the_benchmark_file_named_is_the_one_of_the_last_benchmark_row(tmp_path):
    src = prices_dir(tmp_path / "src")
    write(src / "benchmark_a.csv", "date,SP500\n2021-06-28,4290.61\n2021-06-29,4291.8\n")
    write(src / "benchmark_b.csv", "date,SP500\n2021-06-30,4297.5\n2021-07-01,4319.94\n")
    err = error_of(read_market_data, src)
    assert Path(err.file).name == "benchmark_b.csv" and "no close on 2021-07-02" in str(err)
    assert "later price date" not in str(err)


def test_a_missing_benchmark_value_names_its_row(tmp_path):
    src = prices_dir(tmp_path / "src")
    write(src / "sp500_index.csv", "date,SP500\n" + "".join(
        f"{d},{'.' if d == '2021-06-29' else '4290.5'}\n" for d in SESSIONS))
    err = error_of(read_market_data, src)
    assert (Path(err.file).name, err.row, err.column) == ("sp500_index.csv", 2, "SP500")
    assert "no close on 2021-06-29" in str(err)


def test_benchmark_rows_outside_the_price_dates_are_fine(tmp_path):
    src = prices_dir(tmp_path / "src", SESSIONS[1:4])
    write(src / "sp500_index.csv", "date,SP500\n" + "".join(f"{d},4290.5\n" for d in SESSIONS))
    data = read_market_data(src)
    assert data.benchmark.height == 5 and data.prices["date"].n_unique() == 3


# --------------------------------------------------------------------------- delimiters and decimal marks


@pytest.mark.parametrize("setting,sep", [(";", ";"), ("tab", "\t"), ("\t", "\t"), ("TAB", "\t"), (",", ",")])
def test_the_delimiter_setting(tmp_path, setting, sep):
    p = write(tmp_path / "p.csv", sep.join(["date", "AAA", "BBB"]) + "\n" + sep.join(["2021-07-01", "10.5", "20.25"]) + "\n")
    f = read_price_file(p, ReaderSettings(delimiter=setting, decimal=".")).sort("symbol")
    assert f["symbol"].to_list() == ["AAA", "BBB"] and f["close"].to_list() == [10.5, 20.25]


def test_the_reader_ignores_the_environment_and_the_resource_layer_reads_it(tmp_path, monkeypatch):
    from resources.market_source import reader_settings

    monkeypatch.setenv("ALLOC_CSV_DELIMITER", "|")
    monkeypatch.setenv("ALLOC_CSV_DECIMAL", ",")
    monkeypatch.setenv("ALLOC_DATE_FORMAT", "d/m/y")
    p = write(tmp_path / "p.csv", "date,AAA\n2021-07-01,1.5\n")
    assert read_price_file(p)["close"].to_list() == [1.5]
    assert reader_settings() == ReaderSettings(delimiter="|", decimal=",", date_format="d/m/y")


def test_an_unknown_delimiter_setting_is_named(tmp_path):
    err = error_of(read_price_file, write(tmp_path / "p.csv", "date,AAA\n2021-07-01,1\n"), ReaderSettings(delimiter="|"))
    assert "ALLOC_CSV_DELIMITER='|'" in str(err) and "p.csv" in str(err)


def test_a_one_field_header_with_semicolon_rows_names_the_delimiter_setting(tmp_path):
    p = write(tmp_path / "semi.csv", "date;AAA;BBB\n2021-07-01;10,5;20\n")
    err = error_of(read_price_file, p, ReaderSettings(delimiter=","))
    msg = str(err)
    assert "semi.csv" in msg and "single field" in msg and "seems to use ';'" in msg
    assert "ALLOC_CSV_DELIMITER=;" in msg and err.column == "date;AAA;BBB"


def test_a_one_field_header_with_tab_separated_rows_names_the_delimiter_setting(tmp_path):
    p = write(tmp_path / "tabs.csv", "date\n2021-07-01\t10.5\t20\n")
    err = error_of(read_price_file, p)
    msg = str(err)
    assert "tabs.csv" in msg and "row 1" in msg and "column 'date'" in msg
    assert "seems to use tab" in msg and "ALLOC_CSV_DELIMITER=tab" in msg


@pytest.mark.parametrize("text,decimal", [
    ('date,AAA\n2021-07-01,"1,234.50"\n', None),       # comma file, quoted thousands
    ("date,AAA\n2021-07-01,1'234.50\n", None),          # Swiss grouping
    ("date;AAA\n2021-07-01;1.234,50\n", None),          # ';' sniffed: decimal comma
    ("date;AAA\n2021-07-01;1 234,50\n", None),          # space grouping, decimal comma
    ("date\tAAA\n2021-07-01\t1.234,50\n", ","),         # tab file with the decimal setting
    ('date,AAA\n2021-07-01,"1 234,50"\n', ","),
])
def test_thousands_separators(tmp_path, text, decimal):
    f = read_price_file(write(tmp_path / "p.csv", text), ReaderSettings(decimal=decimal))
    assert f["close"].to_list() == [1234.5]


def test_a_decimal_comma_in_a_point_file_names_row_column_and_the_setting(tmp_path):
    p = write(tmp_path / "p.csv", 'date,AAA,BBB\n2021-07-01,2.5,3\n2021-07-02,"1,5",3\n')
    err = error_of(read_price_file, p)
    msg = str(err)
    assert (Path(err.file).name, err.row, err.column) == ("p.csv", 2, "AAA")
    assert "row 2" in msg and "column 'AAA'" in msg and "'1,5'" in msg and "ALLOC_CSV_DECIMAL=," in msg
    assert read_price_file(p, ReaderSettings(decimal=",")).filter(pl.col("symbol") == "AAA")["close"].to_list() == [2.5, 1.5]


def test_an_unknown_decimal_setting_is_named(tmp_path):
    err = error_of(read_price_file, write(tmp_path / "p.csv", "date,AAA\n2021-07-01,1\n"), ReaderSettings(decimal="x"))
    assert "ALLOC_CSV_DECIMAL='x'" in str(err)


def test_decimal_comma_indicator_file(tmp_path):
    frame, _ = read_indicator_file(write(tmp_path / "VIX.csv", "date;VIXCLS\n2021-07-01;15,48\n2021-07-02;1.015,07\n"))
    assert frame["value"].to_list() == [15.48, 1015.07]


def test_bom_and_crlf_line_endings(tmp_path):
    p = tmp_path / "p.csv"
    p.write_bytes(b"\xef\xbb\xbfdate,AAA,BBB\r\n2021-07-01,10.5,20.25\r\n2021-07-02,10.75,20.5\r\n")
    f = read_price_file(p).sort("date", "symbol")
    assert f["symbol"].to_list() == ["AAA", "BBB", "AAA", "BBB"] and f["close"].to_list() == [10.5, 20.25, 10.75, 20.5]
    ind = tmp_path / "VIX.csv"
    ind.write_bytes(b"\xef\xbb\xbfDATE;VIXCLS\r\n2021-07-01;15,48\r\n2021-07-02;.\r\n")
    frame, notes = read_indicator_file(ind)
    got = frame["value"].to_list()
    assert frame["name"].to_list() == ["vix", "vix"] and got[0] == 15.48 and math.isnan(got[1])
    assert notes == ["indicator vix: 1 trading day without a value (the last value carries forward)"]


@pytest.mark.parametrize("token", [".", "null", "NULL", "", "NA", "N/A", "nan"])
def test_missing_value_tokens_are_nan(tmp_path, token):
    f = read_price_file(write(tmp_path / "p.csv", f"date,AAA,BBB\n2021-07-01,10.5,{token}\n"))
    got = dict(zip(f["symbol"].to_list(), f["close"].to_list()))
    assert got["AAA"] == 10.5 and math.isnan(got["BBB"])
    frame, notes = read_indicator_file(write(tmp_path / "VIX.csv", f"DATE,VIXCLS\n2021-07-01,{token}\n2021-07-02,15.07\n"))
    assert math.isnan(frame["value"][0]) and frame["value"][1] == 15.07
    assert notes == ["indicator vix: 1 trading day without a value (the last value carries forward)"]


def test_a_landing_day_file_read_alone_keeps_an_index_column_for_its_caller(tmp_path):
    """The asset splits a stored indicator (or the benchmark) off a landing file's columns; the
    same column in a source directory is an error."""
    day_file = write(tmp_path / "feed_2021-07-01.csv", "date,AAA,VIX\n2021-07-01,10.5,15.48\n")
    data = read_market_data(day_file)
    assert dict(zip(data.prices["symbol"].to_list(), data.prices["close"].to_list())) == {"AAA": 10.5, "VIX": 15.48}
    folder = tmp_path / "days"
    write(folder / "feed_2021-07-01.csv", "date,AAA,VIX\n2021-07-01,10.5,15.48\n")
    err = error_of(read_market_data, folder)
    assert "'VIX' is a volatility index" in str(err) and "feed_2021-07-01.csv" in str(err)
