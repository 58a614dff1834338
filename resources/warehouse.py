"""The DuckDB warehouse (``$ALLOC_HOME/warehouse.duckdb``) behind every stored artifact.

Assets own their writes: a partitioned asset replaces its date window in one transaction
(``DELETE`` the window, ``INSERT`` the new rows, ``COMMIT``), so a failed write leaves the table
exactly as it was and a re-run is idempotent. DuckDB allows one writer at a time: the assets that
write share the ``warehouse`` concurrency pool (limit 1, see ``deploy/dagster.yaml``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from resources.settings import SQL_DIR, default_warehouse_path


_SESSIONS: dict[tuple[str, int], duckdb.DuckDBPyConnection] = {}


class DuckDBWarehouse(dg.ConfigurableResource):
    """DuckDB database file holding one table per asset (DDL in ``sql/``)."""

    path: str = Field(default="", description="DuckDB database file; empty = $ALLOC_HOME/warehouse.duckdb "
                      "(resolved when used, so the environment of the run decides).")

    @property
    def file(self) -> str:
        return self.path or default_warehouse_path()

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        """Reuse one connection for every call inside the block (an asset step), instead of one
        connection per query. Nested sessions share the outer one."""
        key = (str(Path(self.file).resolve()), threading.get_ident())
        if key in _SESSIONS:
            yield
            return
        Path(self.file).parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(self.file)
        _SESSIONS[key] = con
        try:
            yield
        finally:
            del _SESSIONS[key]
            con.close()

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection (the session's, inside ``session()``); read-only ones need an existing file."""
        shared = _SESSIONS.get((str(Path(self.file).resolve()), threading.get_ident()))
        if shared is not None:
            yield shared
            return
        Path(self.file).parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(self.file, read_only=read_only and Path(self.file).exists())
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
        if not Path(self.file).exists() and (str(Path(self.file).resolve()), threading.get_ident()) not in _SESSIONS:
            return False
        with self.connect(read_only=True) as con:
            rows = con.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [table]
            ).fetchall()
        return bool(rows and rows[0][0])

    def replace_window(
        self,
        writes: dict[str, pl.DataFrame],
        start: dt.date,
        end: dt.date,
        date_column: str = "date",
        whole_tables: dict[str, pl.DataFrame] | None = None,
        carries: pl.DataFrame | None = None,
    ) -> None:
        """Replace rows dated in [start, end] of each table in ``writes``, all in ONE transaction.

        ``whole_tables`` are replaced entirely (small reference tables) in the same transaction.
        Any error rolls back everything: the warehouse then holds exactly what it held before.
        """
        with self.connect() as con:
            con.begin()
            try:
                for table, frame in writes.items():
                    _create_like(con, table, frame)
                    con.execute(f'DELETE FROM "{table}" WHERE "{date_column}" BETWEEN ? AND ?', [start, end])
                    _insert(con, table, frame)
                if carries is not None and carries.height:
                    keys = carries.select("asset", "config_hash").unique()
                    for asset, config_hash in keys.iter_rows():
                        dates = carries.filter((pl.col("asset") == asset))["date"].to_list()
                        con.execute("DELETE FROM layer_carry WHERE asset = ? AND config_hash = ? AND date IN "
                                    f"({', '.join('?' * len(dates))})", [asset, config_hash, *dates])
                    _insert(con, "layer_carry", carries)
                for table, frame in (whole_tables or {}).items():
                    _create_like(con, table, frame)
                    con.execute(f'DELETE FROM "{table}"')
                    _insert(con, table, frame)
                con.commit()
            except BaseException:
                con.rollback()
                raise

    @staticmethod
    def carry_frame(asset: str, config_hash: str, carries: dict) -> pl.DataFrame:
        """Rows for ``layer_carry``: one JSON carry per date."""
        return pl.DataFrame({"asset": [asset] * len(carries), "config_hash": [config_hash] * len(carries),
                             "date": list(carries), "carry": [json.dumps(c) for c in carries.values()]},
                            schema={"asset": pl.Utf8, "config_hash": pl.Utf8, "date": pl.Date, "carry": pl.Utf8})

    def latest_carry(self, asset: str, config_hash: str, on_or_before: dt.date) -> tuple[dt.date, dict] | None:
        """The most recent stored carry of ``asset`` dated on or before ``on_or_before``."""
        if not self.table_exists("layer_carry"):
            return None
        rows = self.query("SELECT date, carry FROM layer_carry WHERE asset = ? AND config_hash = ? AND date <= ? "
                          "ORDER BY date DESC LIMIT 1", [asset, config_hash, on_or_before])
        if rows.height == 0:
            return None
        return rows["date"][0], json.loads(rows["carry"][0])

    def replace_table(self, table: str, frame: pl.DataFrame) -> None:
        """Replace a whole (unpartitioned) table in one transaction."""
        self.replace_window({}, dt.date.min, dt.date.min, whole_tables={table: frame})

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Run a read query and return a polars frame (empty frame if the database does not exist)."""
        if not Path(self.file).exists() and (str(Path(self.file).resolve()), threading.get_ident()) not in _SESSIONS:
            return pl.DataFrame()
        with self.connect(read_only=True) as con:
            return pl.from_arrow(con.sql(sql, params=params or None).to_arrow_table())


def _create_like(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Create a wide table (feature columns) from the frame's schema when the DDL did not."""
    con.register("_schema", frame.head(0).to_arrow())
    try:
        con.execute(f'CREATE TABLE IF NOT EXISTS "{table}" AS SELECT * FROM _schema')
    finally:
        con.unregister("_schema")


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    if frame.height == 0:
        return
    con.register("_incoming", frame.to_arrow())
    try:
        cols = ", ".join(f'"{c}"' for c in frame.columns)
        con.execute(f'INSERT INTO "{table}" ({cols}) SELECT {cols} FROM _incoming')
    finally:
        con.unregister("_incoming")
