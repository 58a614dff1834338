"""Reading market data files into one long frame, with errors that name file, row and column.

Pure (no Dagster import). Formats (the public contract):

- wide: a ``date`` (or ``Date``) column, then one column per symbol of adjusted closes;
- long: ``date, symbol, close`` (extra columns named by the schema: ``open, high, low, volume``);
- optional ``sectors.csv`` (``symbol, sector``) beside the prices;
- a directory laid out like the bundled set: ``prices*`` (the universe), ``sp500_index*`` or
  ``benchmark*`` (the benchmark index, one value column), ``sectors.csv``;
- any other directory: every ``*.csv``, ``*.csv.gz`` and ``*.parquet`` in it is prices;
- landing files ``*_YYYY-MM-DD.csv|.parquet`` hold one trading day: any other date in them is an error;
- indicators (VIX, credit spreads, yields: regime inputs, never traded): every data file in an
  ``indicators/`` folder of the source directory, or in the ``indicators`` argument of
  :func:`read_market_data`, read by :func:`read_indicator_file` into ``MarketData.indicators``.
  An index dropped among the prices (a Yahoo ``^`` symbol such as ``^VIX``/``^GSPC``, or a
  volatility index column such as ``VIX``) is an error: it is not a tradeable asset.

CSV settings (environment): ``ALLOC_CSV_DELIMITER`` (``,`` ``;`` ``tab``) and ``ALLOC_CSV_DECIMAL``
(``.`` or ``,``); unset, a ``;`` (or tab) in the header picks that delimiter, and a ``;`` file
writes decimals with a comma. Thousands separators (``1,234.50``, ``1.234,50``, ``1 234,50``,
``1'234.50``) are read; a UTF-8 BOM and CRLF line endings are fine; ``.``, ``NA``, ``N/A``,
``null``, ``nan`` and an empty cell are missing values (NaN). ``ALLOC_DATE_FORMAT`` decides
ambiguous day/month dates.

Row numbers in messages count data rows from 1 (the header is line 1, so row ``r`` is line ``r+1``).
Structural problems (missing/empty/truncated file, no date column, unparseable dates or numbers, a
mix of formats) raise :class:`MarketDataError` here; value problems (NaN, inf, zero or negative
prices, duplicates, dates outside the partition) are left in the frame with their provenance
(``source_file``, ``source_row``) for the schema checks to report row by row.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from alloc_assets.core.market.calendar import CALENDAR_END, CALENDAR_START, trading_sessions

DATE_COLUMN_NAMES = ("date", "Date", "DATE")
#: Date columns of an indicator file (case-insensitive): FRED writes ``DATE`` or ``observation_date``.
INDICATOR_DATE_NAMES = ("date", "observation_date")
LONG_REQUIRED = ("symbol", "close")
LONG_EXTRAS = ("open", "high", "low", "volume")
MISSING_TOKENS = {"", ".", "nan", "NaN", "NAN", "na", "NA", "N/A", "n/a", "#N/A", "null", "NULL", "Null", "None"}
OHLCV_COLUMNS = ("open", "high", "low", "close", "adj close", "volume")
DATE_FORMATS = {"iso": "ISO8601", "m/d/y": "%m/%d/%Y", "d/m/y": "%d/%m/%Y"}
LANDING_NAME = re.compile(r"_(\d{4}-\d{2}-\d{2})\.(csv|csv\.gz|parquet)$")
TICKER_LIKE = re.compile(r"^[A-Z0-9][A-Z0-9.\-^]{0,11}$")
DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet")
#: Volatility indices: regime inputs, never a tradeable asset (a price column of that name is an error).
VOLATILITY_INDICES = frozenset({"VIX", "VIXCLS", "VXV", "VIX3M", "VXN", "VVIX"})
#: Names an indicator may not take (they are columns of the frames that consume indicators).
RESERVED_INDICATOR_NAMES = frozenset({"date", "warm"})
INDICATOR_SCHEMA = {"date": pl.Date, "name": pl.Utf8, "value": pl.Float64, "source_file": pl.Utf8,
                    "source_row": pl.Int64, "source_column": pl.Utf8}
INDEX_HINT = ("Move it to indicators/ (a regime input, never traded) or name it benchmark_<name>.csv to use it as "
              "the benchmark.")
BENCHMARK_HINT = ("Extend the benchmark file, or remove it to use the equal-weight index of the universe (stated as "
                  "a fallback in the report).")
DELIMITERS = {",": ",", ";": ";", "\t": "\t", "\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";"}
DELIMITER_LABELS = {",": "','", ";": "';'", "\t": "tab"}
DELIMITER_TOKENS = {",": ",", ";": ";", "\t": "tab"}
DECIMALS = {".": ".", ",": ",", "dot": ".", "point": ".", "comma": ","}
# thousands separators: the same one between every group of three digits
_GROUP_SEPARATORS = {".": ",' \u00a0\u202f", ",": ".' \u00a0\u202f"}
# (the first group never starts with 0: "0,125" is a decimal comma, not 125)
_GROUPED = {d: re.compile(rf"^[+-]?[1-9]\d{{0,2}}(?P<sep>[{seps}])\d{{3}}(?:(?P=sep)\d{{3}})*(?:\{d}\d+)?$")
            for d, seps in _GROUP_SEPARATORS.items()}
_PLAIN_COMMA_DECIMAL = re.compile(r"^[+-]?\d*,\d+$")
_DOT_DECIMAL_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+\.\d+$")


class MarketDataError(ValueError):
    """Bad market data input; the message says what, where (file, row, column) and what to do."""

    def __init__(self, problem: str, file: str | Path | None = None, row: int | None = None,
                 column: str | None = None, hint: str = "Fix the file and run again; nothing was stored."):
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.problem = problem
        where = []
        if file is not None:
            where.append(f"file {self.file}")
        if row is not None:
            where.append(f"row {row} (line {row + 1})")
        if column is not None:
            where.append(f"column '{column}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {problem}. {hint}" if prefix else f"{problem}. {hint}")


@dataclass(frozen=True)
class MarketData:
    """Long prices with provenance, the optional benchmark, sectors and indicators.

    ``prices``: polars frame ``date (Date), symbol (Utf8), close (Float64)`` plus provenance
    ``source_file, source_row, source_column`` (the file column the value came from); ``benchmark``: ``date, name, close, source_file, source_row`` or None;
    ``sectors``: symbol -> sector; ``files``: the price files read.
    ``indicators``: ``date (Date), name (Utf8), value (Float64), source_file, source_row (Int64),
    source_column`` (series never traded, e.g. VIX; NaN where the file had no value on a session)
    or None when there are none; ``notes``: what the reader did that a person should know (rows
    on non-trading days skipped, sessions without a value).
    """

    prices: pl.DataFrame
    benchmark: pl.DataFrame | None = None
    sectors: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    indicators: pl.DataFrame | None = None
    notes: tuple[str, ...] = ()

    def window(self, start: dt.date | str, end: dt.date | str) -> "MarketData":
        """Rows dated in [start, end] (``datetime.date`` or ISO strings)."""
        s, e = pd.Timestamp(start).date(), pd.Timestamp(end).date()
        keep = (pl.col("date") >= s) & (pl.col("date") <= e)
        bench = None if self.benchmark is None else self.benchmark.filter(keep)
        ind = None if self.indicators is None else self.indicators.filter(keep)
        return MarketData(self.prices.filter(keep), bench, self.sectors, self.files, ind, self.notes)


# --------------------------------------------------------------------------------------------
# settings

def _delimiter_setting(path: Path) -> str | None:
    """``ALLOC_CSV_DELIMITER``: ``,``, ``;``, a tab (``tab`` or ``\\t``); None when unset."""
    raw = os.environ.get("ALLOC_CSV_DELIMITER", "")
    if raw == "\t":
        return "\t"
    key = raw.strip().lower()
    if not key:
        return None
    if key not in DELIMITERS:
        raise MarketDataError(f"ALLOC_CSV_DELIMITER={raw!r} is not a delimiter this reader knows", path,
                              hint="Set ALLOC_CSV_DELIMITER to ',', ';' or 'tab', or unset it to take the delimiter "
                                   "from the header.")
    return DELIMITERS[key]


def _decimal_setting(path: Path) -> str | None:
    """``ALLOC_CSV_DECIMAL``: ``.`` or ``,``; None when unset."""
    raw = os.environ.get("ALLOC_CSV_DECIMAL", "")
    key = raw.strip().lower()
    if not key:
        return None
    if key not in DECIMALS:
        raise MarketDataError(f"ALLOC_CSV_DECIMAL={raw!r} is not a decimal mark", path,
                              hint="Set ALLOC_CSV_DECIMAL to '.' or ',', or unset it (',' for ';' files, else '.').")
    return DECIMALS[key]


# --------------------------------------------------------------------------------------------
# cells

def _read_csv_table(path: Path) -> tuple[list[str], list[list[str]], str]:
    """Header, rows (strings) and the decimal mark of a CSV (``.gz`` allowed); structural errors raised."""
    if not path.exists():
        raise MarketDataError("the file does not exist", path, hint="Check ALLOC_MARKET_DATA or the landing path.")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    except (EOFError, gzip.BadGzipFile, OSError) as exc:
        raise MarketDataError(f"the compressed file is truncated or corrupt ({exc})", path) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MarketDataError(f"the file is not UTF-8 text ({exc.reason} at byte {exc.start})", path) from exc
    if not text.strip():
        raise MarketDataError("the file is empty (no header, no rows)", path)
    lines = text.splitlines()
    first = lines[0]
    delimiter = _delimiter_setting(path)
    if delimiter is None:
        delimiter = max((";", "\t", ","), key=first.count) if any(d in first for d in (";", "\t")) else ","
    decimal = _decimal_setting(path) or ("," if delimiter == ";" else ".")
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter)]
    except csv.Error as exc:  # e.g. a stray carriage return inside a field
        line = text[: text.find("\r")].count("\n") + 1 if "\r" in text else None
        raise MarketDataError(f"the CSV reader stopped: {exc} (a stray carriage return? save the file with "
                              "Unix or Windows line endings)", path, row=line) from exc
    header = [h.strip() for h in rows[0]]
    if len(header) == 1:
        _check_single_field_header(path, header[0], first, next((ln for ln in lines[1:] if ln.strip()), ""),
                                   delimiter)
    body = rows[1:]
    # A trailing blank line is fine; blank lines inside are not rows.
    body = [r for r in body if any(c.strip() for c in r)]
    if not body:
        raise MarketDataError("the file has a header but no data rows", path)
    width = len(header)
    for i, r in enumerate(body, start=1):
        if len(r) != width:
            what = "truncated" if len(r) < width else "malformed"
            raise MarketDataError(
                f"row has {len(r)} fields but the header has {width}: the file looks {what}",
                path, row=i, column=header[min(len(r), width) - 1] if r else header[0])
    return header, body, decimal


def _check_single_field_header(path: Path, name: str, header_line: str, data_line: str, delimiter: str) -> None:
    """A header of one field while the header or the rows split on another delimiter: the delimiter is wrong."""
    for cand in (";", "\t", ","):
        if cand == delimiter:
            continue
        in_header = cand in header_line
        if in_header or (cand != "," and cand in data_line):
            label = DELIMITER_LABELS[cand]
            where = "header" if in_header else "data rows"
            raise MarketDataError(
                f"the header is a single field ({name!r}) read with the delimiter {DELIMITER_LABELS[delimiter]}, but "
                f"the {where} split on {label}: the file seems to use {label} as its delimiter",
                path, row=0 if in_header else 1, column=name,
                hint=f"Set ALLOC_CSV_DELIMITER={DELIMITER_TOKENS[cand]} (or unset it: the reader then takes the "
                     "delimiter from the header).")


def _read_csv_cells(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV (``.gz`` allowed) as strings; structural errors raised."""
    header, body, _ = _read_csv_table(path)
    return header, body


