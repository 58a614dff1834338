"""The one trading-day partitions definition shared by every daily asset.

Partition keys are NYSE sessions (``YYYY-MM-DD``): weekdays minus the exchange holidays and special
closures of the ``exchange_calendars`` package (calendar ``XNYS``), see ``core/calendar.py``. A key
exists for every session from 1990-01-02; a session for which the market source has no data is an
error when it is materialized (never a silent hole).
"""

from __future__ import annotations

import dagster as dg

from alloc_assets.core.calendar import CALENDAR_START, EXCHANGE_TIMEZONE, non_trading_weekdays

#: Tags Dagster uses to run a single run over a range of partitions.
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"

trading_day_partitions = dg.TimeWindowPartitionsDefinition(
    start=CALENDAR_START,
    fmt="%Y-%m-%d",
    cron_schedule="0 0 * * 1-5",
    timezone=EXCHANGE_TIMEZONE,
    exclusions=list(non_trading_weekdays()),
    # Today's partition exists from midnight New York time, so the 18:30 schedule (after the
    # 16:00 close) and a landing file for today can target it the same evening.
    end_offset=1,
)


def range_tags(start: str, end: str) -> dict[str, str]:
    """Run tags that make one run cover the partitions ``start``..``end`` (inclusive)."""
    return {RANGE_START_TAG: start, RANGE_END_TAG: end}
