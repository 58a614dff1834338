"""The partitions of ``market_prices``: one per calendar year (``"1990"`` .. the current year).

A landing file for a trading day maps onto the partition of its year, which is re-materialised
with the new day (the stored year is rebuilt from the source and the accepted landing files, and
only what changed propagates). Why years and not days or months: Dagster's stock SQLite event log
commits every event on its own, and a range run writes one materialization (and one planned row
per asset check) per partition. Measured on the 2-core development machine for the 1990-2022
history (``make bench``, entry ``market_partitioning``): daily partitions 157 s, monthly 13 s,
yearly 2 s of pure Dagster bookkeeping. Keys carry no holiday list, so they never change when the
exchange calendar does.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg

from alloc_assets.core.market.calendar import EXCHANGE_TIMEZONE

#: Tags Dagster uses to run a single run over a range of partitions.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
FIRST_YEAR = 1990

market_partitions = dg.TimeWindowPartitionsDefinition(
    start=str(FIRST_YEAR),
    fmt="%Y",
    cron_schedule="0 0 1 1 *",
    timezone=EXCHANGE_TIMEZONE,
    # the current year's partition exists from January 1st (New York time)
    end_offset=1,
)

#: The same layout by calendar month: built only by the benchmark that measures the choice.
monthly_market_partitions = dg.TimeWindowPartitionsDefinition(
    start=f"{FIRST_YEAR}-01", fmt="%Y-%m", cron_schedule="0 0 1 * *", timezone=EXCHANGE_TIMEZONE, end_offset=1)


def partition_key_for(day: dt.date | str) -> str:
    """The ``market_prices`` partition key holding a trading day."""
    return str(dt.date.fromisoformat(str(day)).year)


def range_tags(start: str, end: str) -> dict[str, str]:
    """Run tags that make one run cover the partitions ``start``..``end`` (inclusive)."""
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}
