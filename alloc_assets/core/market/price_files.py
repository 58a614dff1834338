"""Price, benchmark and sector files as long rows with provenance (``source_file, source_row, source_column``).

Layouts: wide (a ``date``/``Date`` column, then one column of adjusted closes per symbol); long
(``date, symbol, close``, optionally ``open, high, low, volume``); one ticker's OHLCV export
(Yahoo style, named by its file: Adj Close, else Close). An index among the prices (a Yahoo ``^``
symbol such as ``^VIX``, or a volatility index column such as ``VIX``) is an error: it is a regime
input, never a tradeable asset. Value problems (NaN, zero or negative prices, duplicates) stay in
the frame for the schema checks to report row by row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from alloc_assets.core.market.cell_parsing import MISSING_TOKENS, parse_dates, parse_numbers
from alloc_assets.core.market.csv_cells import read_csv_cells, read_table
from alloc_assets.core.market.io_errors import INDEX_HINT, MarketDataError
from alloc_assets.core.market.reader_settings import SNIFF, ReaderSettings

DATE_COLUMN_NAMES = ("date", "Date", "DATE")
LONG_REQUIRED = ("symbol", "close")
LONG_EXTRAS = ("open", "high", "low", "volume")
OHLCV_COLUMNS = ("open", "high", "low", "close", "adj close", "volume")
TICKER_LIKE = re.compile(r"^[A-Z0-9][A-Z0-9.\-^]{0,11}$")
DATA_SUFFIXES = (".csv", ".csv.gz", ".parquet")
#: Volatility indices: regime inputs, never a tradeable asset (a price column of that name is an error).
VOLATILITY_INDICES = frozenset({"VIX", "VIXCLS", "VXV", "VIX3M", "VXN", "VVIX"})


def date_column(header: list[str], path: Path, names: Iterable[str] = DATE_COLUMN_NAMES,
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


def file_stem(path: Path) -> str:
    """The file name without its data suffix (``^VIX.csv.gz`` -> ``^VIX``)."""
    for suffix in DATA_SUFFIXES[::-1]:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return path.stem


def is_ohlcv(lower: dict[str, str], date_col: str) -> bool:
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


def read_price_file(path: str | Path, settings: ReaderSettings = SNIFF) -> pl.DataFrame:
    """One price file (wide or long, CSV or Parquet) as long rows with provenance.

    An index (a ``^`` ticker such as ``^VIX``, or a volatility index such as ``VIX``) is an error."""
    return read_series_file(Path(path), tradeable=True, settings=settings)


def read_series_file(path: Path, tradeable: bool, settings: ReaderSettings = SNIFF) -> pl.DataFrame:
    """One price or benchmark file as long rows; ``tradeable``: an index ticker is an error."""
    table, decimal = read_table(path, settings)
    header = list(table.columns)
    date_col = date_column(header, path)
    lower = {c.lower(): c for c in table.columns}
    if is_ohlcv(lower, date_col):
        # one ticker's OHLCV export (Yahoo style): the ticker is the file name; Adj Close when present
        price = lower.get("adj close", lower.get("close"))
        ticker = path.name.split(".")[0]
        if tradeable:
            _reject_index(ticker, path, None, None)
        dates = parse_dates(table[date_col], path, date_col, settings)
        return pl.DataFrame({
            "date": dates, "symbol": [ticker] * len(table),
            "close": parse_numbers(table[price], path, price, settings, decimal),
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
        dates = parse_dates(table[date_col], path, date_col, settings)
        symbols = table[lower["symbol"]].astype(str).str.strip().to_numpy()
        empty_sym = np.flatnonzero(np.isin(symbols, list(MISSING_TOKENS)))
        if len(empty_sym):
            raise MarketDataError("empty symbol", path, row=int(empty_sym[0]) + 1, column=lower["symbol"])
        if tradeable:
            for sym in pd.unique(symbols):
                if _index_problem(str(sym)):
                    first = int(np.flatnonzero(symbols == sym)[0]) + 1
                    _reject_index(str(sym), path, first, lower["symbol"])
        close = parse_numbers(table[lower["close"]], path, lower["close"], settings, decimal)
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
    dates = parse_dates(table[date_col], path, date_col, settings)
    n = len(table)
    blocks = [parse_numbers(table[c], path, c, settings, decimal) for c in value_cols]
    return pl.DataFrame({
        "date": np.tile(dates, len(value_cols)),
        "symbol": np.repeat(np.array(value_cols, dtype=str), n),
        "close": np.concatenate(blocks),
        "source_file": [str(path)] * (n * len(value_cols)),
        "source_row": np.tile(np.arange(1, n + 1), len(value_cols)),
        "source_column": np.repeat(np.array(value_cols, dtype=str), n),
    }, schema_overrides={"date": pl.Date}).sort(["date", "symbol"])


def read_benchmark_file(path: str | Path, settings: ReaderSettings = SNIFF) -> pl.DataFrame:
    """A benchmark index file (wide, one value column; its header names the index). An OHLCV
    export named ``benchmark_<name>.csv`` is named ``<name>``; a ``^`` index is fine here."""
    path = Path(path)
    long = read_series_file(path, tradeable=False, settings=settings)
    names = long["symbol"].unique().to_list()
    if len(names) != 1:
        raise MarketDataError(f"a benchmark file holds one index column, found {len(names)}: {names[:5]}", path, row=0)
    if names[0].startswith("benchmark_") and len(names[0]) > len("benchmark_"):
        long = long.with_columns(pl.lit(names[0][len("benchmark_"):]).alias("symbol"))
    return long.rename({"symbol": "name"}).select("date", "name", "close", "source_file", "source_row", "source_column")


def read_sectors_file(path: str | Path, settings: ReaderSettings = SNIFF) -> dict[str, str]:
    """``symbol, sector`` rows as a mapping."""
    path = Path(path)
    header, body = read_csv_cells(path, settings)
    lower = [h.lower() for h in header]
    if "symbol" not in lower or "sector" not in lower:
        raise MarketDataError("sectors.csv needs columns symbol, sector", path, row=0)
    si, ki = lower.index("symbol"), lower.index("sector")
    return {r[si].strip(): r[ki].strip() for r in body}

