"""Foundation benchmark: the 8,313-partition single-run backfill of ``market_prices``."""

from __future__ import annotations

import os
import tempfile
import time

from benchmarks._harness import time_median

START, END = "1990-01-02", "2022-12-28"


def _backfill(instance_kind: str) -> float:
    """One end-to-end run through Dagster: run creation (planned events), read, validate, write,
    8,313 materialization events and the check results. Returns wall seconds."""
    import dagster as dg

    from alloc_assets.definitions import defs
    from alloc_assets.partitions import range_tags

    os.environ["ALLOC_HOME"] = tempfile.mkdtemp(prefix="bench_market_")
    if instance_kind == "ephemeral":
        instance = dg.DagsterInstance.ephemeral()
    else:
        home = tempfile.mkdtemp(prefix="bench_dagster_home_")
        instance = dg.DagsterInstance.from_config(home)
    job = defs.resolve_job_def("history_job")
    t0 = time.perf_counter()
    result = job.execute_in_process(instance=instance, tags=range_tags(START, END))
    elapsed = time.perf_counter() - t0
    assert result.success
    assert len(result.asset_materializations_for_node("market_prices")) == 8313
    return elapsed


def bench_market_backfill_full_history() -> dict:
    import logging

    logging.getLogger("dagster").setLevel(logging.WARNING)
    median, times = time_median(lambda: _backfill("ephemeral"), repeats=3, warmup=0)
    sqlite_s = _backfill("sqlite")
    return {
        "median_s": median,
        "times_s": times,
        "target_s": 60.0,
        "partitions": 8313,
        "rows": 8313 * 20,
        "instance": "DagsterInstance.ephemeral() (in-memory SQLite event log)",
        "persistent_sqlite_instance_s": sqlite_s,
        "note": "persistent_sqlite_instance_s: the same run on an on-disk SQLite instance "
                "(dagster dev default), measured once in the same process",
    }
