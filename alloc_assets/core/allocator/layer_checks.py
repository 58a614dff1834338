"""What the allocator layers check and flag before they are stored (pure; no Dagster).

Early warning: a day is flagged when its stress score is above ``EARLY_WARNING_SCORE`` or
P(STRESS) + P(CRISIS) is above ``EARLY_WARNING_PROB``. Thrash: label changes over the last 252
days. Scalar jumps: the absolute daily change of the risk scalar (0 on the first stored day).
Lag: each applied scalar must come from the previous rebalance date.
"""

import datetime as dt

import numpy as np
import polars as pl

from alloc_assets.core.market.calendar import rebalance_mask

EARLY_WARNING_SCORE = 0.6
EARLY_WARNING_PROB = 0.35


def early_warning() -> pl.Expr:
    """The early-warning flag over a regime frame's ``score``, ``p_stress`` and ``p_crisis``."""
    return (pl.col("score") > EARLY_WARNING_SCORE) | ((pl.col("p_stress") + pl.col("p_crisis")) > EARLY_WARNING_PROB)


def label_transitions(labels: np.ndarray) -> int:
    """How many times consecutive ``labels`` differ."""
    return int((labels[1:] != labels[:-1]).sum()) if len(labels) > 1 else 0


def scalar_jumps(previous: float | None, values: list[float]) -> np.ndarray:
    """|daily change| of ``values`` after ``previous`` (the stored scalar before them; None: the
    first value's change counts as 0)."""
    series = ([previous] if previous is not None else []) + values
    jumps = np.abs(np.diff(series)) if len(series) > 1 else np.array([])
    if previous is None:
        jumps = np.concatenate([[0.0], jumps])
    return jumps


def previous_rebalances(dates: np.ndarray, frequency) -> pl.DataFrame:
    """Each rebalance date of ``dates`` with the rebalance before it (``_prev_rebalance``, null first)."""
    idx = np.flatnonzero(rebalance_mask(dates, frequency))
    reb = [dt.date.fromisoformat(str(dates[i])) for i in idx]
    return pl.DataFrame({"date": reb, "_prev_rebalance": [None, *reb[:-1]] if reb else []},
                        schema={"date": pl.Date, "_prev_rebalance": pl.Date})
