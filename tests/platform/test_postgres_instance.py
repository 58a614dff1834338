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

REPO = Path(__file__).resolve().parents[2]


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
def test_refresh_job_on_a_postgres_instance(postgres, tmp_path, monkeypatch):
    """deploy/dagster.yaml on a real server: PostgreSQL run and event storage, the run queue, the
    run-granularity warehouse pool, run monitoring and crash-only run retries; then a year of
    history, the next year (the allocator layers continue from the stored carry) and a derive
    run with nothing new (a no-op), all recorded on the server."""
    for k, v in postgres.items():
        monkeypatch.setenv(k, v)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "deploy" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ALLOC_HOME", str(tmp_path / "alloc"))
    monkeypatch.delenv("ALLOC_MARKET_DATA", raising=False)
    from alloc_assets.core.market.panel import load_bundled_panel
    from alloc_assets.definitions import defs
    from resources.warehouse import DuckDBWarehouse

    instance = dg.DagsterInstance.get()
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    pools = instance.get_concurrency_config().pool_config
    assert pools.default_pool_limit == 1 and str(getattr(pools.pool_granularity, "value", pools.pool_granularity)) == "run"
    assert instance.run_monitoring_enabled and instance.run_monitoring_max_runtime_seconds == 7200
    assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
    assert not instance.run_retries_retry_on_asset_or_op_failure

    refresh = defs.resolve_job_def("refresh_job")
    assert refresh.execute_in_process(instance=instance, partition_key="2021").success
    nxt = refresh.execute_in_process(instance=instance, partition_key="2022")
    assert nxt.success
    dates = [str(d) for d in load_bundled_panel().dates.astype("datetime64[D]")]
    days_2021 = [d for d in dates if d.startswith("2021-")]
    days_2022 = [d for d in dates if d.startswith("2022-")]
    state = nxt.asset_materializations_for_node("latent_state")[0].metadata
    assert state["computed_rows_from"].value == days_2022[0] and state["full_recompute"].value is False
    assert state["computed_through"].value == days_2022[-1]
    derive = defs.resolve_job_def("derive_job").execute_in_process(instance=instance)
    assert derive.success
    assert derive.asset_materializations_for_node("latent_state")[0].metadata["computed_rows_from"].value == "nothing to compute"

    assert set(instance.get_materialized_partitions(dg.AssetKey("market_prices"))) == {"2021", "2022"}
    runs = instance.get_runs()
    assert [r.job_name for r in reversed(runs)] == ["refresh_job", "refresh_job", "derive_job"]
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    for key in ("applied_scalars", "comparison_report"):
        record = instance.get_latest_materialization_event(dg.AssetKey(key))
        assert record is not None and record.run_id == derive.run_id, key
    rows = DuckDBWarehouse().query("SELECT count(*) AS n, min(date) AS first, max(date) AS last FROM risk_scalars")
    assert rows["n"][0] == len(days_2021) + len(days_2022)
    assert (str(rows["first"][0]), str(rows["last"][0])) == (days_2021[0], days_2022[-1])
