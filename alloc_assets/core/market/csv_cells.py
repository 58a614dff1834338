"""CSV and Parquet files as header and string cells, with structural errors located.

A UTF-8 BOM, CRLF line endings and ``.gz`` compression are fine. The delimiter is the setting, else
``;`` (or tab) when the header holds one, else ``,``; a ``;`` file writes decimals with a comma
unless the decimal setting says otherwise. A trailing blank line is fine; a row of another width
than the header is an error (truncated or malformed).
"""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pandas as pd
import polars as pl

from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.market.reader_settings import ReaderSettings

DELIMITER_LABELS = {",": "','", ";": "';'", "\t": "tab"}
DELIMITER_TOKENS = {",": ",", ";": ";", "\t": "tab"}


def _read_csv_table(path: Path, settings: ReaderSettings) -> tuple[list[str], list[list[str]], str]:
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
    delimiter = settings.delimiter_for(path)
    if delimiter is None:
        delimiter = max((";", "\t", ","), key=first.count) if any(d in first for d in (";", "\t")) else ","
    decimal = settings.decimal_for(path) or ("," if delimiter == ";" else ".")
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


def read_csv_cells(path: Path, settings: ReaderSettings) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a CSV (``.gz`` allowed) as strings; structural errors raised."""
    header, body, _ = _read_csv_table(path, settings)
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


def read_table(path: Path, settings: ReaderSettings) -> tuple[pd.DataFrame, str]:
    """A CSV or Parquet file as a pandas table (CSV cells as strings) and its decimal mark."""
    if path.name.endswith(".parquet"):
        _, _, frame = _read_parquet_cells(path)
        return frame.to_pandas(), settings.decimal_for(path) or "."
    header, body, decimal = _read_csv_table(path, settings)
    return pd.DataFrame(body, columns=header, dtype=object), decimal