def _read_parquet_cells(path: Path) -> tuple[list[str], list[list[str]], pl.DataFrame]:
    if not path.exists():
        raise MarketDataError("the file does not exist", path, hint="Check ALLOC_MARKET_DATA or the landing path.")
    if path.stat().st_size == 0:
        raise MarketDataError("the file is empty (0 bytes)", path)
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several error types for a bad parquet file
        raise MarketDataError(f"not a readable Parquet file ({type(exc).__name__}: {exc})", path) from exc
    if frame.height == 0:
        raise MarketDataError("the file has columns but no data rows", path)
    return list(frame.columns), [], frame


def _read_table(path: Path) -> tuple[pd.DataFrame, str]:
    """A CSV or Parquet file as a pandas table (CSV cells as strings) and its decimal mark."""
    if path.name.endswith(".parquet"):
        _, _, frame = _read_parquet_cells(path)
        return frame.to_pandas(), _decimal_setting(path) or "."
    header, body, decimal = _read_csv_table(path)
    return pd.DataFrame(body, columns=header, dtype=object), decimal


# --------------------------------------------------------------------------------------------
# parsing

def _parse_dates(values: pd.Series, path: Path, column: str) -> np.ndarray:
    """ISO dates, or ``M/D/YYYY`` / ``D/M/YYYY`` detected when only one of them reads every row;
    ``ALLOC_DATE_FORMAT`` (``iso``, ``m/d/y``, ``d/m/y``) decides when both do."""
    text = values.astype(str).str.strip()
    setting = os.environ.get("ALLOC_DATE_FORMAT", "").strip().lower()
    if setting and setting not in DATE_FORMATS:
        raise MarketDataError(f"ALLOC_DATE_FORMAT={setting!r} is not one of {', '.join(DATE_FORMATS)}", path, column=column)
    formats = [DATE_FORMATS[setting]] if setting else list(DATE_FORMATS.values())
    good = []
    for fmt in formats:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        if not parsed.isna().any():
            good.append((fmt, parsed))
    if len(good) == 1 or (good and good[0][0] == "ISO8601"):
        return good[0][1].dt.normalize().to_numpy().astype("datetime64[D]")
    if len(good) > 1:
        raise MarketDataError(f"dates like {text.iloc[0]!r} read both as month/day and day/month (no day above 12)",
                              path, row=1, column=column, hint="Set ALLOC_DATE_FORMAT=m/d/y or ALLOC_DATE_FORMAT=d/m/y.")
    parsed = pd.to_datetime(text, format=formats[0], errors="coerce")
    i = int(np.flatnonzero(parsed.isna().to_numpy())[0])
    expected = "YYYY-MM-DD, M/D/YYYY or D/M/YYYY" if not setting else f"{setting} (ALLOC_DATE_FORMAT)"
    raise MarketDataError(f"cannot parse date {text.iloc[i]!r} (expected {expected})", path, row=i + 1, column=column)


