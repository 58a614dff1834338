"""Full-history benchmarks through Dagster on the stock SQLite instance (``instance_yaml()``).

``bench_refresh_full_history``: the whole bundled history (8,313 days, 1990-2022) through the market
layer, the incremental allocator layers, weights, both backtests and the report: ONE ``refresh_job``
run over the year partitions "1990".."2022", on a fresh ``ALLOC_HOME`` and ``DAGSTER_HOME`` per
repeat. Also the growth of ``DAGSTER_HOME`` (the run's bookkeeping in the SQLite instance).

``bench_market_partitioning``: why ``market_prices`` is partitioned by year. The same full-history
market load (``build_market_prices``, market layer only) on yearly partitions ("1990".."2022", 33)
and on monthly ones ("1990-01".."2022-12", 396), each as one range run on a fresh stock SQLite
instance; the difference is Dagster's bookkeeping (a materialization and the planned/check events
per partition, each committed on its own by the stock SQLite event log).
"""

from __future__ import annotations

import statistics
import time

from benchmarks._harness import QUIET, dir_mb, fresh_homes

FIRST_YEAR, LAST_YEAR = "1990", "2022"
DAYS = 8313
#: Measured before the redesign on this machine (``market_backfill_full_history``, 2026-11-23):
#: the market layer alone over 8,313 DAILY partitions on Dagster's stock SQLite event log.
DAILY_PARTITIONS_HISTORICAL_S = 156.6


def _step_seconds(instance, run_id: str) -> dict[str, float]:
    """Wall seconds of each step of a run, from its STEP_START / STEP_SUCCESS events."""
    start, out = {}, {}
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is None or not entry.step_key:
            continue
        if ev.event_type_value == "STEP_START":
            start[entry.step_key] = entry.timestamp
        elif ev.event_type_value == "STEP_SUCCESS" and entry.step_key in start:
            out[entry.step_key] = round(entry.timestamp - start[entry.step_key], 3)
    return out


def _refresh_once() -> dict:
    import dagster as dg

    from alloc_assets.definitions import defs
    from alloc_assets.defs.market.partitions import range_tags
    from resources.warehouse import DuckDBWarehouse

    _, alloc, home = fresh_homes("bench_refresh_")
    instance = dg.DagsterInstance.get()
    before = dir_mb(home)
    job = defs.resolve_job_def("refresh_job")
    t0, c0 = time.perf_counter(), time.process_time()
    result = job.execute_in_process(instance=instance, tags=range_tags(FIRST_YEAR, LAST_YEAR), run_config=QUIET)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result.success
    parts = instance.get_materialized_partitions(dg.AssetKey("market_prices"))
    assert len(parts) == int(LAST_YEAR) - int(FIRST_YEAR) + 1, parts
    steps = _step_seconds(instance, result.run_id)
    events = len(instance.all_logs(result.run_id))
    instance.dispose()
    rows = DuckDBWarehouse().query(
        "SELECT (SELECT count(*) FROM market_prices) AS market, (SELECT count(*) FROM latent_state) AS state, "
        "(SELECT count(*) FROM regime_series) AS regimes, (SELECT count(*) FROM risk_scalars) AS scalars")
    counts = rows.to_dicts()[0]
    assert counts["state"] == DAYS and counts["market"] == DAYS * 20, counts
    return {"s": elapsed, "cpu_s": cpu, "before_mb": before, "after_mb": dir_mb(home), "warehouse_mb": dir_mb(alloc),
            "steps": steps, "events": events, "rows": counts}


def bench_refresh_full_history() -> dict:
    runs = [_refresh_once() for _ in range(3)]
    times = [r["s"] for r in runs]
    growth = [r["after_mb"] - r["before_mb"] for r in runs]
    last = runs[-1]
    return {
        "median_s": statistics.median(times),
        "times_s": times,
        "cpu_s": [round(r["cpu_s"], 2) for r in runs],
        "target_s": 30.0,
        "instance_growth_mb": round(statistics.median(growth), 2),
        "instance_growth_mb_each": [round(g, 2) for g in growth],
        "instance_mb_before": round(last["before_mb"], 2),
        "target_instance_growth_mb": 50.0,
        "meets_instance_growth_target": bool(statistics.median(growth) < 50.0),
        "warehouse_and_reports_mb": round(last["warehouse_mb"], 1),
        "days": DAYS,
        "partitions": int(LAST_YEAR) - int(FIRST_YEAR) + 1,
        "run_events": last["events"],
        "rows": last["rows"],
        "steps_s_last_repeat": last["steps"],
        "instance": "stock SQLite (alloc_assets.instance.instance_yaml()), fresh DAGSTER_HOME per repeat",
        "note": "median_s: ONE refresh_job run over the year partitions 1990..2022 (market -> latent_state -> "
                "regime_series -> risk_scalars -> applied_scalars -> weights -> both backtests -> comparison_report), "
                "in process, fresh ALLOC_HOME and DAGSTER_HOME each repeat, 3 repeats in one process (times_s[0] is "
                "the process's first run). cpu_s: CPU seconds of the process during each run (all threads; less "
                "sensitive than wall time to other load on the 2-core machine). instance_growth_mb: du of DAGSTER_HOME after the run minus after "
                "instance creation.",
    }


