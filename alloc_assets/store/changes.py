"""From which day a frame about to be stored differs from what the warehouse holds: the
``changed_from`` of the change log, which tells the layers downstream where to recompute."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl


def first_change(warehouse, table: str, new: pl.DataFrame, keys: Sequence[str], value: str,
                 start: dt.date | None = None, end: dt.date | None = None) -> dt.date | None:
    """The earliest date whose stored rows of ``table`` differ from ``new`` in column ``value``,
    rows matched on ``keys`` (which include ``date``); only stored rows in [start, end] are
    compared when a window is given. A row only one side has counts as a change; NaN equals NaN
    (a missing value that stays missing is no change). ``None``: identical."""
    if not warehouse.table_exists(table):
        return new["date"].min() if new.height else None
    where, params = ("WHERE date BETWEEN ? AND ?", [start, end]) if start is not None else ("", [])
    old = warehouse.query(f"SELECT {', '.join(keys)}, {value} FROM {table} {where}", params)
    if old.height == 0:
        return new["date"].min() if new.height else None
    both = new.select(*keys, value).join(old, on=list(keys), how="full", coalesce=True, suffix="_old")
    a, b = pl.col(value), pl.col(f"{value}_old")
    same = (a == b) | (a.is_nan() & b.is_nan())
    diff = both.filter(a.is_null() | b.is_null() | ~same)
    return diff["date"].min() if diff.height else None
