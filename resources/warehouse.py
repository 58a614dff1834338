"""The DuckDB warehouse (``$ALLOC_HOME/warehouse.duckdb``) behind every stored artifact.

Assets own their writes: a partitioned asset replaces its date window in one transaction
(``DELETE`` the window, ``INSERT`` the new rows, ``COMMIT``), so a failed write leaves the table
exactly as it was and a re-run is idempotent. DuckDB allows one writer at a time: the assets that
write share the ``warehouse`` concurrency pool (limit 1, see ``deploy/dagster.yaml``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from resources.settings import SQL_DIR, default_warehouse_path


class DuckDBWarehouse(dg.ConfigurableResource):
    """DuckDB database file holding one table per asset (DDL in ``sql/``)."""

    path: str = Field(default_factory=default_warehouse_path, description="DuckDB database file.")

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection; read-only connections are refused on a missing file (nothing to read)."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(self.path, read_only=read_only and Path(self.path).exists())
        try:
            yield con
        finally:
            con.close()

    def ensure_tables(self, *ddl_files: str) -> None:
        """Run the ``CREATE TABLE IF NOT EXISTS`` statements of ``sql/<name>.sql``."""
        with self.connect() as con:
            for name in ddl_files:
                con.execute((SQL_DIR / f"{name}.sql").read_text())

    def table_exists(self, table: str) -> bool:
        if not Path(self.path).exists():
            return False
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchone()
        return bool(rows and rows[0])

    def replace_window(
        self,
        writes: dict[str, pl.DataFrame],
        start: dt.date,
        end: dt.date,
        date_column: str = "date",
        whole_tables: dict[str, pl.DataFrame] | None = None,
    ) -> None:
        """Replace rows dated in [start, end] of each table in ``writes``, all in ONE transaction.

        ``whole_tables`` are replaced entirely (small reference tables) in the same transaction.
        Any error rolls back everything: the warehouse then holds exactly what it held before.
        """
        with self.connect() as con:
            con.begin()
            try:
                for table, frame in writes.items():
                    con.execute(f'DELETE FROM "{table}" WHERE "{date_column}" BETWEEN ? AND ?', [start, end])
                    _insert(con, table, frame)
                for table, frame in (whole_tables or {}).items():
                    con.execute(f'DELETE FROM "{table}"')
                    _insert(con, table, frame)
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        """Replace a whole (unpartitioned) table in one transaction."""
        self.replace_window({}, dt.date.min, dt.date.min, whole_tables={table: frame})

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Run a read query and return a polars frame (empty frame if the database does not exist)."""
        if not Path(self.path).exists():
            return pl.DataFrame()
        with self.connect(read_only=True) as con:
            return pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    if frame.height == 0:
        return
    con.register("_incoming", frame.to_arrow())
    try:
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM _incoming')
    finally:
        con.unregister("_incoming")