def _normalise_numbers(text: pd.Series, decimal: str) -> pd.Series:
    """Number text as Python reads it: thousands separators dropped, a decimal comma made a point.

    With ``decimal=','`` a value without a comma and without groups of three (``1.5``) is read as
    written (a dot decimal), as before the setting existed."""
    grouped = text.str.fullmatch(_GROUPED[decimal]).fillna(False).astype(bool)
    seps = re.escape(_GROUP_SEPARATORS[decimal])
    out = text.where(~grouped, text.str.replace(f"[{seps}]", "", regex=True))
    if decimal == ",":
        comma = grouped | text.str.fullmatch(_PLAIN_COMMA_DECIMAL).fillna(False).astype(bool)
        out = out.where(~comma, out.str.replace(",", ".", regex=False))
    return out


def _parse_numbers(values: pd.Series, path: Path, column: str, decimal: str = ".", what: str = "price") -> np.ndarray:
    """Floats; missing tokens become NaN (reported later by the schema), text is an error here.

    ``decimal`` is the file's decimal mark (``ALLOC_CSV_DECIMAL``); thousands separators are read."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    text = values.astype(str).str.strip()
    missing = text.isin(MISSING_TOKENS) | values.isna()
    decimal = _column_decimal(text, missing, decimal, _decimal_setting(path) is not None, path, column, what)
    cleaned = text.where(~missing, "nan")
    if decimal == ",":
        cleaned = _normalise_numbers(cleaned, decimal)
    try:
        # numpy's str -> float is correctly rounded (the stored double is the decimal in the file).
        return cleaned.to_numpy(dtype=str).astype(np.float64)
    except ValueError:
        pass
    cleaned = _normalise_numbers(cleaned, decimal) if decimal == "." else cleaned
    try:
        return cleaned.to_numpy(dtype=str).astype(np.float64)
    except ValueError:
        parsed = pd.to_numeric(pd.Series(cleaned.to_numpy(dtype=str)), errors="coerce")
        bad = parsed.isna().to_numpy() & ~missing.to_numpy()
        if not bad.any():  # a token numpy refuses but pandas reads: report the first numpy refuses
            bad = ~missing.to_numpy() & np.array([not _is_float(c) for c in cleaned.to_numpy(dtype=str)])
        i = int(np.flatnonzero(bad)[0])
    cell = text.iloc[i]
    if decimal == "." and _PLAIN_COMMA_DECIMAL.match(cell):
        raise MarketDataError(
            f"{what} {cell!r} is not a number with '.' as the decimal mark (it looks like a decimal comma)",
            path, row=i + 1, column=column,
            hint="Set ALLOC_CSV_DECIMAL=, if the file writes decimals with a comma (1,5 for 1.5); thousands "
                 "separators are read with either setting (1,234.50 with '.', 1.234,50 with ',').")
    if decimal == "," and _DOT_DECIMAL_GROUPED.match(cell):
        raise MarketDataError(
            f"{what} {cell!r} is not a number with ',' as the decimal mark (it looks like a decimal point)",
            path, row=i + 1, column=column,
            hint="Set ALLOC_CSV_DECIMAL=. if the file writes decimals with a point (1,234.50 for 1234.5).")
    raise MarketDataError(f"{what} {cell!r} is not a number", path, row=i + 1, column=column)


def _column_decimal(text: pd.Series, missing: pd.Series, decimal: str, explicit: bool, path: Path, column: str,
                    what: str) -> str:
    """The decimal mark of one column when it was sniffed (``;`` files: a comma), decided from the
    column's own cells so that ``12.345`` is never read as 12345 in one row and ``12.5`` as 12.5 in
    the next: commas present -> a comma decimal (a dot must then group thousands: ``1.234,5``);
    no comma and a dot that cannot group thousands (``12.5``) -> a dot decimal; dots that all could
    group thousands (``12.345``) and no comma -> ambiguous, an error naming ``ALLOC_CSV_DECIMAL``."""
    if explicit or decimal != ",":
        return decimal
    cells = text[~missing.to_numpy()]
    has_comma = cells.str.contains(",", regex=False)
    has_dot = cells.str.contains(".", regex=False)
    grouped = cells.str.fullmatch(_GROUPED[","]).fillna(False).astype(bool)
    if has_comma.any():
        mixed = has_dot & ~grouped
        if mixed.any():
            i = int(np.flatnonzero(mixed.to_numpy())[0])
            raise MarketDataError(
                f"{what} {cells.iloc[i]!r} writes its decimals with a point while other rows of the column use a "
                "comma", path, row=int(cells.index[i]) + 1, column=column,
                hint="Set ALLOC_CSV_DECIMAL=, or ALLOC_CSV_DECIMAL=. to say which mark the file uses, and make the "
                     "column consistent.")
        return ","
    if not has_dot.any():
        return ","  # whole numbers: either mark reads them the same
    if (has_dot & ~grouped).any():
        return "."  # a dot that cannot group thousands (12.5): the column writes decimals with a point
    i = int(np.flatnonzero(has_dot.to_numpy())[0])
    cell = cells.iloc[i]
    raise MarketDataError(
        f"{what} {cell!r} could be {cell.replace('.', '')} (a dot between thousands) or {cell} (a decimal point): "
        "every value of the column with a dot has exactly three digits after it", path,
        row=int(cells.index[i]) + 1, column=column,
        hint="Set ALLOC_CSV_DECIMAL=, (the dot groups thousands) or ALLOC_CSV_DECIMAL=. (the dot is the decimal).")


def _is_float(text: str) -> bool:
    try:
        np.array([text]).astype(np.float64)
    except ValueError:
        return False
    return True


def _date_column(header: list[str], path: Path, names: Iterable[str] = DATE_COLUMN_NAMES,
                 case_insensitive: bool = False) -> str:
    wanted = {n.lower() for n in names} if case_insensitive else set(names)
    for name in header:
        key = name.strip().lower() if case_insensitive else name.strip()
        if key in wanted:
            return name
    expected = " or ".join(f"'{n}'" for n in names) if case_insensitive else "'date' or 'Date'"
    raise MarketDataError(
        f"no date column (expected {expected}); columns found: {', '.join(header[:8])}"
        + (" ..." if len(header) > 8 else ""), path, row=0)


def _looks_like_symbol_column(name: str, values: pd.Series) -> bool:
    if not TICKER_LIKE.match(name):
        return False
    text = values.astype(str).str.strip()
    text = text[~text.isin(MISSING_TOKENS)]
    return len(text) == 0 or pd.to_numeric(text, errors="coerce").notna().all()


def _file_stem(path: Path) -> str:
    """The file name without its data suffix (``^VIX.csv.gz`` -> ``^VIX``)."""
    for suffix in DATA_SUFFIXES[::-1]:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def _is_ohlcv(lower: dict[str, str], date_col: str) -> bool:
    """One ticker's OHLCV export (Yahoo style): no symbol column, a close, only OHLCV columns."""
    return ("symbol" not in lower and ("close" in lower or "adj close" in lower)
            and set(lower) - {date_col.lower()} <= set(OHLCV_COLUMNS))


