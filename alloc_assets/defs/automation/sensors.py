"""Automation: the landing-file sensor, the state-driven catch-up sensor, the daily schedule.

- ``new_market_data_sensor`` watches ``$ALLOC_HOME/landing/``. Each tick: files still settling or
  dated after today are left for a later tick; a bad file is moved to ``rejected/`` with its reason;
  of two files for one day the newest wins; each good file is copied to an immutable
  ``accepted/<day>/<sha>`` and all of them go into ONE ``refresh_job`` run (N files -> one run)
  that reads exactly those copies and removes the originals once stored. Nothing in one file can
  fail the tick for the others. The run key is the set of accepted contents, so a repeated tick
  (e.g. after the daemon restarts) never launches the same work twice; the cursor only remembers
  files still in the folder (bounded).
- ``catch_up_sensor`` compares what is stored with what is derived: when the newest
  ``market_prices`` materialization is newer than the newest ``comparison_report`` and no
  warehouse run is queued or running, it requests ``derive_job`` (keyed by the market
  materialization, so it fires once per new state). It repairs a run that stored market data and
  failed later, and it works after any daemon downtime because it reads state, not events.
- ``run_watchdog_sensor``: a local run whose worker process died with its daemon or code server
  (which Dagster's run monitoring cannot see for local processes) is reported failed, so crash
  retries take over and the warehouse pool slot is freed.
- ``daily_schedule``: 18:30 New York on weekdays. Exchange holidays skip with the reason; a day
  whose data has not arrived (no landing copy, not in the source) skips with that reason (a
  freshness signal, never a red run); a day present in the configured source runs ``refresh_job``
  for its year; a day already stored skips.
"""

import datetime as dt
import hashlib
import json
import os
import time
from zoneinfo import ZoneInfo

import dagster as dg

from alloc_assets.core.market.calendar import EXCHANGE_TIMEZONE, is_trading_day
from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.market.landing import accept, current_copies, flush, move_aside, scan, sha256_file
from alloc_assets.defs.automation.jobs import derive_job, refresh_job
from alloc_assets.defs.market.partitions import partition_key_for, range_tags
from resources.landing import LandingZone, validate
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

#: ``ALLOC_AUTOMATION=on`` starts the schedule and sensors with the daemon (otherwise: turn them on in the UI).
_ON = os.environ.get("ALLOC_AUTOMATION", "").lower() in ("on", "1", "true", "running")
_SENSOR_STATUS = dg.DefaultSensorStatus.RUNNING if _ON else dg.DefaultSensorStatus.STOPPED
_SCHEDULE_STATUS = dg.DefaultScheduleStatus.RUNNING if _ON else dg.DefaultScheduleStatus.STOPPED
_SENSOR_INTERVAL = int(os.environ.get("ALLOC_SENSOR_INTERVAL_SECONDS", "30"))
MARKET_KEY = dg.AssetKey("market_prices")
REPORT_KEY = dg.AssetKey("comparison_report")
ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]


BATCH_SYNC_FROM = 32


def today_in_new_york(now: float | None = None) -> dt.date:
    return dt.datetime.fromtimestamp(time.time() if now is None else now, ZoneInfo(EXCHANGE_TIMEZONE)).date()


def landing_run_request(accepted: dict[str, tuple[str, str, str]]) -> dg.RunRequest:
    """One ``refresh_job`` run for the accepted files {name: (day, copy, original::sha)}."""
    days = sorted(day for day, _, _ in accepted.values())
    keys = sorted({partition_key_for(d) for d in days})
    digest = hashlib.sha256("\n".join(sorted(c for _, c, _ in accepted.values())).encode()).hexdigest()[:20]
    config = {"ops": {"market_prices": {"config": {
        "files": sorted(c for _, c, _ in accepted.values()),
        "consume": sorted(o for _, _, o in accepted.values())}}}}
    tags = {"alloc/landing_files": ",".join(sorted(accepted))[:4000], "alloc/landing_days": f"{days[0]}..{days[-1]}"}
    if len(keys) == 1:
        return dg.RunRequest(run_key=f"landing-{digest}", partition_key=keys[0], run_config=config, tags=tags)
    return dg.RunRequest(run_key=f"landing-{digest}", run_config=config, tags={**tags, **range_tags(keys[0], keys[-1])})


