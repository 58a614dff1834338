"""Operations benchmarks: a sensor tick over 1,000 landing files; a new day from file to report."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks._harness import time_median


def _landing(directory: Path, days: list[str], symbols: list[str]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    header = "date," + ",".join(symbols)
    for i, d in enumerate(days):
        (directory / f"prices_{d}.csv").write_text(header + "\n" + d + "," + ",".join(f"{10 + i * 0.01 + j:.4f}" for j in range(len(symbols))) + "\n")


def bench_sensor_tick_1000_files() -> dict:
    import dagster as dg

    from alloc_assets.definitions import defs
    from alloc_assets.defs.automation import LandingZone, new_market_data_sensor
    from alloc_assets.partitions import trading_day_partitions

    days = [k for k in trading_day_partitions.get_partition_keys() if k >= "2019-01-01"][:1000]
    symbols = [f"S{i:02d}" for i in range(20)]
    root = Path(tempfile.mkdtemp(prefix="bench_sensor_"))
    _landing(root / "landing", days, symbols)
    zone = LandingZone(path=str(root / "landing"))

    def tick(cursor):
        ctx = dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral(), cursor=cursor,
                                      resources={"landing": zone}, definitions=defs)
        result = new_market_data_sensor(ctx)
        return result, ctx.cursor

    first, cursor = tick(None)
    assert len(first.run_requests) == 1000
    median, times = time_median(lambda: tick(None), repeats=5, warmup=1)
    steady, _ = time_median(lambda: tick(cursor), repeats=5, warmup=1)
    return {"median_s": median, "times_s": times, "target_s": 1.0, "files": 1000,
            "steady_state_median_s": steady,
            "note": "median_s: a tick that finds 1,000 new files, validates each and requests 1,000 runs; "
                    "steady_state_median_s: a tick over the same 1,000 files already in the cursor"}


def bench_new_day_file_to_report() -> dict:
    """Drop a landing file for the day after the stored history; the sensor tick, the daily run
    (market, state, regime, scalars; one partition) and the report run, in process, on the local
    instance as make demo configures it. Dagster run overhead included; the daemon's polling
    interval (30 s by default, ALLOC_SENSOR_INTERVAL_SECONDS) is not."""
    import logging
    import shutil

    logging.getLogger("dagster").setLevel(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench_day_"))
    os.environ["ALLOC_HOME"] = str(root / "alloc")
    os.environ["DAGSTER_EVENT_BATCH_SIZE"] = "10000"
    import dagster as dg

    from alloc_assets.definitions import defs
    from alloc_assets.demo import instance_yaml
    from alloc_assets.defs.automation import LandingZone, new_market_data_sensor
    from alloc_assets.partitions import range_tags
    from tests.test_end_to_end import landing_file

    home = root / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text(instance_yaml(home))
    instance = dg.DagsterInstance.from_config(str(home))
    assert defs.resolve_job_def("history_job").execute_in_process(
        instance=instance, tags=range_tags("2021-01-04", "2022-12-28")).success
    assert defs.resolve_job_def("report_job").execute_in_process(instance=instance).success
    history = root / "alloc" / "warehouse.duckdb"
    snapshot = root / "snapshot.duckdb"
    shutil.copy(history, snapshot)

    def one_day():
        shutil.copy(snapshot, history)
        landing = root / "alloc" / "landing"
        if landing.exists():
            shutil.rmtree(landing)
        landing_file(landing)
        ctx = dg.build_sensor_context(instance=instance, resources={"landing": LandingZone()}, definitions=defs)
        result = new_market_data_sensor(ctx)
        (req,) = result.run_requests
        run = defs.resolve_job_def("history_job").execute_in_process(
            instance=instance, partition_key=req.partition_key, run_config=req.run_config)
        assert run.success
        assert defs.resolve_job_def("report_job").execute_in_process(instance=instance).success

    median, times = time_median(one_day, repeats=3, warmup=1)
    return {"median_s": median, "times_s": times, "target_s": 30.0,
            "note": "sensor tick + one-partition history_job run + report_job run, in process, persistent instance"}
