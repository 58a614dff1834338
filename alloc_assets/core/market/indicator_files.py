"""Indicator files (VIX, credit spreads, yields: regime inputs, never traded) as long rows.

Layouts: a date column (``date``/``DATE``/``observation_date``) and value columns (FRED:
``DATE,VIXCLS`` with ``.`` for missing); a Yahoo OHLCV export; or long ``date, name, value``.
Rows on days that are not NYSE sessions are dropped with a note; a session without a value is
kept as NaN with a note (the consumer carries the last value forward).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

from alloc_assets.core.market.calendar import CALENDAR_END, CALENDAR_START, session_days
from alloc_assets.core.market.cell_parsing import parse_dates, parse_numbers
from alloc_assets.core.market.csv_cells import read_table
from alloc_assets.core.market.frames import INDICATOR_SCHEMA
from alloc_assets.core.market.io_errors import MarketDataError, plural
from alloc_assets.core.market.price_files import date_column, file_stem, is_ohlcv
from alloc_assets.core.market.reader_settings import SNIFF, ReaderSettings

#: Date columns of an indicator file (case-insensitive): FRED writes ``DATE`` or ``observation_date``.
INDICATOR_DATE_NAMES = ("date", "observation_date")
#: Names an indicator may not take (they are columns of the frames that consume indicators).
RESERVED_INDICATOR_NAMES = frozenset({"date", "warm"})


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


def read_indicator_file(path: str | Path, settings: ReaderSettings = SNIFF) -> tuple[pl.DataFrame, list[str]]:
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
    table, decimal = read_table(path, settings)
    header = [str(c) for c in table.columns]
    table.columns = header
    date_col = date_column(header, path, INDICATOR_DATE_NAMES, case_insensitive=True)
    lower = {c.lower(): c for c in header}
    dates = parse_dates(table[date_col], path, date_col, settings)
    n = len(table)
    rows = np.arange(1, n + 1)
    if is_ohlcv(lower, date_col):
        price = lower.get("adj close", lower.get("close"))
        columns = [(_name_or_error(file_stem(path), path, None), price)]
    elif {"name", "value"} <= set(lower) and set(lower) <= {date_col.lower(), "name", "value"}:
        return _read_long_indicators(path, table, dates, date_col, lower["name"], lower["value"], decimal,
                                         settings)
    else:
        value_cols = [c for c in header if c != date_col]
        if not value_cols:
            raise MarketDataError("an indicator file needs a value column after the date column; none found",
                                  path, row=0)
        dups = pd.Index(value_cols)[pd.Index(value_cols).duplicated()]
        if len(dups):
            raise MarketDataError(f"column '{dups[0]}' appears twice in the header", path, row=0, column=str(dups[0]))
        if len(value_cols) == 1:
            columns = [(_name_or_error(file_stem(path), path, None), value_cols[0])]
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
        values = parse_numbers(table[col], path, col, settings, decimal, what="value")
        _check_finite(values, table[col], path, col)
        frames.append(pl.DataFrame({
            "date": dates, "name": [name] * n, "value": values, "source_file": [str(path)] * n,
            "source_row": rows, "source_column": [col] * n,
        }, schema_overrides=INDICATOR_SCHEMA))
    frame = pl.concat(frames) if len(frames) > 1 else frames[0]
    label = f"indicator {names[0]}" if len(names) == 1 else f"indicators {', '.join(names)}"
    return _sessions_only(frame, path, label)


def _read_long_indicators(path: Path, table: pd.DataFrame, dates: np.ndarray, date_col: str, name_col: str,
                          value_col: str, decimal: str, settings: ReaderSettings) -> tuple[pl.DataFrame, list[str]]:
    """``date, name, value`` rows (one row per date and indicator)."""
    raw = table[name_col].astype(str).str.strip()
    mapping = {t: _name_or_error(t, path, name_col) for t in pd.unique(raw)}
    names = raw.map(mapping).to_numpy(dtype=str)
    values = parse_numbers(table[value_col], path, value_col, settings, decimal, what="value")
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
    sessions = session_days()
    lo, hi = pd.Timestamp(CALENDAR_START).date(), pd.Timestamp(CALENDAR_END).date()
    days = frame["date"].unique().sort().to_list()
    outside = [d for d in days if d < lo or d > hi]
    off = [d for d in days if lo <= d <= hi and d not in sessions]
    if outside:
        notes.append(f"{label} (file {path}): {plural(len(outside), 'row')} outside the exchange calendar "
                     f"({lo} .. {hi}) skipped (first {outside[0]})")
    if off:
        notes.append(f"{label} (file {path}): {plural(len(off), 'row')} on non-trading days skipped (first {off[0]})")
    if outside or off:
        frame = frame.filter(~pl.col("date").is_in(outside + off))
    frame = frame.sort("date", "name")
    gaps = frame.filter(pl.col("value").is_nan()).group_by("name", maintain_order=True).len()
    for name, k in zip(gaps["name"].to_list(), gaps["len"].to_list()):
        notes.append(f"indicator {name}: {plural(int(k), 'trading day')} without a value "
                     "(the last value carries forward)")
    return frame, notes