@dg.sensor(job=refresh_job, minimum_interval_seconds=_SENSOR_INTERVAL, default_status=_SENSOR_STATUS,
           description="New or corrected landing files -> validated, copied to landing/accepted, ONE refresh_job run.")
def new_market_data_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    folder = landing.directory()
    cursor: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    decisions = scan(folder, time.time(), today_in_new_york(), landing.settle())
    # a few files: an fsync each; a backlog: one sync for the whole batch (see core.landing.flush)
    batch = sum(d.action == "ready" for d in decisions) > BATCH_SYNC_FROM
    accepted: dict[str, tuple[str, str, str]] = {}
    notes: list[str] = []
    for d in decisions:
        try:
            if d.action == "wait":
                notes.append(f"waiting: {d.path.name} ({d.reason})")
            elif d.action == "reject":
                move_aside(d.path, landing.rejected(), d.reason)
                notes.append(f"rejected {d.path.name}: {d.reason}")
                context.log.warning(f"rejected {d.path.name}: {d.reason}")
            elif d.action == "supersede":
                move_aside(d.path, landing.superseded(), d.reason)
                notes.append(f"superseded {d.path.name}: {d.reason}")
            elif d.action == "ready":
                sha = sha256_file(d.path)
                if cursor.get(d.path.name) == sha:
                    continue  # requested already; the run removes it once stored
                try:
                    validate(d.path, d.day)
                except MarketDataError as exc:
                    move_aside(d.path, landing.rejected(), str(exc))
                    notes.append(f"rejected {d.path.name}: {exc}")
                    context.log.warning(f"rejected {d.path.name}: {exc}")
                    continue
                copy = accept(d.path, landing.accepted(), d.day, durable=not batch)
                accepted[d.path.name] = (d.day.isoformat(), str(copy), f"{d.path}::{sha}")
                cursor[d.path.name] = sha
        except OSError as exc:  # one odd file (vanished, unreadable) never fails the tick
            notes.append(f"left {d.path.name} for a later tick: {exc}")
            context.log.warning(f"left {d.path.name} for a later tick: {exc}")
    present = {p.name for p in folder.iterdir()}
    cursor = {name: sha for name, sha in cursor.items() if name in present}  # bounded: files still there
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    if accepted:
        if batch:
            flush()  # the accepted copies are on disk before the run that reads them is requested
        for note in notes:
            context.log.info(note)
        return dg.SensorResult(run_requests=[landing_run_request(accepted)])
    return dg.SkipReason("; ".join(notes) if notes else "no new or changed landing files")


def _newest_storage_id(instance: dg.DagsterInstance, key: dg.AssetKey) -> int | None:
    records = instance.fetch_materializations(key, limit=1).records
    return records[0].storage_id if records else None


@dg.sensor(job=derive_job, minimum_interval_seconds=_SENSOR_INTERVAL, default_status=_SENSOR_STATUS,
           description="Stored market data newer than the report, and no warehouse run active -> ONE derive_job run.")
def catch_up_sensor(context: dg.SensorEvaluationContext):
    market = _newest_storage_id(context.instance, MARKET_KEY)
    if market is None:
        return dg.SkipReason("no market data stored yet")
    report = _newest_storage_id(context.instance, REPORT_KEY)
    if report is not None and report > market:
        return dg.SkipReason("the report is newer than the stored market data: nothing to derive")
    active = context.instance.get_runs(dg.RunsFilter(statuses=ACTIVE, tags={"alloc/warehouse_writer": "true"}), limit=1)
    if active:
        return dg.SkipReason(f"run {active[0].run_id[:8]} is active; it (or the next tick) derives the new data")
    return dg.RunRequest(run_key=f"derive-after-{market}", tags={"alloc/catch_up_of_market_event": str(market)})


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The PID the run worker recorded when it started ("Started process for run (pid: N)")."""
    pid = None
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.event_specific_data if entry.dagster_event else None
        value = getattr(data, "metadata", {}).get("pid") if data is not None else None
        if value is not None:
            pid = int(getattr(value, "value", value))
    return pid


def process_alive(pid: int) -> bool:
    """Whether a process with this PID runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


