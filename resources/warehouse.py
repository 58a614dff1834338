"""The DuckDB warehouse (``$ALLOC_HOME/warehouse.duckdb``) behind every stored artifact.

Assets own their writes: an asset replaces its rows in one transaction (``DELETE`` the window,
``INSERT`` the new rows, record the change, ``COMMIT``), so a failed or killed write leaves the
tables exactly as they were and a re-run is idempotent. DuckDB allows one read-write process or
many read-only ones: runs that write are serialised by the ``warehouse`` pool at run granularity
(instance files under ``deploy/``), readers open read-only, and a connection that meets a lock held
by another process waits (``lock_timeout_seconds``) before it fails with a message naming the
holder. A file that is not a DuckDB database fails at once with what to do, never a retry.

Change log: every layer that writes records ``(asset, version, changed_from, through)`` in
``layer_changes``; a consumer stores the upstream version it has consumed in ``layer_watermark``
(with the hash of its settings), so it recomputes exactly from the earliest changed day.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
from pydantic import Field

from resources.settings import default_warehouse_path, sql_dir

_SESSIONS: dict[tuple[str, int], duckdb.DuckDBPyConnection] = {}


class WarehouseLocked(Exception):
    """Another process holds the DuckDB file's lock longer than ``lock_timeout_seconds``
    (transient: the asset's retry policy retries the step)."""


@dataclass(frozen=True)
class Change:
    """One entry of the change log: ``asset`` rows dated ``changed_from``..``through`` were written."""

    asset: str
    changed_from: dt.date | None
    through: dt.date | None
    run_id: str = ""


@dataclass(frozen=True)
class Watermark:
    """The upstream version a consumer has consumed, and the settings hash it computed with."""

    asset: str
    upstream: str
    version: int
    config_hash: str


def _fault_point(name: str) -> None:
    """Fault injection for the crash tests: with ``ALLOC_FAULT_PAUSE=<name>:<seconds>`` and
    ``ALLOC_FAULT_MARKER=<file>``, the first process to get here writes its PID to the marker and
    sleeps (e.g. inside the open write transaction) so a test can ``kill -9`` it there; once the
    marker exists, later runs (the retry) pass straight through."""
    import os

    spec, marker = os.environ.get("ALLOC_FAULT_PAUSE", ""), os.environ.get("ALLOC_FAULT_MARKER", "")
    if not spec.startswith(name + ":") or not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    time.sleep(float(spec.split(":", 1)[1]))


def open_duckdb(file: str, read_only: bool, lock_timeout_seconds: float) -> duckdb.DuckDBPyConnection:
    """Open the DuckDB file, waiting while another process holds its lock; a file that is not a
    DuckDB database raises ``dg.Failure`` (no retry) saying what to do."""
    deadline = time.monotonic() + max(0.0, lock_timeout_seconds)
    delay = 0.05
    while True:
        try:
            return duckdb.connect(file, read_only=read_only)
        except duckdb.Error as exc:
            msg = str(exc)
            if "lock" in msg.lower():
                if time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                raise WarehouseLocked(
                    f"the warehouse {file} is locked by another process after waiting {lock_timeout_seconds:g} s "
                    f"({msg.splitlines()[0]}). Close that process (a DuckDB shell or notebook holding the file "
                    "open) and re-run.") from None
            if Path(file).exists() and ("not a valid duckdb" in msg.lower() or "serialization" in msg.lower()
                                        or "corrupt" in msg.lower() or "checksum" in msg.lower()):
                raise dg.Failure(
                    description=(f"the warehouse {file} is not a readable DuckDB database ({msg.splitlines()[0]}). "
                                 "Nothing was written. Move the file aside and re-run the refresh job over the "
                                 "history to rebuild it from the source and the accepted landing files."),
                    allow_retries=False) from None
            raise


class DuckDBWarehouse(dg.ConfigurableResource):
    """DuckDB database file holding one table per asset (DDL in ``sql/``)."""

    path: str = Field(default="", description="DuckDB database file; empty = $ALLOC_HOME/warehouse.duckdb "
                      "(resolved when used, so the environment of the run decides).")
    lock_timeout_seconds: float = Field(default=120.0, description="How long a connection waits for a lock held "
                                        "by another process before it fails (the step's retry policy may retry)")

    @property
    def file(self) -> str:
        return self.path or default_warehouse_path()

    def _session_key(self) -> tuple[str, int]:
        """Sessions are kept per database file and per thread: one thread never uses another's connection."""
        return (str(Path(self.file).resolve()), threading.get_ident())

    def _absent(self) -> bool:
        """No database file and no open session on it: reads return nothing instead of creating it."""
        return not Path(self.file).exists() and self._session_key() not in _SESSIONS

    @contextlib.contextmanager
    def session(self, read_only: bool = False) -> Iterator[None]:
        """Reuse one connection for every call inside the block (an asset step), instead of one
        connection per query. Nested sessions share the outer one. ``read_only``: a reader (the
        report, the world model) that never blocks the writer's file lock for writing."""
        key = self._session_key()
        if key in _SESSIONS:
            yield
            return
        if read_only and not Path(self.file).exists():
            raise dg.Failure(description=f"the warehouse {self.file} does not exist yet: run the refresh job first.",
                             allow_retries=False)
        Path(self.file).parent.mkdir(parents=True, exist_ok=True)
        con = open_duckdb(self.file, read_only, self.lock_timeout_seconds)
        _SESSIONS[key] = con
        try:
            yield
        finally:
            del _SESSIONS[key]
            con.close()

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection (the session's, inside ``session()``); read-only ones need an existing file."""
        shared = _SESSIONS.get(self._session_key())
        if shared is not None:
            yield shared
            return
        Path(self.file).parent.mkdir(parents=True, exist_ok=True)
        con = open_duckdb(self.file, read_only and Path(self.file).exists(), self.lock_timeout_seconds)
        try:
            yield con
        finally:
            con.close()

    def ensure_tables(self, *ddl_files: str) -> None:
        """Run the ``CREATE TABLE IF NOT EXISTS`` statements of ``sql/<name>.sql``."""
        with self.connect() as con:
            for name in ddl_files:
                con.execute((sql_dir() / f"{name}.sql").read_text())

    def table_exists(self, table: str) -> bool:
        if self._absent():
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
        change: Change | None = None,
        consumed: Watermark | None = None,
        stale_carries: tuple[str, dt.date] | None = None,
        rebuild: bool = False,
        scoped: dict[str, tuple[str, list[str]]] | None = None,
    ) -> int | None:
        """Replace rows dated in [start, end] of each table in ``writes``, all in ONE transaction.

        ``whole_tables`` are replaced entirely (small reference tables) in the same transaction;
        ``stale_carries`` (asset, from): the asset's carries dated on or after ``from`` are
        deleted, whatever their settings hash (they were computed with data that changed); ``change`` is appended to the change log (its
        version is returned) and ``consumed`` moves the consumer's watermark, both in the same
        transaction. Any error rolls back everything: the warehouse then holds what it held before.
        ``rebuild`` (a full recompute): a table whose columns differ from the frame's (e.g. an
        indicator added to the latent state) is dropped and re-created in the same transaction.
        ``scoped`` {table: (column, values)}: that table's window is replaced only for rows whose
        ``column`` is in ``values`` (e.g. the indicators a run carries; the others keep their rows).
        """
        version = None
        with self.connect() as con:
            if change is not None or consumed is not None or carries is not None or stale_carries is not None:
                con.execute((sql_dir() / "allocator.sql").read_text())
            con.begin()
            try:
                for table, frame in writes.items():
                    if rebuild:
                        cols = [r[0] for r in con.execute(
                            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
                            "ORDER BY ordinal_position", [table]).fetchall()]
                        if cols and cols != list(frame.columns):
                            con.execute(f'DROP TABLE "{table}"')
                    _create_like(con, table, frame)
                    if scoped and table in scoped:
                        column, values = scoped[table]
                        con.execute(f'DELETE FROM "{table}" WHERE "{date_column}" BETWEEN ? AND ? AND "{column}" IN '
                                    f"({', '.join('?' * len(values))})", [start, end, *values])
                        _insert(con, table, frame)
                        continue
                    con.execute(f'DELETE FROM "{table}" WHERE "{date_column}" BETWEEN ? AND ?', [start, end])
                    _insert(con, table, frame)
                if stale_carries is not None:
                    con.execute("DELETE FROM layer_carry WHERE asset = ? AND date >= ?", list(stale_carries))
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
                if change is not None:
                    version = int(con.execute("SELECT coalesce(max(version), 0) + 1 FROM layer_changes").fetchone()[0])
                    con.execute("INSERT INTO layer_changes VALUES (?, ?, ?, ?, ?, now())",
                                [change.asset, version, change.changed_from, change.through, change.run_id])
                if consumed is not None:
                    con.execute("DELETE FROM layer_watermark WHERE asset = ?", [consumed.asset])
                    con.execute("INSERT INTO layer_watermark VALUES (?, ?, ?, ?)",
                                [consumed.asset, consumed.upstream, consumed.version, consumed.config_hash])
                _fault_point("in_write")
                con.commit()
            except BaseException:
                con.rollback()
                raise
        return version

    def latest_version(self, asset: str) -> int:
        """The newest change-log version of ``asset`` (0: never written)."""
        if not self.table_exists("layer_changes"):
            return 0
        rows = self.query("SELECT coalesce(max(version), 0) AS v FROM layer_changes WHERE asset = ?", [asset])
        return int(rows["v"][0])

    def watermark(self, asset: str) -> Watermark | None:
        """What ``asset`` consumed of its upstream last time (None: never ran)."""
        if not self.table_exists("layer_watermark"):
            return None
        rows = self.query("SELECT * FROM layer_watermark WHERE asset = ?", [asset])
        if rows.height == 0:
            return None
        r = rows.row(0, named=True)
        return Watermark(r["asset"], r["upstream"], int(r["version"]), r["config_hash"])

    def changed_since(self, upstream: str, version: int) -> dt.date | None:
        """The earliest day ``upstream`` changed after ``version`` (None: nothing changed)."""
        if not self.table_exists("layer_changes"):
            return None
        rows = self.query("SELECT min(changed_from) AS d FROM layer_changes WHERE asset = ? AND version > ?",
                          [upstream, version])
        return rows["d"][0] if rows.height else None

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

    def append_rows(self, table: str, frame: pl.DataFrame, delete_where: str, params: list) -> None:
        """Delete the rows matching ``delete_where`` and insert ``frame``, in one transaction (a
        short write: the caller computed outside the writer's lock)."""
        with self.connect() as con:
            con.begin()
            try:
                _create_like(con, table, frame)
                con.execute(f'DELETE FROM "{table}" WHERE {delete_where}', params)
                _insert(con, table, frame)
                con.commit()
            except BaseException:
                con.rollback()
                raise

    def query(self, sql: str, params: list | None = None) -> pl.DataFrame:
        """Run a read query and return a polars frame (empty frame if the database does not exist)."""
        if self._absent():
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
