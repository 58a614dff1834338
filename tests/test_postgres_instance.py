"""The scale path: a real PostgreSQL server (started here) as the Dagster instance, deploy/dagster.yaml.

The server comes from the Debian ``postgresql`` package (``.ci/run`` installs it when missing); the
test skips with the reason if no ``initdb``/``pg_ctl`` can be found.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parent.parent


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries not found (install the Debian package postgresql)")
    # not under pytest's tmp dir: that one is private to root, and postgres must not run as root
    base = Path(tempfile.mkdtemp(prefix="alloc_pg_"))
    data = base / "data"
    port = _free_port()
    run_as = []
    if os.geteuid() == 0:  # postgres refuses to run as root: use the postgres system user
        shutil.chown(base, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, initdb, "-D", str(data), "-U", "dagster", "--auth=trust"], check=True,
                   capture_output=True)
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-l", str(base / "server.log"), "-o",
                    f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "-w", "start"], check=True, capture_output=True)
    try:
        for _ in range(50):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        env = {"DAGSTER_PG_USER": "dagster", "DAGSTER_PG_PASSWORD": "", "DAGSTER_PG_HOST": "127.0.0.1",
               "DAGSTER_PG_DB": "postgres", "DAGSTER_PG_PORT": str(port)}
        yield env
    finally:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.postgres
def test_daily_job_on_a_postgres_instance(postgres, tmp_path, monkeypatch):
    for k, v in postgres.items():
        monkeypatch.setenv(k, v)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ALLOC_HOME", str(tmp_path / "alloc"))
    from alloc_assets.definitions import defs
    from alloc_assets.partitions import range_tags

    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    job = defs.resolve_job_def("history_job")
    # a short history, then the daily job for the next trading day, then the report
    assert job.execute_in_process(instance=instance, tags=range_tags("2022-10-03", "2022-12-27")).success
    daily = job.execute_in_process(instance=instance, partition_key="2022-12-28")
    assert daily.success
    assert defs.resolve_job_def("report_job").execute_in_process(instance=instance).success
    materialized = instance.get_materialized_partitions(dg.AssetKey("applied_scalars"))
    assert "2022-12-28" in materialized and len(materialized) == 61
    record = instance.get_latest_materialization_event(dg.AssetKey("comparison_report"))
    assert record is not None
    from resources.warehouse import DuckDBWarehouse

    rows = DuckDBWarehouse().query("SELECT count(*) AS n, max(date) AS last FROM risk_scalars")
    assert rows["n"][0] == 61 and str(rows["last"][0]) == "2022-12-28"
