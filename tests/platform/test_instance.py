"""The instance files: stock storage, the warehouse pool at run granularity, run monitoring that
frees slots, crash-only run retries; the local file and the PostgreSQL one agree on all of it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from alloc_assets.instance import MARKER, instance_yaml, prepare_instance_home

REPO = Path(__file__).resolve().parents[2]
SHARED_KEYS = ("concurrency", "run_monitoring", "run_retries")


def test_the_local_instance_loads_with_the_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text(instance_yaml())
    instance = dg.DagsterInstance.get()
    pools = instance.get_concurrency_config().pool_config
    assert pools.pool_granularity.value == "run" and pools.default_pool_limit == 1
    monitoring = instance.run_monitoring_settings
    assert monitoring["enabled"] and monitoring["free_slots_after_run_end_seconds"] > 0
    assert monitoring["max_runtime_seconds"] > 0
    assert instance.run_retries_enabled and instance.run_retries_max_retries >= 1
    assert not instance.run_retries_retry_on_asset_or_op_failure
    assert type(instance.event_log_storage).__module__.startswith("dagster.")  # stock storage, nothing replaced


def test_the_postgres_instance_file_carries_the_same_settings():
    local = yaml.safe_load(instance_yaml())
    deploy = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
    for key in SHARED_KEYS:
        want = dict(local[key])
        got = dict(deploy[key])
        assert {k: v for k, v in got.items() if k != "runs"} == {k: v for k, v in want.items() if k != "runs"}, key
    assert deploy["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"


def test_an_instance_file_from_an_older_version_is_replaced_and_a_hand_written_one_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    cfg = tmp_path / "dagster.yaml"
    cfg.write_text("event_log_storage:\n  module: alloc_assets.instance_storage\n  class: BatchingSqliteEventLogStorage\n")
    prepare_instance_home()
    assert cfg.read_text().startswith(MARKER)
    cfg.write_text("telemetry:\n  enabled: false\n")  # a user's own file
    prepare_instance_home()
    assert cfg.read_text() == "telemetry:\n  enabled: false\n"
