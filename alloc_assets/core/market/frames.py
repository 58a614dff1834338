"""What the readers return: long prices with provenance, the benchmark, sectors and indicators."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd
import polars as pl

INDICATOR_SCHEMA = {"date": pl.Date, "name": pl.Utf8, "value": pl.Float64, "source_file": pl.Utf8,
                    "source_row": pl.Int64, "source_column": pl.Utf8}


@dataclass(frozen=True)
class MarketData:
    """Long prices with provenance, the optional benchmark, sectors and indicators.

    ``prices``: polars frame ``date (Date), symbol (Utf8), close (Float64)`` plus provenance
    ``source_file, source_row, source_column`` (the file column the value came from);
    ``benchmark``: ``date, name, close, source_file, source_row`` or None;
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
