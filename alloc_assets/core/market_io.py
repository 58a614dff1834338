"""Reading market data files into one long frame, with errors that name file, row and column.

Pure (no Dagster import). Formats (the public contract):

- wide: a ``date`` (or ``Date``) column, then one column per symbol of adjusted closes;
- long: ``date, symbol, close`` (extra columns named by the schema: ``open, high, low, volume``);
- optional ``sectors.csv`` (``symbol, sector``) beside the prices;
- a directory laid out like the bundled set: ``prices*`` (the universe), ``sp500_index*`` or
  ``benchmark*`` (the benchmark index, one value column), ``sectors.csv``;
- any other directory: every ``*.csv``, ``*.csv.gz`` and ``*.parquet`` in it is prices;
- landing files ``*_YYYY-MM-DD.csv|.parquet`` hold one trading day: any other date in them is an error.

Row numbers in messages count data rows from 1 (the header is line 1, so row ``r`` is line ``r+1``).
Structural problems (missing/empty/truncated file, no date column, unparseable dates or numbers, a
mix of formats) raise :class:`MarketDataError` here; value problems (NaN, inf, zero or negative
prices, duplicates, dates outside the partition) are left in the frame with their provenance
(``source_file``, ``source_row``) for the schema checks to report row by row.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from alloc_assets.core.calendar import trading_sessions

DATE_COLUMN_NAMES = ("date", "Date", "DATE")
LONG_REQUIRED = ("symbol", "close")
LONG_EXTRAS = ("open", "high", "low", "volume")
MISSING_TOKENS = {"", ".", "nan", "NaN", "NAN", "na", "NA", "N/A", "null", "NULL", "None"}
OHLCV_COLUMNS = ("open", "high", "low", "close", "adj close", "volume")
DATE_FORMATS = {"iso": "ISO8601", "m/d/y": "%m/%d/%Y", "d/m/y": "%d/%m/%Y"}
LANDING_NAME = re.compile(r"_(\d{4}-\d{2}-\d{2})\.(csv|csv\.gz|parquet)$")
_DECIMAL_COMMA = re.compile(r"^-?\d{1,3}(\.\d{3})*(,\d+)?$|^-?\d+(,\d+)?$")
TICKER_LIKE = re.compile(r"^[A-Z0-9][A-Z0-9.\-^]{0,11}$")
DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet")


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
    """Long prices with provenance, the optional benchmark and sectors.

    ``prices``: polars frame ``date (Date), symbol (Utf8), close (Float64)`` plus provenance
    ``source_file, source_row, source_column`` (the file column the value came from); ``benchmark``: ``date, name, close, source_file, source_row`` or None;
    ``sectors``: symbol -> sector.
    """

    prices: pl.DataFrame
    benchmark: pl.DataFrame | None = None
    sectors: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()

    def window(self, start, end) -> "MarketData":
        """Rows dated in [start, end] (``datetime.date`` or ISO strings)."""
        s, e = pd.Timestamp(start).date(), pd.Timestamp(end).date()
        keep = (pl.col("date") >= s) & (pl.col("date") <= e)
        bench = None if self.benchmark is None else self.benchmark.filter(keep)
        return MarketData(self.prices.filter(keep), bench, self.sectors, self.files)


# --------------------------------------------------------------------------------------------
# cells

def _read_csv_cells(path: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV (``.gz`` allowed) as strings; structural errors raised."""
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
    first = text.splitlines()[0]
    delimiter = max((";", "\t", ","), key=first.count) if any(d in first for d in (";", "\t")) else ","
    try:
        rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter)]
    except csv.Error as exc:  # e.g. a stray carriage return inside a field
        line = text[: text.find("\r")].count("\n") + 1 if "\r" in text else None
        raise MarketDataError(f"the CSV reader stopped: {exc} (a stray carriage return? save the file with "
                              "Unix or Windows line endings)", path, row=line) from exc
    if delimiter == ";":  # a ';' file writes decimals with a comma: 1.234,5 -> 1234.5
        rows = [rows[0]] + [[c.replace(".", "").replace(",", ".") if _DECIMAL_COMMA.match(c.strip()) else c for c in r]
                            for r in rows[1:]]
    header = [h.strip() for h in rows[0]]
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


# --------------------------------------------------------------------------------------------
# parsing

def _parse_dates(values: pd.Series, path: Path, column: str) -> np.ndarray:
    """ISO dates, or ``M/D/YYYY`` / ``D/M/YYYY`` detected when only one of them reads every row;
    ``ALLOC_DATE_FORMAT`` (``iso``, ``m/d/y``, ``d/m/y``) decides when both do."""
    import os

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


