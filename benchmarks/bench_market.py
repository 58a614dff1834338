"""Foundation benchmark: the 8,313-partition single-run backfill of ``market_prices``."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks._harness import time_median

START, END = "1990-01-02", "2022-12-28"


def _backfill(instance_kind: str) -> float:
    """One end-to-end run through Dagster: run creation (planned events), read, validate, write,
    8,313 materialization events and the check results, on a fresh warehouse. Wall seconds."""
    import dagster as dg

    from alloc_assets.definitions import defs
    from alloc_assets.demo import instance_yaml
    from alloc_assets.partitions import range_tags

    os.environ["ALLOC_HOME"] = tempfile.mkdtemp(prefix="bench_market_")
    home = Path(tempfile.mkdtemp(prefix="bench_dagster_home_"))
    if instance_kind == "project":  # the instance make demo / make ui use
        (home / "dagster.yaml").write_text(instance_yaml(home))
        os.environ["DAGSTER_EVENT_BATCH_SIZE"] = "10000"
    else:  # Dagster's default on-disk SQLite instance
        os.environ.pop("DAGSTER_EVENT_BATCH_SIZE", None)
    instance = dg.DagsterInstance.from_config(str(home))
    job = defs.resolve_job_def("history_job")
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=instance, tags=range_tags(START, END),
                                    asset_selection=[dg.AssetKey("market_prices")])
    elapsed = time.perf_counter() - t0
    assert result.success
    assert len(instance.get_materialized_partitions(dg.AssetKey("market_prices"))) == 8313
    instance.dispose()
    return elapsed


def bench_market_backfill_full_history() -> dict:
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
    median, times = time_median(lambda: _backfill("project"), repeats=3, warmup=0)
    plain = _backfill("plain")
    return {
        "median_s": median,
        "times_s": times,
        "target_s": 60.0,
        "partitions": 8313,
        "rows": 8313 * 20,
        "instance": "persistent on-disk SQLite instance as configured by make demo "
                    "(BatchingSqliteEventLogStorage, DAGSTER_EVENT_BATCH_SIZE=10000)",
        "plain_sqlite_instance_s": plain,
        "speedup_vs_plain_sqlite": plain / median,
        "note": "plain_sqlite_instance_s: the same run on Dagster's default SQLite event log "
                "(one transaction per event), measured once in the same process",
    }
