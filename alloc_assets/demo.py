"""``make demo``: materialize the graph on the bundled data through Dagster and print the result.

Runs are recorded in the persistent Dagster instance under ``$DAGSTER_HOME`` (default
``$ALLOC_HOME/dagster``), so ``make ui`` shows them afterwards.
"""

from __future__ import annotations

import json
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

    from alloc_assets.definitions import defs
    from alloc_assets.partitions import range_tags
    from resources.market_source import MarketDataSource
    from resources.warehouse import DuckDBWarehouse

    source = MarketDataSource()
    data = source.load()
    start, end = str(data.prices["date"].min()), str(data.prices["date"].max())
    print(f"regime-allocator demo: source = {source.describe()}, {start} .. {end}")
    print(f"warehouse = {DuckDBWarehouse().file}; Dagster instance = {os.environ['DAGSTER_HOME']}")
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
          f"trading days through market, state, regime and scalar layers in {elapsed:.1f} s")
    failed_checks = [e for e in result.get_asset_check_evaluations() if not e.passed]
    for ev in failed_checks:
        print(f"  check {ev.asset_key.to_user_string()}.{ev.check_name}: FAILED ({ev.severity.value})")
    t0 = time.perf_counter()
    report_run = defs.resolve_job_def("report_job").execute_in_process(instance=instance, raise_on_error=False)
    if not report_run.success:
        failure = next((e for e in report_run.all_events if e.is_step_failure), None)
        print("report run FAILED:", failure.event_specific_data.error.message if failure else report_run.run_id,
              file=sys.stderr)
        return 1
    print(f"report run {report_run.run_id}: weights, both backtests and the report in {time.perf_counter() - t0:.1f} s\n")
    from alloc_assets.defs.backtest import BacktestSettings
    from alloc_assets.core.report import comparison_table

    settings = BacktestSettings()
    out_dir = settings.reports_root() / settings.profile
    report = json.loads((out_dir / "two_pass_comparison.json").read_text())
    print(comparison_table(report))
    print(f"\nverdict: {report['verdict']['status']}")
    for reason in report["verdict"]["reasons"]:
        print(f"  - {reason}")
    print("\nregime time share:", ", ".join(f"{k} {v['fraction']:.1%}" for k, v in report["regime_distribution"].items()),
          f"| transitions/year {report['regime_transitions']['per_year']:.1f}")
    print("\nreports:")
    for path in sorted(out_dir.iterdir()):
        print(f"  {path}")
    t0 = time.perf_counter()
    from alloc_assets.defs.sim import SCENARIOS, SimulationSettings, scenario_models, stress_tests

    sim_paths = int(os.environ.get("ALLOC_DEMO_PATHS", "2000"))
    resources = {"warehouse": DuckDBWarehouse(), "simulation": SimulationSettings(n_paths=sim_paths)}
    if not dg.materialize([scenario_models], instance=instance, resources=resources).success:
        print("scenario_models FAILED", file=sys.stderr)
        return 1
    for name in SCENARIOS:
        if not dg.materialize([stress_tests], instance=instance, resources=resources, partition_key=name).success:
            print(f"stress_tests[{name}] FAILED", file=sys.stderr)
            return 1
    dash = DuckDBWarehouse().query(
        "SELECT scenario, book, round(stressed_sharpe, 2) AS sharpe, round(p_drawdown_20, 3) AS p_dd20, "
        "round(p_drawdown_30, 3) AS p_dd30, round(cvar_95, 4) AS cvar_95 FROM stress_dashboard ORDER BY scenario, book")
    print(f"\nstress tests ({sim_paths} paths x 1,260 days per scenario, {time.perf_counter() - t0:.0f} s): "
          "stress_dashboard table")
    import polars as pl

    with pl.Config(tbl_rows=40, tbl_hide_dataframe_shape=True):
        print(dash)
    print(f"\nOpen the UI with `make ui` (http://127.0.0.1:3000): runs {result.run_id[:8]} and {report_run.run_id[:8]}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
