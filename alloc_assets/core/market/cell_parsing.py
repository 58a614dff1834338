"""Cells to dates and numbers, with the offending cell located (file, row, column).

Dates: ISO, or ``M/D/YYYY`` / ``D/M/YYYY`` when only one of them reads every row; the date setting
decides when both do. Numbers: ``.``, ``NA``, ``N/A``, ``null``, ``nan`` and an empty cell are
missing (NaN); thousands separators (``1,234.50``, ``1.234,50``, ``1 234,50``, ``1'234.50``) are
read; text is an error. A sniffed decimal comma is decided per column so that ``12.345`` is never
read as 12345 in one row and ``12.5`` as 12.5 in the next.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.market.reader_settings import DATE_FORMATS, ReaderSettings

MISSING_TOKENS = {"", ".", "nan", "NaN", "NAN", "na", "NA", "N/A", "n/a", "#N/A", "null", "NULL", "Null", "None"}
# thousands separators: the same one between every group of three digits
_GROUP_SEPARATORS = {".": ",' \u00a0\u202f", ",": ".' \u00a0\u202f"}
# (the first group never starts with 0: "0,125" is a decimal comma, not 125)
_GROUPED = {d: re.compile(rf"^[+-]?[1-9]\d{{0,2}}(?P<sep>[{seps}])\d{{3}}(?:(?P=sep)\d{{3}})*(?:\{d}\d+)?$")
            for d, seps in _GROUP_SEPARATORS.items()}
_PLAIN_COMMA_DECIMAL = re.compile(r"^[+-]?\d*,\d+$")
_DOT_DECIMAL_GROUPED = re.compile(r"^[+-]?\d{1,3}(?:,\d{3})+\.\d+$")


def parse_dates(values: pd.Series, path: Path, column: str, settings: ReaderSettings) -> np.ndarray:
    """ISO dates, or ``M/D/YYYY`` / ``D/M/YYYY`` detected when only one of them reads every row;
    ``ALLOC_DATE_FORMAT`` (``iso``, ``m/d/y``, ``d/m/y``) decides when both do."""
    text = values.astype(str).str.strip()
    setting = settings.date_format_key(path, column)
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


def parse_numbers(values: pd.Series, path: Path, column: str, settings: ReaderSettings, decimal: str = ".",
                  what: str = "price") -> np.ndarray:
    """Floats; missing tokens become NaN (reported later by the schema), text is an error here.

    ``decimal`` is the file's decimal mark (``ALLOC_CSV_DECIMAL``); thousands separators are read."""
    if pd.api.types.is_numeric_dtype(values):
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    text = values.astype(str).str.strip()
    missing = text.isin(MISSING_TOKENS) | values.isna()
    decimal = _column_decimal(text, missing, decimal, settings.decimal_for(path) is not None, path, column, what)
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
