"""Faults: a run worker killed inside the warehouse write, an outside process holding DuckDB open,
a corrupted warehouse file, a run pointed at a file that is not an accepted copy, a landing file
changed after it was accepted. After each, the warehouse holds what an uninterrupted run gives.

(The daemon-level faults, a ``kill -9`` of a run worker launched by the real daemon and a daemon
restart during a run, are in ``test_end_to_end.py``.)
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from alloc_assets.definitions import defs
from resources.warehouse import DuckDBWarehouse
from tests.automation.test_automation import QUIET, drop, landing_csv, tables, tick

REPO = Path(__file__).resolve().parents[2]


def run_refresh(instance, **kwargs):
    return defs.resolve_job_def("refresh_job").execute_in_process(
        instance=instance, raise_on_error=False, run_config=kwargs.pop("run_config", QUIET), **kwargs)


def failure_text(result) -> str:
    """Every step failure's message, with the errors that caused it (a retried step's last cause)."""
    out = []
    for e in result.all_events:
        if e.is_step_failure:
            err = e.event_specific_data.error
            while err is not None:
                out.append(err.message)
                err = err.cause
    return "\n".join(out)


def digest(home: Path) -> str:
    """A digest of every table's sorted rows (the warehouse's content, not its bytes)."""
    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        h = hashlib.sha256()
        for (name,) in con.execute("SELECT table_name FROM information_schema.tables "
                                   "ORDER BY table_name").fetchall():
            h.update(name.encode())
            rows = con.execute(f'SELECT * FROM "{name}"').fetchall()
            h.update(repr(sorted(map(repr, rows))).encode())
        return h.hexdigest()
    finally:
        con.close()


@pytest.fixture()
def home_2021(alloc_home, monkeypatch):
    monkeypatch.setenv("ALLOC_OVERRIDES", str(alloc_home / "none.csv"))
    instance = dg.DagsterInstance.ephemeral()
    assert run_refresh(instance, partition_key="2021").success
    return alloc_home, instance


@pytest.mark.timed
def test_kill_9_inside_the_warehouse_write_loses_nothing_and_the_next_run_proceeds(home_2021, tmp_path):
    home, instance = home_2021
    before = digest(home)
    marker = tmp_path / "paused.pid"
    script = textwrap.dedent("""
        import dagster as dg
        from alloc_assets.definitions import defs
        r = defs.resolve_job_def("refresh_job").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), partition_key="2022", raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
        print("finished", r.success)
    """)
    env = {**os.environ, "ALLOC_FAULT_PAUSE": "in_write:120", "ALLOC_FAULT_MARKER": str(marker)}
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert marker.exists(), proc.communicate()[0].decode()[-3000:]
    assert int(marker.read_text()) == proc.pid
    os.kill(proc.pid, signal.SIGKILL)  # inside the open transaction of market_prices
    proc.wait()
    assert digest(home) == before  # the warehouse holds exactly what it held
    started = time.time()
    result = run_refresh(instance, partition_key="2022")  # the next run (the marker exists: no pause)
    assert result.success, failure_text(result)
    assert time.time() - started < 60

    # the same as an uninterrupted run
    ref = tmp_path / "ref"
    ref.mkdir()
    os.environ["ALLOC_HOME"] = str(ref)
    try:
        inst = dg.DagsterInstance.ephemeral()
        assert run_refresh(inst, partition_key="2021").success and run_refresh(inst, partition_key="2022").success
    finally:
        os.environ["ALLOC_HOME"] = str(home)
    got, want = tables(home), tables(ref)
    for name in want:
        assert got[name].equals(want[name]), name


@pytest.mark.timed
def test_an_outside_reader_holding_the_file_makes_the_writer_wait_then_proceed(home_2021):
    home, instance = home_2021
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time, sys
        con = duckdb.connect({str(home / "warehouse.duckdb")!r}, read_only=True)
        print("open", flush=True)
        time.sleep(4)
        con.close()
    """)], stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"open"
    started = time.time()
    result = run_refresh(instance, partition_key="2022")
    assert result.success, failure_text(result)
    assert time.time() - started > 2  # it waited for the reader
    holder.wait()


def test_an_outside_reader_that_never_lets_go_fails_with_a_clear_message(home_2021, monkeypatch):
    home, instance = home_2021
    before = digest(home)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, time
        con = duckdb.connect({str(home / "warehouse.duckdb")!r}, read_only=True)
        print("open", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b"open"
        from alloc_assets.defs.resources import RESOURCES

        resources = {**RESOURCES, "warehouse": DuckDBWarehouse(lock_timeout_seconds=0.5)}
        from alloc_assets.defs.market.assets import market_prices

        result = dg.materialize([market_prices], instance=instance, resources=resources, partition_key="2022",
                                raise_on_error=False, run_config=QUIET)
        assert not result.success
        text = failure_text(result)
        assert "is locked by another process" in text and "warehouse.duckdb" in text
        # the step retried (transient) before giving up
        retries = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        assert len(retries) == 2
    finally:
        holder.kill()
        holder.wait()
    assert digest(home) == before


def test_a_corrupted_warehouse_file_fails_at_once_with_what_to_do(alloc_home):
    (alloc_home / "warehouse.duckdb").write_bytes(b"this is not a database" * 200)
    result = run_refresh(dg.DagsterInstance.ephemeral(), partition_key="2022")
    assert not result.success
    text = failure_text(result)
    assert "is not a readable DuckDB database" in text and "Move the file aside" in text
    assert "Traceback" not in text
    assert not [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]  # no retry on this
    assert (alloc_home / "warehouse.duckdb").read_bytes() == b"this is not a database" * 200


def test_a_run_reads_the_accepted_copy_not_a_file_changed_after_acceptance(home_2021):
    home, instance = home_2021
    assert run_refresh(instance, partition_key="2022").success
    landing = drop(home, ["2022-12-29"])
    result, _ = tick(landing, None, instance)
    req = result.run_requests[0]
    original = landing / "feed_2022-12-29.csv"
    accepted_bytes = Path(req.run_config["ops"]["market_prices"]["config"]["files"][0]).read_bytes()
    landing_csv(original, "2022-12-29", factor=2.0)  # rewritten after the sensor validated it
    run = run_refresh(instance, partition_key=req.partition_key, tags=req.tags, run_config={**req.run_config, **QUIET})
    assert run.success, failure_text(run)
    stored = DuckDBWarehouse().query("SELECT close FROM market_prices WHERE date = DATE '2022-12-29' AND symbol = 'AAPL'")
    header, row = accepted_bytes.decode().splitlines()
    want = float(row.split(",")[header.split(",").index("AAPL")])
    assert stored["close"][0] == want
    assert original.exists()  # changed content: not consumed, the next tick sees a corrected file


def test_a_run_refuses_a_file_that_is_not_an_accepted_copy(home_2021, tmp_path):
    home, instance = home_2021
    outside = landing_csv(tmp_path / "x_2021-12-31.csv", "2021-12-31")
    cfg = {"ops": {"market_prices": {"config": {"files": [str(outside)]}}}, **QUIET}
    result = run_refresh(instance, partition_key="2021", run_config=cfg)
    assert not result.success and "is not an accepted landing copy" in failure_text(result)
