"""The last day's closes as markdown (the ``market_prices`` asset's ``preview`` metadata)."""

from __future__ import annotations

import polars as pl

from alloc_assets.core.common.markdown import md_table


def preview_closes(last: pl.DataFrame) -> str:
    """``last`` (one day's ``date, symbol, close`` rows) as a table, closes to 4 decimals."""
    if last.height == 0:
        return "_no rows_"
    table = md_table(["symbol", "close"], [[s, f"{c:.4f}"] for s, c in zip(last["symbol"], last["close"])])
    return f"Closes on {last['date'][0]}:\n\n{table}"