WATCHDOG_GRACE_SECONDS = 20.0


@dg.sensor(minimum_interval_seconds=max(_SENSOR_INTERVAL, 5), default_status=_SENSOR_STATUS,
           description="Local runs whose worker process is gone (killed with its daemon or code server) -> failed, "
                       "so run retries take over and the warehouse pool slot is freed.")
def run_watchdog_sensor(context: dg.SensorEvaluationContext):
    """Dagster's run monitoring cannot check the health of runs started by the default (local
    process) launcher: a run whose worker died together with the daemon and code server would stay
    STARTED until ``max_runtime_seconds`` and, with the warehouse pool at run granularity, hold
    every later run in the queue. This sensor does that check for local runs with public API: the
    worker's PID (from its start event) no longer exists -> the run is reported failed, which the
    crash retries (``run_retries``) then re-execute."""
    if not isinstance(context.instance.run_launcher, dg.DefaultRunLauncher):
        return dg.SkipReason("runs are not local processes: Dagster's run monitoring checks their health")
    failed = []
    for record in context.instance.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        if record.start_time is None or time.time() - record.start_time < WATCHDOG_GRACE_SECONDS:
            continue
        pid = worker_pid(context.instance, record.dagster_run.run_id)
        if pid is None or process_alive(pid):
            continue
        message = (f"The run worker (pid {pid}) is gone (killed, or its daemon/code server died); "
                   "reported failed by run_watchdog_sensor so that crash retries take over.")
        context.instance.report_run_failed(record.dagster_run, message=message)
        context.log.warning(f"run {record.dagster_run.run_id}: {message}")
        failed.append(record.dagster_run.run_id[:8])
    return dg.SkipReason(f"reported {len(failed)} dead run(s) failed: {', '.join(failed)}" if failed
                         else "every started run has a live worker")


@dg.schedule(job=refresh_job, cron_schedule="30 18 * * 1-5", execution_timezone=EXCHANGE_TIMEZONE,
             default_status=_SCHEDULE_STATUS,
             description="Each weekday at 18:30 New York time: that day's data (if it arrived) through every layer.")
def daily_schedule(context: dg.ScheduleEvaluationContext, landing: LandingZone, market_source: MarketDataSource,
                   warehouse: DuckDBWarehouse):
    day = context.scheduled_execution_time.astimezone(ZoneInfo(EXCHANGE_TIMEZONE)).date()
    if not is_trading_day(day):
        return dg.SkipReason(f"{day} is not an NYSE trading day (exchange holiday)")
    stored = warehouse.query("SELECT count(*) AS n FROM market_prices WHERE date = ?", [day]) \
        if warehouse.table_exists("market_prices") else None
    if stored is not None and stored.height and stored["n"][0] > 0:
        return dg.SkipReason(f"{day} is already stored (it came through the landing sensor)")
    if current_copies(landing.accepted(), day, day):
        return dg.SkipReason(f"{day} was accepted from the landing zone; its run stores it")
    try:
        in_source = market_source.load().window(day, day).prices.height > 0
    except MarketDataError as exc:
        return dg.SkipReason(f"the market data source cannot be read: {exc}")
    if not in_source:
        return dg.SkipReason(f"no market data for {day} has arrived (no landing file, not in "
                             f"{market_source.describe()}): nothing to run")
    key = partition_key_for(day)
    return dg.RunRequest(run_key=f"scheduled-{day}", partition_key=key, tags={"alloc/scheduled_day": str(day)})


__all__ = ["LandingZone", "catch_up_sensor", "daily_schedule", "new_market_data_sensor", "run_watchdog_sensor"]
