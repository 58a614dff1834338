"""A SQLite event-log storage that writes a batch of Dagster events in one transaction per shard.

Dagster's ``SqliteEventLogStorage`` opens a new engine and connection and commits once per event.
A single-run backfill over the 8,313-day history emits two events per partition per asset (planned
and materialized), which costs ~160 s per asset on disk. Dagster already groups those events into
batches (``DAGSTER_EVENT_BATCH_SIZE``) and calls ``store_event_batch``, which for SQLite falls back
to one ``store_event`` per event. This subclass keeps one connection and one transaction per shard
open for the whole batch and commits once: the rows written are the ones ``store_event`` writes.

Used by the local instance (``$DAGSTER_HOME/dagster.yaml`` written by ``make demo`` / ``make ui``):

    event_log_storage:
      module: alloc_assets.instance_storage
      class: BatchingSqliteEventLogStorage
      config:
        base_dir: <DAGSTER_HOME>/history/runs

with ``DAGSTER_EVENT_BATCH_SIZE`` set (the Makefile exports 10000). The PostgreSQL storage batches
natively and needs none of this.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from alloc_assets import _dagster_patches

_dagster_patches.apply()  # the webserver and daemon load this module too


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """``SqliteEventLogStorage`` whose ``store_event_batch`` commits once per shard."""

    def __init__(self, base_dir: str, inst_data=None):
        self._batch: dict | None = None
        self._batch_thread: int | None = None
        super().__init__(base_dir, inst_data)

    def has_table(self, table_name: str) -> bool:
        """Cached once true: the parent opens a new engine on the index shard for every asset
        event just to ask whether an (append-only) table exists."""
        cache = self.__dict__.setdefault("_tables_seen", set())
        if table_name in cache:
            return True
        found = super().has_table(table_name)
        if found:
            cache.add(table_name)
        return found

    @classmethod
    def from_config_value(cls, inst_data, config_value):  # same config as the parent
        return cls(inst_data=inst_data, **dict(config_value))

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator:
        if self._batch is None or threading.get_ident() != self._batch_thread:
            with super()._connect(shard) as conn:
                yield conn
            return
        if shard not in self._batch:
            engine = create_engine(self.conn_string_for_shard(shard), poolclass=NullPool,
                                   connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            conn = engine.connect()
            self._batch[shard] = (engine, conn, conn.begin())
        yield self._batch[shard][1]

    def store_event_batch(self, events: Sequence) -> None:
        if len(events) <= 1:
            for event in events:
                self.store_event(event)
            return
        with self._db_lock:
            self._batch, self._batch_thread = {}, threading.get_ident()
            ok = False
            try:
                for event in events:
                    self.store_event(event)
                ok = True
            finally:
                opened, self._batch, self._batch_thread = self._batch, None, None
                for engine, conn, txn in opened.values():
                    try:
                        if ok:
                            txn.commit()
                        else:
                            txn.rollback()
                    finally:
                        conn.close()
                        engine.dispose()
