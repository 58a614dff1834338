"""The local Dagster instance file (``$DAGSTER_HOME/dagster.yaml``) written by ``make demo`` / ``make ui``.

Stock SQLite storage (nothing patched or replaced). What it adds to Dagster's defaults:
- the ``warehouse`` pool at limit 1 and **run** granularity: one warehouse-writing run at a time,
  decided by the run queue before a run starts (runs never interleave step by step);
- run monitoring: a run whose worker died is failed (``max_runtime_seconds`` as the last resort)
  and its pool slot is freed ``free_slots_after_run_end_seconds`` after it ended, so a killed run
  never blocks later writers;
- run retries for crashes only (``retry_on_asset_or_op_failure: false``): bad data is a
  ``Failure(allow_retries=False)`` and transient warehouse errors are retried by the step's
  ``RetryPolicy``.
``deploy/dagster.yaml`` (PostgreSQL) carries the same settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from resources.settings import alloc_home

SETTINGS_YAML = """\
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
concurrency:
  runs:
    max_concurrent_runs: 4
  pools:
    default_limit: 1        # the 'warehouse' pool: one DuckDB writer ...
    granularity: run        # ... per run, decided before the run starts
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_runtime_seconds: 7200
  poll_interval_seconds: 10
  free_slots_after_run_end_seconds: 10
run_retries:
  enabled: true
  max_retries: 2
  retry_on_asset_or_op_failure: false   # crashes only; assets retry transient errors themselves
sensors:                    # evaluate the sensors side by side (landing, catch-up, watchdog)
  use_threads: true
  num_workers: 4
telemetry:
  enabled: false
"""

MARKER = "# regime-allocator instance v2"


def instance_yaml() -> str:
    """The local instance: stock SQLite storage under ``$DAGSTER_HOME`` plus the settings above."""
    return f"{MARKER}: stock SQLite storage under DAGSTER_HOME (written by make demo / make ui)\n" + SETTINGS_YAML


def prepare_instance_home() -> Path:
    """``$DAGSTER_HOME`` (default ``$ALLOC_HOME/dagster``) with a current ``dagster.yaml``. A file
    written by an older version of this project (custom event-log storage) is replaced; a file a
    user wrote by hand (no marker) is left alone."""
    home = Path(os.environ.get("DAGSTER_HOME") or alloc_home() / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    cfg = home / "dagster.yaml"
    text = cfg.read_text() if cfg.exists() else ""
    if not text or "alloc_assets.instance_storage" in text or (text.startswith("# regime-allocator instance")
                                                               and not text.startswith(MARKER)):
        cfg.write_text(instance_yaml())
    return home
