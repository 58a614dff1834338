"""``make demo``: materialize the graph on the bundled data through Dagster and print the result.

Runs are recorded in the persistent Dagster instance under ``$DAGSTER_HOME`` (default
``$ALLOC_HOME/dagster``), so ``make ui`` shows them afterwards.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from resources.settings import alloc_home


def instance_yaml(home: Path) -> str:
    """The local instance: SQLite under ``home``, events stored in batches, one warehouse writer."""
    return (
        "# Local Dagster instance of regime-allocator (written by make demo / make ui).\n"
        "telemetry:\n  enabled: false\n"
        "event_log_storage:  # one transaction per batch of events (alloc_assets/instance_storage.py)\n"
        "  module: alloc_assets.instance_storage\n"
        "  class: BatchingSqliteEventLogStorage\n"
        f"  config:\n    base_dir: {home / 'history' / 'runs'}\n"
        "concurrency:\n  pools:\n    default_limit: 1  # the 'warehouse' pool: one DuckDB writer at a time\n"
    )


def prepare_instance_home() -> Path:
    """``$DAGSTER_HOME`` (default ``$ALLOC_HOME/dagster``) with a ``dagster.yaml``."""
    home = Path(os.environ.get("DAGSTER_HOME") or alloc_home() / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    cfg = home / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text(instance_yaml(home))
    os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", "10000")
    return home


def main() -> int:
    prepare_instance_home()
    import dagster as dg

    from alloc_assets.core.market_io import read_market_data
    from alloc_assets.definitions import defs
    from alloc_assets.partitions import range_tags
    from resources.market_source import MarketDataSource
    from resources.warehouse import DuckDBWarehouse

    source = MarketDataSource()
    data = source.load()
    start, end = str(data.prices["date"].min()), str(data.prices["date"].max())
    print(f"regime-allocator demo: source = {source.describe()}, {start} .. {end}")
    print(f"warehouse = {DuckDBWarehouse().path}; Dagster instance = {os.environ['DAGSTER_HOME']}")
    instance = dg.DagsterInstance.get()
    job = defs.resolve_job_def("history_job")
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=instance, tags=range_tags(start, end), raise_on_error=False)
    elapsed = time.perf_counter() - t0
    if not result.success:
        failure = next((e for e in result.all_events if e.is_step_failure), None)
        print("history run FAILED:", failure.event_specific_data.error.message if failure else result.run_id, file=sys.stderr)
        return 1
    print(f"history run {result.run_id}: {len(result.asset_materializations_for_node('market_prices'))} "
          f"partitions of market_prices in {elapsed:.1f} s")
    wh = DuckDBWarehouse()
    counts = wh.query("SELECT count(*) AS rows, count(DISTINCT date) AS dates, count(DISTINCT symbol) AS symbols, "
                      "min(date) AS first, max(date) AS last FROM market_prices")
    print(counts)
    for ev in result.get_asset_check_evaluations():
        status = "passed" if ev.passed else f"FAILED ({ev.severity.value})"
        print(f"  check {ev.check_name:<24} {status}")
    print("\nNot built yet: latent_state, regime_series, risk_scalars, applied_scalars, strategies, "
          "backtests and the comparison report (issues 3-4); the demo will run them when they land.")
    del read_market_data
    return 0


if __name__ == "__main__":
    sys.exit(main())
