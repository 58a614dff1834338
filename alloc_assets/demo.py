"""``make demo``: materialize the graph on the bundled data through Dagster and print the result.

A person can watch it: one line per phase with its time, then the comparison, the verdict, the
stress dashboard and the paths. Dagster's console output is off (failures print in five lines at most); every run's full event log
goes to ``$ALLOC_HOME/logs/demo-<time>.log``. Runs are recorded in the persistent instance under
``$DAGSTER_HOME`` (default ``$ALLOC_HOME/dagster``), so ``make ui`` shows them afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
import warnings
from pathlib import Path

from alloc_assets.instance import prepare_instance_home
from resources.settings import default_logs_dir

#: Dagster's console logger off for the demo (CRITICAL: nothing it emits reaches the terminal; a step
#: failure would otherwise print its stack trace): every event goes to the log file instead, and a
#: failure is printed in at most five lines by ``_report_error``.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class Progress:
    """Numbered phases, each one line with its elapsed time."""

    def __init__(self, total: int, log: Path):
        self.total, self.n, self.log, self.t0 = total, 0, log, time.perf_counter()

    def phase(self, text: str) -> float:
        self.n += 1
        print(f"[{self.n}/{self.total}] {text} ...", flush=True)
        return time.perf_counter()

    def done(self, started: float, text: str) -> None:
        print(f"      {text} ({time.perf_counter() - started:.1f} s)", flush=True)


def _write_logs(instance, run_id: str, log: Path) -> None:
    with log.open("a") as fh:
        for entry in instance.all_logs(run_id):
            stamp = dt.datetime.fromtimestamp(entry.timestamp).isoformat(timespec="milliseconds")
            kind = entry.dagster_event.event_type_value if entry.dagster_event else "LOG"
            fh.write(f"{stamp} {entry.level if isinstance(entry.level, str) else entry.level} {run_id[:8]} "
                     f"{entry.step_key or '-'} {kind} {entry.message or ''}\n")
            error = getattr(entry.dagster_event.event_specific_data, "error", None) if entry.dagster_event else None
            if error is not None:  # a failure's stack trace: here, never on the terminal
                fh.write(error.to_string() + "\n")


def _failure(result) -> str:
    failure = next((e for e in result.all_events if e.is_step_failure), None)
    if failure is None:
        return f"run {result.run_id} failed"
    data = failure.event_specific_data
    text = data.user_failure_data.description if data.user_failure_data and data.user_failure_data.description \
        else data.error.message.strip()
    return text if text.startswith(f"{failure.step_key}:") else f"{failure.step_key}: {text}"


def error_lines(what: str, message: str, log: Path, width: int = 160) -> list[str]:
    """An error for the terminal: at most five lines (what failed and the message, wrapped, cut
    with an ellipsis), the last one the log file that holds the whole message and traceback."""
    import textwrap

    body = textwrap.wrap(f"{what}: {' '.join(message.split())}", width=width) or [what]
    if len(body) > 4:
        body = body[:4]
        body[-1] = body[-1][: width - 4] + " ..."
    return body + [f"full message and traceback: {log}"]


def _report_error(what: str, message: str, log: Path, detail: str = "") -> None:
    with log.open("a") as fh:
        fh.write(f"\n{what}: {message}\n{detail}\n")
    print("\n".join(error_lines(what, message, log)), file=sys.stderr)


def main() -> int:
    warnings.filterwarnings("ignore")
    prepare_instance_home()
    logs = default_logs_dir()
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"demo-{dt.datetime.now():%Y%m%d-%H%M%S}.log"
    progress = Progress(4, log)
    try:
        return _run(progress, log)
    except Exception as exc:  # noqa: BLE001 - five lines on the terminal, the traceback in the log
        import traceback

        _report_error(f"demo failed ({type(exc).__name__})", str(exc) or repr(exc), log, traceback.format_exc())
        return 1


def _run(progress: Progress, log: Path) -> int:
    started = progress.phase("loading the code location (Dagster, pandas, the asset graph)")
    import dagster as dg
    import polars as pl

    from alloc_assets.core.report.rendering import comparison_table, episodes_table, headline_line, today_line
    from alloc_assets.definitions import defs
    from alloc_assets.defs.sim.assets import scenario_models, stress_tests
    from alloc_assets.sim.scenarios.catalogue import SCENARIO_NAMES
    from resources.backtest import BacktestSettings
    from resources.simulation import SimulationSettings
    from alloc_assets.defs.market.partitions import partition_key_for, range_tags
    from resources.market_source import MarketDataError, MarketDataSource
    from resources.warehouse import DuckDBWarehouse

    source = MarketDataSource()
    try:
        data = source.load()
    except (MarketDataError, ValueError, OSError) as exc:  # bad input: what and where, not a traceback wall
        import traceback

        _report_error("market data rejected", str(exc), log, traceback.format_exc())
        return 2
    start, end = data.prices["date"].min(), data.prices["date"].max()
    instance = dg.DagsterInstance.get()
    progress.done(started, f"source: {source.describe()}, {start} .. {end}")

    started = progress.phase("refresh_job: market -> state -> regime -> scalars -> weights -> backtests -> report, one run")
    result = defs.resolve_job_def("refresh_job").execute_in_process(
        instance=instance, tags=range_tags(partition_key_for(start), partition_key_for(end)), run_config=QUIET,
        raise_on_error=False)
    _write_logs(instance, result.run_id, log)
    if not result.success:
        _report_error("refresh run FAILED", _failure(result), log)
        return 1
    days = DuckDBWarehouse().query("SELECT count(DISTINCT date) AS n FROM market_prices")["n"][0]
    warned = [e for e in result.get_asset_check_evaluations() if not e.passed]
    progress.done(started, f"run {result.run_id[:8]}: {days:,} trading days stored and derived"
                  + (f"; {len(warned)} warning check(s): " + ", ".join(
                      f"{e.asset_key.to_user_string()}.{e.check_name}" for e in warned) if warned else ""))

    started = progress.phase(f"stress tests: world model, then {len(SCENARIO_NAMES)} scenarios")
    sim_paths = int(os.environ.get("ALLOC_DEMO_PATHS", "2000"))
    resources = {"warehouse": DuckDBWarehouse(), "simulation": SimulationSettings(n_paths=sim_paths)}
    sim_runs = [dg.materialize([scenario_models], instance=instance, resources=resources, run_config=QUIET,
                               raise_on_error=False)]
    for name in SCENARIO_NAMES:
        if not sim_runs[-1].success:
            break
        t = time.perf_counter()
        sim_runs.append(dg.materialize([stress_tests], instance=instance, resources=resources, partition_key=name,
                                       run_config=QUIET, raise_on_error=False))
        print(f"      {name:<22} {time.perf_counter() - t:5.1f} s", flush=True)
    for r in sim_runs:
        _write_logs(instance, r.run_id, log)
    if not sim_runs[-1].success:
        _report_error("stress tests FAILED", _failure(sim_runs[-1]), log)
        return 1
    progress.done(started, f"{sim_paths:,} paths x 1,260 days per scenario")

    progress.phase("results")
    settings = BacktestSettings()
    out_dir = settings.reports_root() / settings.profile
    report = json.loads((out_dir / "two_pass_comparison.json").read_text())
    print()
    print(comparison_table(report))
    print(f"\n{headline_line(report)}")
    print(today_line(report))
    data = report.get("data") or {}
    print(f"benchmark: {data.get('benchmark') or 'none'}; sectors: {data.get('sectors', 0)}; "
          f"indicators (latent state, never traded): {', '.join(data.get('indicators') or []) or 'none'}"
          + "".join(f"\n  fallback: {f}" for f in data.get("fallbacks") or []))
    ex = report.get("exposure") or {}
    if ex.get("baseline"):
        print(f"gross exposure (mean): baseline {ex['baseline']['mean']:.2f}, scaled {ex['scaled']['mean']:.2f}; "
              + "; ".join(ex.get("limits_rule") or []))
    print("\ndrawdown episodes of the baseline deeper than 15 % (depth of each book; first cut vs the trough):")
    print(episodes_table(report))
    sig = report.get("significance") or {}
    if sig:
        first = next(iter(sig.values()))
        print(f"\nbootstrap ({first['method']}), {100 * first['level']:.0f} % intervals:")
        for k, v in sig.items():
            lo, hi = v["ci_low"], v["ci_high"]
            print(f"  {k:<34} {v['estimate']:+.4f}  [{lo:+.4f}, {hi:+.4f}]" if None not in (v["estimate"], lo, hi)
                  else f"  {k:<34} n/a")
    print(f"\nverdict: {report['verdict']['status']}")
    for reason in report["verdict"]["reasons"]:
        print(f"  - {reason}")
    print("\nregime time share:", ", ".join(f"{k} {v['fraction']:.1%}" for k, v in report["regime_distribution"].items()),
          f"| transitions/year {report['regime_transitions']['per_year']:.1f}")
    dash = DuckDBWarehouse().query(
        "SELECT scenario, book, round(stressed_sharpe, 2) AS sharpe, round(p_drawdown_20, 3) AS p_dd20, "
        "round(p_drawdown_30, 3) AS p_dd30, round(cvar_95, 4) AS cvar_95 FROM stress_dashboard ORDER BY scenario, book")
    print("\nstress dashboard (table stress_dashboard):")
    with pl.Config(tbl_rows=40, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(dash)
    print("\npaths:")
    print(f"  report     {out_dir / 'two_pass_comparison.md'} (and .json, figures beside it)")
    print(f"  warehouse  {DuckDBWarehouse().file}")
    print(f"  instance   {os.environ['DAGSTER_HOME']}")
    print(f"  full log   {log}")
    print(f"\ntotal {time.perf_counter() - progress.t0:.0f} s. Open the UI with `make ui` (http://127.0.0.1:3000): "
          f"run {result.run_id[:8]} is there.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