def _index_problem(ticker: str) -> str | None:
    """Why a price ticker is an index rather than a tradeable asset (None: it may be one)."""
    t = ticker.strip()
    if t.startswith("^"):
        return f"'{t}' is an index (a Yahoo '^' symbol), not a tradeable asset"
    if t.upper() in VOLATILITY_INDICES:
        return f"'{t}' is a volatility index, not a tradeable asset"
    return None


def _reject_index(ticker: str, path: Path, row: int | None, column: str | None) -> None:
    problem = _index_problem(ticker)
    if problem:
        raise MarketDataError(problem, path, row=row, column=column, hint=INDEX_HINT)


def read_price_file(path: str | Path) -> pl.DataFrame:
    """One price file (wide or long, CSV or Parquet) as long rows with provenance.

    An index (a ``^`` ticker such as ``^VIX``, or a volatility index such as ``VIX``) is an error."""
    return _read_series_file(Path(path), tradeable=True)


def _read_series_file(path: Path, tradeable: bool) -> pl.DataFrame:
    table, decimal = _read_table(path)
    header = list(table.columns)
    date_col = _date_column(header, path)
    lower = {c.lower(): c for c in table.columns}
    if _is_ohlcv(lower, date_col):
        # one ticker's OHLCV export (Yahoo style): the ticker is the file name; Adj Close when present
        price = lower.get("adj close", lower.get("close"))
        ticker = path.name.split(".")[0]
        if tradeable:
            _reject_index(ticker, path, None, None)
        dates = _parse_dates(table[date_col], path, date_col)
        return pl.DataFrame({
            "date": dates, "symbol": [ticker] * len(table),
            "close": _parse_numbers(table[price], path, price, decimal),
            "source_file": [str(path)] * len(table), "source_row": np.arange(1, len(table) + 1),
            "source_column": [price] * len(table),
        }, schema_overrides={"date": pl.Date})
    is_long = any(k in lower for k in LONG_REQUIRED)
    if is_long:
        for req in LONG_REQUIRED:
            if req not in lower:
                raise MarketDataError(
                    f"long format needs columns date, symbol, close; '{req}' is missing", path, row=0)
        known = {date_col, lower["symbol"], lower["close"], *(lower[k] for k in LONG_EXTRAS if k in lower)}
        for col in table.columns:
            if col not in known and _looks_like_symbol_column(col, table[col]):
                raise MarketDataError(
                    f"the file mixes long columns (symbol, close) with a wide price column '{col}'; "
                    "use one format per file: long date,symbol,close or wide date,<one column per symbol>",
                    path, row=0, column=col)
        dates = _parse_dates(table[date_col], path, date_col)
        symbols = table[lower["symbol"]].astype(str).str.strip().to_numpy()
        empty_sym = np.flatnonzero(np.isin(symbols, list(MISSING_TOKENS)))
        if len(empty_sym):
            raise MarketDataError("empty symbol", path, row=int(empty_sym[0]) + 1, column=lower["symbol"])
        if tradeable:
            for sym in pd.unique(symbols):
                if _index_problem(str(sym)):
                    first = int(np.flatnonzero(symbols == sym)[0]) + 1
                    _reject_index(str(sym), path, first, lower["symbol"])
        close = _parse_numbers(table[lower["close"]], path, lower["close"], decimal)
        rows = np.arange(1, len(table) + 1)
        return pl.DataFrame({
            "date": dates, "symbol": symbols.astype(str), "close": close,
            "source_file": [str(path)] * len(table), "source_row": rows,
            "source_column": [lower["close"]] * len(table),
        }, schema_overrides={"date": pl.Date})
    value_cols = [c for c in table.columns if c != date_col]
    if not value_cols:
        raise MarketDataError("wide format needs one column per symbol after the date column; none found", path, row=0)
    dups = pd.Index(value_cols)[pd.Index(value_cols).duplicated()]
    if len(dups):
        raise MarketDataError(f"symbol column '{dups[0]}' appears twice in the header", path, row=0, column=str(dups[0]))
    if tradeable:
        for c in value_cols:
            _reject_index(str(c), path, 0, str(c))
    dates = _parse_dates(table[date_col], path, date_col)
    n = len(table)
    blocks = [_parse_numbers(table[c], path, c, decimal) for c in value_cols]
    return pl.DataFrame({
        "date": np.tile(dates, len(value_cols)),
        "symbol": np.repeat(np.array(value_cols, dtype=str), n),
        "close": np.concatenate(blocks),
        "source_file": [str(path)] * (n * len(value_cols)),
        "source_row": np.tile(np.arange(1, n + 1), len(value_cols)),
        "source_column": np.repeat(np.array(value_cols, dtype=str), n),
    }, schema_overrides={"date": pl.Date}).sort(["date", "symbol"])


