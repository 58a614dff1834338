"""Simulated calendars: which simulated days are rebalance dates and threshold-refresh dates.

Day 0 is the starting day (today's close, or the first close of a fresh history); days 1..H are
simulated. The strategy books always trade on day 0 (they are invested there), so ``rebalance[0]``
is true. A calendar is static data shared by every path and fed to the engine's scan as arrays, so
the allocator's calendar-anchored rules (monthly rebalances, quarterly threshold refreshes) run
exactly as in the pipeline when the calendar comes from real dates (:func:`calendar_from_dates`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alloc_assets.core.market.calendar import RebalanceFrequency, rebalance_mask
from alloc_assets.core.allocator.regime_config import Cadence, refresh_mask

DAYS_PER_MONTH = 21
DAYS_PER_QUARTER = 63


@dataclass(frozen=True)
class SimCalendar:
    """Flags of days 0..H (arrays of shape (H + 1,)) and, when known, their dates.

    rebalance : books trade at the close (day 0 always). refresh : the stress-score thresholds are
    re-read from the histogram (first day of a calendar period; never day 0).
    """

    rebalance: np.ndarray
    refresh: np.ndarray
    dates: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.rebalance.shape != self.refresh.shape or self.rebalance.ndim != 1 or self.rebalance.size < 2:
            raise ValueError("rebalance and refresh must be 1-D flags of the same length H + 1 >= 2")
        object.__setattr__(self, "rebalance", np.asarray(self.rebalance, dtype=bool).copy())
        object.__setattr__(self, "refresh", np.asarray(self.refresh, dtype=bool).copy())
        self.rebalance[0] = True

    @property
    def horizon(self) -> int:
        """H, the number of simulated days."""
        return self.rebalance.size - 1


def regular_calendar(horizon: int, rebalance_every: int = DAYS_PER_MONTH, refresh_every: int = DAYS_PER_QUARTER) -> SimCalendar:
    """Rebalance every ``rebalance_every`` days (day 0, 21, 42, ...), refresh every ``refresh_every``."""
    t = np.arange(horizon + 1)
    return SimCalendar(rebalance=(t % rebalance_every) == 0, refresh=((t % refresh_every) == 0) & (t > 0))


def calendar_from_dates(
    dates, frequency: RebalanceFrequency | str = RebalanceFrequency.MONTHLY, refresh: Cadence | str = Cadence.QUARTERLY
) -> SimCalendar:
    """The pipeline's calendar rules on dates 0..H (``rebalance_mask``, ``refresh_mask``)."""
    d = np.asarray(dates).astype("datetime64[D]")
    return SimCalendar(rebalance=rebalance_mask(d, frequency), refresh=refresh_mask(d, refresh), dates=d)