def _market_load(partitions_def, start: str, end: str) -> dict:
    import dagster as dg

    from alloc_assets.defs.market.assets import build_market_prices
    from alloc_assets.defs.market.partitions import range_tags
    from resources.landing import LandingZone
    from resources.market_source import MarketDataSource
    from resources.warehouse import DuckDBWarehouse

    _, _, home = fresh_homes("bench_partitioning_")
    instance = dg.DagsterInstance.get()
    before = dir_mb(home)
    asset = build_market_prices(partitions_def)
    n = len(partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(start, end)))
    resources = {"warehouse": DuckDBWarehouse(), "market_source": MarketDataSource(), "landing": LandingZone()}
    t0, c0 = time.perf_counter(), time.process_time()
    result = dg.materialize([asset], instance=instance, resources=resources, tags=range_tags(start, end),
                            run_config=QUIET)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert result.success
    assert len(instance.get_materialized_partitions(dg.AssetKey("market_prices"))) == n
    events = len(instance.all_logs(result.run_id))
    instance.dispose()
    rows = DuckDBWarehouse().query("SELECT count(*) AS n FROM market_prices")["n"][0]
    assert rows == DAYS * 20, rows
    return {"s": elapsed, "cpu_s": cpu, "growth_mb": dir_mb(home) - before, "partitions": n, "events": events}


def bench_market_partitioning() -> dict:
    from alloc_assets.defs.market.partitions import market_partitions, monthly_market_partitions

    yearly, monthly = [], []
    for _ in range(3):  # interleaved, so a slow moment of the machine hits both
        yearly.append(_market_load(market_partitions, FIRST_YEAR, LAST_YEAR))
        monthly.append(_market_load(monthly_market_partitions, f"{FIRST_YEAR}-01", f"{LAST_YEAR}-12"))
    y = statistics.median(r["s"] for r in yearly)
    m = statistics.median(r["s"] for r in monthly)
    return {
        "median_s": y,
        "times_s": [r["s"] for r in yearly],
        "yearly_median_s": y,
        "monthly_median_s": m,
        "monthly_times_s": [r["s"] for r in monthly],
        "monthly_over_yearly": m / y,
        "yearly_cpu_s": [round(r["cpu_s"], 2) for r in yearly],
        "monthly_cpu_s": [round(r["cpu_s"], 2) for r in monthly],
        "monthly_over_yearly_cpu": statistics.median(r["cpu_s"] for r in monthly)
                                   / statistics.median(r["cpu_s"] for r in yearly),
        "yearly_partitions": yearly[0]["partitions"],
        "monthly_partitions": monthly[0]["partitions"],
        "yearly_instance_growth_mb": round(statistics.median(r["growth_mb"] for r in yearly), 2),
        "monthly_instance_growth_mb": round(statistics.median(r["growth_mb"] for r in monthly), 2),
        "yearly_run_events": yearly[0]["events"],
        "monthly_run_events": monthly[0]["events"],
        "daily_historical_s": DAILY_PARTITIONS_HISTORICAL_S,
        "daily_over_yearly_historical": DAILY_PARTITIONS_HISTORICAL_S / y,
        "instance": "stock SQLite (alloc_assets.instance.instance_yaml()), fresh DAGSTER_HOME per run",
        "note": "the full-history market load (8,313 days x 20 stocks + SP500; market layer only, "
                "build_market_prices) as one range run: median_s = yearly partitions 1990..2022, monthly_median_s "
                "= monthly partitions 1990-01..2022-12, 3 runs each, interleaved. The data work is the same; the "
                "difference is Dagster's per-partition bookkeeping. daily_historical_s: 8,313 daily partitions on "
                "the stock SQLite event log, measured before the redesign (entry market_backfill_full_history, "
                "plain_sqlite_instance_s, 2026-11-23), not re-measured.",
    }


def bench_load_validate_bundled_csv() -> dict:
    """The whole bundled history read from its CSV files (no cache: ``read_market_data``, the
    reader every source goes through) and validated (``market_price_checks``: pandera schema,
    uniqueness, window, every session, the universe on every date, return jumps; the benchmark
    through the same checks). Target 1 s. 5 repeats after one warm-up (imports and the
    trading calendar are loaded once per process, as in a run)."""
    from alloc_assets.core.market.calendar import sessions_between
    from alloc_assets.core.market.panel import BUNDLED_DIR
    from alloc_assets.core.market.source import read_market_data
    from alloc_assets.schemas import market_price_checks

    def once() -> tuple[int, list[bool]]:
        data = read_market_data(BUNDLED_DIR)
        start, end = data.prices["date"].min(), data.prices["date"].max()
        sessions = list(sessions_between(start, end).date)
        out = market_price_checks(data.prices, start, end, sessions, None)
        bench = market_price_checks(data.benchmark.rename({"name": "symbol"}), start, end, sessions, None)
        return data.prices.height + data.benchmark.height, [o.passed for o in out + bench if o.severity == "ERROR"]

    once()
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        rows, passed = once()
        times.append(time.perf_counter() - t0)
    assert all(passed), passed
    return {"median_s": statistics.median(times), "times_s": times, "rows": rows, "target_s": 1.0,
            "meets_target": statistics.median(times) < 1.0,
            "note": "prices.csv.gz (20 stocks) + sp500_index.csv.gz, 1990-2022, parsed from CSV (no parse cache) "
                    "and every blocking check run on the whole history"}
