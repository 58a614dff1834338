"""The four market regimes and their order, calm to crisis: the one home of that order.

Every list of regime names, probability columns or per-regime keys in the project is derived from
:class:`Regime`; none is written out elsewhere.
"""

from __future__ import annotations

from enum import IntEnum


class Regime(IntEnum):
    """Market regimes, from calm to crisis (the integer is the severity)."""

    NORMAL = 0
    ELEVATED = 1
    STRESS = 2
    CRISIS = 3


REGIMES: tuple[Regime, ...] = tuple(Regime)
#: ``("NORMAL", "ELEVATED", "STRESS", "CRISIS")``: the labels stored in ``regime_series.regime``.
REGIME_LABELS: tuple[str, ...] = tuple(r.name for r in Regime)
#: ``("normal", ...)``: per-regime keys and column suffixes.
REGIME_KEYS: tuple[str, ...] = tuple(r.name.lower() for r in Regime)
#: ``("p_normal", ...)``: the probability columns of ``regime_series``.
PROBABILITY_COLUMNS: tuple[str, ...] = tuple(f"p_{k}" for k in REGIME_KEYS)