def read_benchmark_file(path: str | Path) -> pl.DataFrame:
    """A benchmark index file (wide, one value column; its header names the index). An OHLCV
    export named ``benchmark_<name>.csv`` is named ``<name>``; a ``^`` index is fine here."""
    path = Path(path)
    long = _read_series_file(path, tradeable=False)
    names = long["symbol"].unique().to_list()
    if len(names) != 1:
        raise MarketDataError(f"a benchmark file holds one index column, found {len(names)}: {names[:5]}", path, row=0)
    if names[0].startswith("benchmark_") and len(names[0]) > len("benchmark_"):
        long = long.with_columns(pl.lit(names[0][len("benchmark_"):]).alias("symbol"))
    return long.rename({"symbol": "name"}).select("date", "name", "close", "source_file", "source_row", "source_column")


def read_sectors_file(path: str | Path) -> dict[str, str]:
    path = Path(path)
    header, body = _read_csv_cells(path)
    lower = [h.lower() for h in header]
    if "symbol" not in lower or "sector" not in lower:
        raise MarketDataError("sectors.csv needs columns symbol, sector", path, row=0)
    si, ki = lower.index("symbol"), lower.index("sector")
    return {r[si].strip(): r[ki].strip() for r in body}


# --------------------------------------------------------------------------------------------
# indicators

