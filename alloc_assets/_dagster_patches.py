"""A narrowly scoped performance fix for Dagster 1.13's SQL event-log storage.

``SqlEventLogStorage._store_asset_check_evaluation_planned`` writes one row per partition of a run
and calls ``serialize_value(event)`` inside that loop, so a single-run backfill of N partitions
serialises the same event N times per check (each time with the partitions definition and its
exchange-holiday exclusions): about 15 s per check for the 8,313-day history. The rows written
are the same; we serialise once. Applied on import of ``alloc_assets`` (run workers, code
servers, in-process runs) and by the instance storage classes of ``alloc_assets.instance``
(webserver and daemon). Remove when Dagster serialises once upstream.
"""

from __future__ import annotations

from typing import Any

_PATCHED = False


def _store_asset_check_evaluation_planned(self, event, event_id) -> None:  # pragma: no cover - exercised via Dagster
    from dagster._core.storage.event_log import sql_event_log as m

    planned: Any = event.dagster_event.event_specific_data
    partition_keys = planned.partitions_subset.get_partition_keys() if planned.partitions_subset else [None]
    serialized = m.serialize_value(event)
    timestamp = self._event_insert_timestamp(event)
    rows = [
        dict(
            asset_key=planned.asset_key.to_string(),
            check_name=planned.check_name,
            partition=partition_key,
            run_id=event.run_id,
            execution_status=m.AssetCheckExecutionRecordStatus.PLANNED.value,
            evaluation_event=serialized,
            evaluation_event_timestamp=timestamp,
            evaluation_event_storage_id=event_id,
        )
        for partition_key in partition_keys
    ]
    with self.index_connection() as conn:
        conn.execute(m.AssetCheckExecutionsTable.insert().values(rows))


def apply() -> bool:
    """Install the fix once; returns whether the patched method is in place."""
    global _PATCHED
    if _PATCHED:
        return True
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    if not hasattr(SqlEventLogStorage, "_store_asset_check_evaluation_planned"):
        return False  # Dagster changed its storage layer: leave it alone
    SqlEventLogStorage._store_asset_check_evaluation_planned = _store_asset_check_evaluation_planned
    _PATCHED = True
    return True
