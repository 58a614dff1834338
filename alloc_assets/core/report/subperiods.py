"""The window cut into consecutive sub-periods, each book's measures on each (pure; numpy only).

Pieces of (nearly) equal numbers of days (``numpy.array_split``: the longer pieces first), with
CAGR, Sharpe, max drawdown and Calmar of each book from ``core.report.metrics`` and, when a book
named ``baseline`` exists, every other book's deltas against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from alloc_assets.core.common.dates import iso_day
from alloc_assets.core.report.metrics import cagr, calmar_ratio, max_drawdown, sharpe_ratio
from alloc_assets.core.report.series import finite_or_none, validated_returns


BASELINE = "baseline"



#: the sub-period measures, in table order
SUBPERIOD_METRICS: tuple[str, ...] = ("cagr", "sharpe", "max_drawdown", "calmar")



def subperiod_table(
    dates: np.ndarray,
    returns: Mapping[str, np.ndarray],
    n_parts: int = 3,
    risk_free: float = 0.0,
) -> list[dict[str, Any]]:
    """Measures of every book over ``n_parts`` consecutive pieces of the window.

    The ``T`` days are cut into ``n_parts`` consecutive, non-overlapping pieces covering every day
    once, of ``T // n_parts`` or ``T // n_parts + 1`` days (``numpy.array_split``: the longer
    pieces first). Each piece gets CAGR, Sharpe (with the daily ``risk_free``), max drawdown and
    Calmar of every book, computed by :mod:`alloc_assets.core.report.metrics` on the slice, and, when a
    book named ``"baseline"`` exists, the delta ``book - baseline`` of each measure for every other
    book.

    Parameters
    ----------
    dates : array (T,) of ``datetime64`` (day resolution or finer), ascending.
    returns : book name -> array (T,) of daily simple returns on ``dates``.
    n_parts : number of pieces, ``1 <= n_parts <= T``.
    risk_free : constant daily risk-free rate for the Sharpe ratio.

    Returns
    -------
    list of ``n_parts`` JSON-ready dicts::

        {part (1-based), start, end (ISO dates, inclusive), n_days,
         books {book: {cagr, sharpe, max_drawdown, calmar}},
         delta_vs_baseline {book: {cagr, sharpe, max_drawdown, calmar}}}   ({} without a baseline)
    """
    books = validated_returns(returns)
    d = np.asarray(dates).astype("datetime64[D]")
    t = len(next(iter(books.values())))
    if d.ndim != 1 or d.shape[0] != t:
        raise ValueError(f"dates ({d.shape}) and returns ({t},) differ in length")
    if t > 1 and np.any(np.diff(d) < np.timedelta64(0, "D")):
        raise ValueError("dates must be sorted ascending")
    n_parts = int(n_parts)
    if not 1 <= n_parts <= t:
        raise ValueError(f"n_parts must lie in [1, {t}], got {n_parts}")

    rows: list[dict[str, Any]] = []
    for part, piece in enumerate(np.array_split(np.arange(t), n_parts), start=1):
        lo, hi = int(piece[0]), int(piece[-1]) + 1
        values: dict[str, dict[str, float]] = {}
        for name, r in books.items():
            s = r[lo:hi]
            values[name] = {
                "cagr": float(cagr(s)),
                "sharpe": float(sharpe_ratio(s, risk_free)),
                "max_drawdown": float(max_drawdown(s)),
                "calmar": float(calmar_ratio(s)),
            }
        deltas: dict[str, dict[str, float | None]] = {}
        if BASELINE in values:
            base = values[BASELINE]
            for name, v in values.items():
                if name != BASELINE:
                    deltas[name] = {k: finite_or_none(v[k] - base[k]) for k in SUBPERIOD_METRICS}
        rows.append({
            "part": part,
            "start": iso_day(d[lo]),
            "end": iso_day(d[hi - 1]),
            "n_days": hi - lo,
            "books": {n: {k: finite_or_none(v[k]) for k in SUBPERIOD_METRICS} for n, v in values.items()},
            "delta_vs_baseline": deltas,
        })
    return rows