def indicator_name(text: str, *, strict: bool = True) -> str:
    """An indicator's name from a file stem or column: lower case ``[a-z0-9_]`` (other runs of
    characters become ``_``, leading/trailing ``_`` dropped), ``ind_`` before a leading digit.
    ``^VIX`` -> ``vix``, ``credit spread`` -> ``credit_spread``, ``10Y`` -> ``ind_10y``.
    ``strict``: an empty result raises ``ValueError`` (else it is returned empty)."""
    name = re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
    if name and name[0].isdigit():
        name = f"ind_{name}"
    if strict and not name:
        raise ValueError(f"{text!r} gives an empty indicator name")
    return name


def _name_or_error(text: str, path: Path, column: str | None) -> str:
    name = indicator_name(text, strict=False)
    if not name:
        raise MarketDataError(f"{text!r} gives no indicator name (no letter or digit)", path, row=0, column=column,
                              hint="Name the file (one value column) or the column (several) with letters or digits.")
    if name in RESERVED_INDICATOR_NAMES:
        reserved = ", ".join(sorted(RESERVED_INDICATOR_NAMES))
        raise MarketDataError(f"the indicator name '{name}' (from {text!r}) is reserved", path, row=0, column=column,
                              hint=f"Rename the {'column' if column else 'file'}: {reserved} are not indicator names.")
    return name


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def read_indicator_file(path: str | Path) -> tuple[pl.DataFrame, list[str]]:
    """One indicator file (never traded: VIX, a credit spread, a yield) and notes on what was skipped.

    Layouts: a date column (``date``/``DATE``/``observation_date``) and one or more value columns
    (FRED: ``DATE,VIXCLS`` with ``.`` for missing); a Yahoo OHLCV export (``^VIX.csv``: Adj Close,
    else Close); or long ``date, name, value``. One value column (or an OHLCV export) is named after
    the file, several after their columns (:func:`indicator_name`). Rows on dates that are not NYSE
    sessions are dropped (noted); a missing value on a session is kept as NaN (noted; the consumer
    carries the last value forward). Infinite or non-numeric values, a date twice for a name, and
    a reserved or repeated name raise :class:`MarketDataError`.

    Returns the rows (:data:`INDICATOR_SCHEMA`, sorted by date, name) and the notes."""
    path = Path(path)
    table, decimal = _read_table(path)
    header = [str(c) for c in table.columns]
    table.columns = header
    date_col = _date_column(header, path, INDICATOR_DATE_NAMES, case_insensitive=True)
    lower = {c.lower(): c for c in header}
    dates = _parse_dates(table[date_col], path, date_col)
    n = len(table)
    rows = np.arange(1, n + 1)
    if _is_ohlcv(lower, date_col):
        price = lower.get("adj close", lower.get("close"))
        columns = [(_name_or_error(_file_stem(path), path, None), price)]
    elif {"name", "value"} <= set(lower) and set(lower) <= {date_col.lower(), "name", "value"}:
        return _read_long_indicators(path, table, dates, date_col, lower["name"], lower["value"], decimal)
    else:
        value_cols = [c for c in header if c != date_col]
        if not value_cols:
            raise MarketDataError("an indicator file needs a value column after the date column; none found",
                                  path, row=0)
        dups = pd.Index(value_cols)[pd.Index(value_cols).duplicated()]
        if len(dups):
            raise MarketDataError(f"column '{dups[0]}' appears twice in the header", path, row=0, column=str(dups[0]))
        if len(value_cols) == 1:
            columns = [(_name_or_error(_file_stem(path), path, None), value_cols[0])]
        else:
            columns = [(_name_or_error(c, path, c), c) for c in value_cols]
            seen: dict[str, str] = {}
            for name, c in columns:
                if name in seen:
                    raise MarketDataError(f"columns '{seen[name]}' and '{c}' both give the indicator name '{name}'",
                                          path, row=0, column=c, hint="Rename one of the columns.")
                seen[name] = c
    first_dup = _first_duplicate(dates)
    if first_dup is not None:
        i, j = first_dup
        raise MarketDataError(f"date {pd.Timestamp(dates[j]).date()} appears twice (rows {i + 1} and {j + 1})",
                              path, row=j + 1, column=date_col,
                              hint="Keep one row per date (an indicator has one value per day).")
    names = [name for name, _ in columns]
    frames = []
    for name, col in columns:
        values = _parse_numbers(table[col], path, col, decimal, what="value")
        _check_finite(values, table[col], path, col)
        frames.append(pl.DataFrame({
            "date": dates, "name": [name] * n, "value": values, "source_file": [str(path)] * n,
            "source_row": rows, "source_column": [col] * n,
        }, schema_overrides=INDICATOR_SCHEMA))
    frame = pl.concat(frames) if len(frames) > 1 else frames[0]
    label = f"indicator {names[0]}" if len(names) == 1 else f"indicators {', '.join(names)}"
    return _sessions_only(frame, path, label)