def _parse_numbers(values: pd.Series, path: Path, column: str) -> np.ndarray:
    """Floats; empty/NaN tokens become NaN (reported later by the schema), text is an error here."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    text = values.astype(str).str.strip()
    missing = text.isin(MISSING_TOKENS) | values.isna()
    cleaned = text.where(~missing, "nan").to_numpy(dtype=str)
    try:
        # numpy's str -> float is correctly rounded (the stored double is the decimal in the file).
        return cleaned.astype(np.float64)
    except ValueError:
        parsed = pd.to_numeric(pd.Series(cleaned), errors="coerce")
        bad = parsed.isna().to_numpy() & ~missing.to_numpy()
        i = int(np.flatnonzero(bad)[0])
        raise MarketDataError(f"price {text.iloc[i]!r} is not a number", path, row=i + 1, column=column) from None


def _date_column(header: list[str], path: Path) -> str:
    for name in header:
        if name.strip() in DATE_COLUMN_NAMES:
            return name
    raise MarketDataError(
        f"no date column (expected 'date' or 'Date'); columns found: {', '.join(header[:8])}"
        + (" ..." if len(header) > 8 else ""), path, row=0)


def _looks_like_symbol_column(name: str, values: pd.Series) -> bool:
    if not TICKER_LIKE.match(name):
        return False
    text = values.astype(str).str.strip()
    text = text[~text.isin(MISSING_TOKENS)]
    return len(text) == 0 or pd.to_numeric(text, errors="coerce").notna().all()


def read_price_file(path: str | Path) -> pl.DataFrame:
    """One price file (wide or long, CSV or Parquet) as long rows with provenance."""
    path = Path(path)
    if path.name.endswith(".parquet"):
        header, _, frame = _read_parquet_cells(path)
        table = frame.to_pandas()
    else:
        header, body = _read_csv_cells(path)
        table = pd.DataFrame(body, columns=header, dtype=object)
    date_col = _date_column(list(table.columns), path)
    lower = {c.lower(): c for c in table.columns}
    if "symbol" not in lower and ("close" in lower or "adj close" in lower) and \
            set(lower) - {date_col.lower()} <= set(OHLCV_COLUMNS):
        # one ticker's OHLCV export (Yahoo style): the ticker is the file name; Adj Close when present
        price = lower.get("adj close", lower.get("close"))
        ticker = path.name.split(".")[0]
        dates = _parse_dates(table[date_col], path, date_col)
        return pl.DataFrame({
            "date": dates, "symbol": [ticker] * len(table), "close": _parse_numbers(table[price], path, price),
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
        close = _parse_numbers(table[lower["close"]], path, lower["close"])
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
    dates = _parse_dates(table[date_col], path, date_col)
    n = len(table)
    blocks = [_parse_numbers(table[c], path, c) for c in value_cols]
    return pl.DataFrame({
        "date": np.tile(dates, len(value_cols)),
        "symbol": np.repeat(np.array(value_cols, dtype=str), n),
        "close": np.concatenate(blocks),
        "source_file": [str(path)] * (n * len(value_cols)),
        "source_row": np.tile(np.arange(1, n + 1), len(value_cols)),
        "source_column": np.repeat(np.array(value_cols, dtype=str), n),
    }, schema_overrides={"date": pl.Date}).sort(["date", "symbol"])


def read_benchmark_file(path: str | Path) -> pl.DataFrame:
    """A benchmark index file (wide, one value column; its header names the index)."""
    long = read_price_file(path)
    names = long["symbol"].unique().to_list()
    if len(names) != 1:
        raise MarketDataError(f"a benchmark file holds one index column, found {len(names)}: {names[:5]}", path, row=0)
    return long.rename({"symbol": "name"}).select("date", "name", "close", "source_file", "source_row", "source_column")


def read_sectors_file(path: str | Path) -> dict[str, str]:
    path = Path(path)
    header, body = _read_csv_cells(path)
    lower = [h.lower() for h in header]
    if "symbol" not in lower or "sector" not in lower:
        raise MarketDataError("sectors.csv needs columns symbol, sector", path, row=0)
    si, ki = lower.index("symbol"), lower.index("sector")
    return {r[si].strip(): r[ki].strip() for r in body}


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


def read_market_data(source: str | Path) -> MarketData:
    """Read a file, a directory of files, or a directory laid out like the bundled set."""
    path = Path(source).expanduser()
    if not path.exists():
        raise MarketDataError("the market data source does not exist", path,
                              hint="Set ALLOC_MARKET_DATA to a CSV/Parquet file or a directory of them.")
    bench = None
    sectors: dict[str, str] = {}
    if path.is_dir():
        files = _data_files(path)
        price_files = [p for p in files if p.name.startswith("prices")]
        bench_files = [p for p in files if p.name.startswith(("sp500_index", "benchmark"))]
        if not price_files:
            price_files = [p for p in files if p not in bench_files and not p.name.startswith("sectors")]
        if not price_files:
            raise MarketDataError("the directory holds no .csv, .csv.gz or .parquet price files", path)
        if (path / "sectors.csv").exists():
            sectors = read_sectors_file(path / "sectors.csv")
        if bench_files:
            bench = pl.concat([read_benchmark_file(p) for p in bench_files])
    else:
        price_files = [path]
        if (path.parent / "sectors.csv").exists() and path.name != "sectors.csv":
            sectors = read_sectors_file(path.parent / "sectors.csv")
    frames = []
    for p in price_files:
        f = read_price_file(p)
        _check_landing_dates(f, p)
        frames.append(f)
    prices = pl.concat(frames) if len(frames) > 1 else frames[0]
    _check_sessions(prices)
    if bench is not None:
        _check_sessions(bench)
    return MarketData(prices, bench, sectors, tuple(str(p) for p in price_files))