def _read_long_indicators(path: Path, table: pd.DataFrame, dates: np.ndarray, date_col: str, name_col: str,
                          value_col: str, decimal: str) -> tuple[pl.DataFrame, list[str]]:
    """``date, name, value`` rows (one row per date and indicator)."""
    raw = table[name_col].astype(str).str.strip()
    mapping = {t: _name_or_error(t, path, name_col) for t in pd.unique(raw)}
    names = raw.map(mapping).to_numpy(dtype=str)
    values = _parse_numbers(table[value_col], path, value_col, decimal, what="value")
    _check_finite(values, table[value_col], path, value_col)
    n = len(table)
    frame = pl.DataFrame({
        "date": dates, "name": names, "value": values, "source_file": [str(path)] * n,
        "source_row": np.arange(1, n + 1), "source_column": [value_col] * n,
    }, schema_overrides=INDICATOR_SCHEMA)
    dup = frame.filter(pl.struct("date", "name").is_duplicated())
    if dup.height:
        r = dup.row(1, named=True)
        raise MarketDataError(f"date {r['date']} appears twice for the indicator {r['name']}", path,
                              row=int(r["source_row"]), column=date_col,
                              hint="Keep one row per date and indicator.")
    ordered = list(dict.fromkeys(names.tolist()))
    label = f"indicator {ordered[0]}" if len(ordered) == 1 else f"indicators {', '.join(ordered)}"
    return _sessions_only(frame, path, label)


def _first_duplicate(dates: np.ndarray) -> tuple[int, int] | None:
    """(first row, repeating row) of the first date seen twice, 0-based; None when all differ."""
    seen: dict[np.datetime64, int] = {}
    for j, d in enumerate(dates):
        if d in seen:
            return seen[d], j
        seen[d] = j
    return None


def _check_finite(values: np.ndarray, cells: pd.Series, path: Path, column: str) -> None:
    bad = np.flatnonzero(np.isinf(values))
    if len(bad):
        i = int(bad[0])
        raise MarketDataError(f"value {str(cells.iloc[i]).strip()!r} is infinite", path, row=i + 1, column=column,
                              hint="An indicator value is a finite number, or a missing token (., NA, empty) "
                                   "where there is none.")


def _sessions_only(frame: pl.DataFrame, path: Path, label: str) -> tuple[pl.DataFrame, list[str]]:
    """Drop rows on dates that are not NYSE sessions (noted), note sessions without a value."""
    notes: list[str] = []
    sessions = _session_set()
    lo, hi = pd.Timestamp(CALENDAR_START).date(), pd.Timestamp(CALENDAR_END).date()
    days = frame["date"].unique().sort().to_list()
    outside = [d for d in days if d < lo or d > hi]
    off = [d for d in days if lo <= d <= hi and d not in sessions]
    if outside:
        notes.append(f"{label} (file {path}): {_plural(len(outside), 'row')} outside the exchange calendar "
                     f"({lo} .. {hi}) skipped (first {outside[0]})")
    if off:
        notes.append(f"{label} (file {path}): {_plural(len(off), 'row')} on non-trading days skipped (first {off[0]})")
    if outside or off:
        frame = frame.filter(~pl.col("date").is_in(outside + off))
    frame = frame.sort("date", "name")
    gaps = frame.filter(pl.col("value").is_nan()).group_by("name", maintain_order=True).len()
    for name, k in zip(gaps["name"].to_list(), gaps["len"].to_list()):
        notes.append(f"indicator {name}: {_plural(int(k), 'trading day')} without a value "
                     "(the last value carries forward)")
    return frame, notes


# --------------------------------------------------------------------------------------------
# sources

def _data_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))


def _check_landing_dates(frame: pl.DataFrame, path: Path) -> None:
    """A landing file named ``*_YYYY-MM-DD`` holds that trading day only."""
    m = LANDING_NAME.search(path.name)
    if not m or frame.height == 0:
        return
    day = pd.Timestamp(m.group(1)).date()
    bad = frame.filter(pl.col("date") != day)
    if bad.height:
        r = bad.row(0, named=True)
        raise MarketDataError(
            f"row dated {r['date']} in a file for {day} (the file name sets its trading day)",
            path, row=int(r["source_row"]), column="date")


@lru_cache(maxsize=1)
def _session_set() -> frozenset:
    return frozenset(trading_sessions().date)


def _check_sessions(frame: pl.DataFrame) -> None:
    """Every date is an NYSE session: a weekend or holiday row can never belong to a partition."""
    if frame.height == 0:
        return
    sessions = _session_set()
    off = sorted(d for d in frame["date"].unique().to_list() if d not in sessions)
    if off:
        first = off[0]
        r = frame.filter(pl.col("date") == first).row(0, named=True)
        raise MarketDataError(
            f"{first} is not an NYSE trading day (weekend or exchange holiday), so it belongs to no partition",
            r["source_file"], row=int(r["source_row"]), column="date")


def _check_benchmark_coverage(prices: pl.DataFrame, bench: pl.DataFrame) -> None:
    """The benchmark has a finite close on every date with prices (rows before or after them are fine)."""
    if prices.height == 0 or bench.height == 0:
        return
    have = set(bench.filter(pl.col("close").is_finite())["date"].to_list())
    price_dates = prices["date"].unique().sort().to_list()
    missing = [d for d in price_dates if d not in have]
    if not missing:
        return
    ordered = bench.sort("date", maintain_order=True)
    last = ordered.row(ordered.height - 1, named=True)
    names = ", ".join(sorted(set(bench["name"].to_list())))
    first = missing[0]
    b_first, b_last = ordered["date"][0], last["date"]
    problem = f"the benchmark {names} has no close on {first}"
    if len(missing) > 1:
        problem += f" (and {_plural(len(missing) - 1, 'later price date')})"
    file, row, column = last["source_file"], None, None
    if first > b_last:
        problem += f": it ends on {b_last} but the prices run to {price_dates[-1]}"
    elif first < b_first:
        problem += f": it starts on {b_first} but the prices start on {price_dates[0]}"
    else:
        at = ordered.filter(pl.col("date") == first)
        if at.height:
            r = at.row(0, named=True)
            file, row, column = r["source_file"], int(r["source_row"]), r.get("source_column")
            problem += f": its value there is {r['close']} (missing or not finite)"
        else:
            problem += f": the benchmark runs {b_first} .. {b_last} but has no row for that price date"
    raise MarketDataError(problem, file, row=row, column=column, hint=BENCHMARK_HINT)


def _indicator_files(location: Path, what: str) -> list[Path]:
    if location.is_dir():
        return _data_files(location)
    if location.is_file():
        return [location]
    raise MarketDataError(f"the {what} does not exist", location,
                          hint="Set ALLOC_INDICATORS to an indicator file or folder, or unset it.")


def _read_indicators(paths: list[Path]) -> tuple[pl.DataFrame | None, list[str]]:
    """Every indicator file, concatenated; a name given by two files is an error."""
    frames: list[pl.DataFrame] = []
    notes: list[str] = []
    origin: dict[str, Path] = {}
    for p in paths:
        frame, file_notes = read_indicator_file(p)
        for name in frame["name"].unique(maintain_order=True).to_list() if frame.height else []:
            if name in origin:
                raise MarketDataError(f"the indicator name '{name}' is given by this file and by {origin[name]}",
                                      p, row=0, hint="Rename one of the files (an indicator is named after its file, "
                                                     "or after its column when the file has several).")
            origin[name] = p
        frames.append(frame)
        notes.extend(file_notes)
    frames = [f for f in frames if f.height]
    if not frames:
        return None, notes
    return pl.concat(frames).sort("date", "name"), notes


def read_market_data(source: str | Path, indicators: str | Path | None = None) -> MarketData:
    """Read a file, a directory of files, or a directory laid out like the bundled set.

    Indicators: every data file in the directory's ``indicators/`` folder, and ``indicators`` (a
    file or a folder) when given; they are never read as prices. An index column (``VIX``, ``^VIX``) of a price file is an error, except in a landing day file
    (``*_YYYY-MM-DD.csv``) read alone: there it stays in ``prices`` for the caller to split off
    (``defs.market._split_indicator_columns``: a stored indicator's column becomes that indicator).
    With a benchmark, every date with prices needs its finite close."""
    path = Path(source).expanduser()
    if not path.exists():
        raise MarketDataError("the market data source does not exist", path,
                              hint="Set ALLOC_MARKET_DATA to a CSV/Parquet file or a directory of them.")
    bench = None
    sectors: dict[str, str] = {}
    ind_paths: list[Path] = []
    if path.is_dir() and (path / "indicators").is_dir():
        ind_paths += _data_files(path / "indicators")
    if indicators is not None and str(indicators) != "":
        ind_paths += _indicator_files(Path(indicators).expanduser(), "indicator source")
        if not ind_paths:
            raise MarketDataError("the indicator folder holds no .csv, .csv.gz or .parquet files",
                                  Path(indicators).expanduser(),
                                  hint="Put the indicator files there, or unset ALLOC_INDICATORS.")
    ind_paths = list(dict.fromkeys(p.resolve() for p in ind_paths))
    is_indicator = set(ind_paths)
    if path.is_dir():
        files = [p for p in _data_files(path) if p.resolve() not in is_indicator]
        price_files = [p for p in files if p.name.startswith("prices")]
        bench_files = [p for p in files if p.name.startswith(("sp500_index", "benchmark"))]
        if not price_files:
            price_files = [p for p in files if p not in bench_files and not p.name.startswith("sectors")]
        else:
            for p in files:
                if p.name.startswith("^") and p not in bench_files:
                    raise MarketDataError(f"'{_file_stem(p)}' is an index (a Yahoo '^' symbol), not a tradeable "
                                          "asset", p, hint=INDEX_HINT)
        if not price_files:
            raise MarketDataError("the directory holds no .csv, .csv.gz or .parquet price files", path)
        if (path / "sectors.csv").exists():
            sectors = read_sectors_file(path / "sectors.csv")
        if bench_files:
            bench = pl.concat([read_benchmark_file(p) for p in bench_files])
    else:
        if path.resolve() in is_indicator:
            raise MarketDataError("the market data source is also given as an indicator file", path,
                                  hint="Point ALLOC_MARKET_DATA at the prices and ALLOC_INDICATORS at the indicators.")
        price_files = [path]
        if (path.parent / "sectors.csv").exists() and path.name != "sectors.csv":
            sectors = read_sectors_file(path.parent / "sectors.csv")
    # a landing day file read alone may carry a stored indicator (or the benchmark) as one more
    # column: its caller splits those off, and an unknown one fails the universe check there
    day_file = path.is_file() and LANDING_NAME.search(path.name) is not None
    frames = []
    for p in price_files:
        f = _read_series_file(p, tradeable=not day_file)
        _check_landing_dates(f, p)
        frames.append(f)
    prices = pl.concat(frames) if len(frames) > 1 else frames[0]
    _check_sessions(prices)
    if bench is not None:
        _check_sessions(bench)
        _check_benchmark_coverage(prices, bench)
    ind, notes = _read_indicators(ind_paths)
    return MarketData(prices, bench, sectors, tuple(str(p) for p in price_files), ind, tuple(notes))
