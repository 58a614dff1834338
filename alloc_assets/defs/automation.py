"""Automation: the daily schedule after the US close, the landing-file sensor, the report refresh.

- ``daily_schedule``: 18:30 America/New_York on weekdays; on an exchange holiday the tick is
  skipped with its reason; otherwise one run of ``history_job`` for that day's partition.
- ``new_market_data_sensor``: watches ``$ALLOC_HOME/landing/`` for ``*_YYYY-MM-DD.csv|.parquet``.
  Its cursor maps each file name to a fingerprint (size and SHA-1), so the same file never
  triggers twice and a corrected file (new content) triggers again. Files are validated before a
  run is requested; a bad file is moved to ``landing/rejected/`` with a ``.reason.txt`` beside it
  and the tick says why; the sensor itself never crashes on bad input.
- ``report_after_history``: when a ``history_job`` run succeeds, ``report_job`` refreshes the
  weights, both backtests and the report (a run-status sensor, so propagation does not depend on
  ``AutomationCondition.eager()``, which only sees the latest partition). Days out of order: if
  the run stored market data for a window and later days are already stored (an earlier day
  landed late, or was corrected), the later days' allocator layers were computed without it, so
  the sensor first requests ``history_job`` for the allocator layers over those later days (up to
  the first gap); that run's success then refreshes the report.
"""

import datetime as dt
import hashlib
import os
import json
import shutil
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import polars as pl
from pydantic import Field

from alloc_assets.core.calendar import EXCHANGE_TIMEZONE, is_trading_day, stored_sessions_after
from alloc_assets.core.market_io import LANDING_NAME, MarketDataError, read_market_data
from alloc_assets.defs.allocator import ALLOCATOR_ASSETS
from alloc_assets.defs.jobs import history_job, report_job
from alloc_assets.defs.market import market_prices
from alloc_assets.partitions import RANGE_END_TAG, RANGE_START_TAG, range_tags
from resources.settings import default_landing_dir


class LandingZone(dg.ConfigurableResource):
    """Where new daily market files land (``$ALLOC_HOME/landing``)."""

    path: str = Field(default="", description="Directory watched by the sensor; empty = $ALLOC_HOME/landing")

    def directory(self) -> Path:
        p = Path(self.path or default_landing_dir())
        p.mkdir(parents=True, exist_ok=True)
        return p

    def rejected(self) -> Path:
        p = self.directory() / "rejected"
        p.mkdir(parents=True, exist_ok=True)
        return p


def fingerprint(path: Path) -> str:
    """Size and SHA-1 of the content: a rewritten file with new content is a new file."""
    data = path.read_bytes()
    return f"{len(data)}:{hashlib.sha1(data).hexdigest()[:16]}"


def validate_landing_file(path: Path) -> str:
    """The trading day of a landing file, or ``MarketDataError`` naming file, row and column."""
    m = LANDING_NAME.search(path.name)
    if not m:
        raise MarketDataError("the name does not end in _YYYY-MM-DD.csv or .parquet", path)
    day = m.group(1)
    if not is_trading_day(day):
        raise MarketDataError(f"{day} is not an NYSE trading day", path)
    if _fast_wide_csv_ok(path, day):
        return day
    data = read_market_data(path)  # structure, dates (the file's day only), numbers; located errors
    prices = data.prices
    bad = prices.filter(~(pl.col("close").is_finite() & (pl.col("close") > 0)))
    if bad.height:
        r = bad.row(0, named=True)
        raise MarketDataError(f"price {r['close']} is not a finite number > 0", path, row=int(r["source_row"]),
                              column=r["source_column"])
    dups = prices.filter(pl.struct("date", "symbol").is_duplicated())
    if dups.height:
        r = dups.row(0, named=True)
        raise MarketDataError(f"symbol {r['symbol']} appears twice", path, row=int(r["source_row"]), column="symbol")
    return day


def _fast_wide_csv_ok(path: Path, day: str) -> bool:
    """A quick accept for the common case (a small wide CSV of that day, every price a finite number
    > 0); anything else goes through the full reader, which names file, row and column."""
    if path.suffix != ".csv":
        return False
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    if len(lines) < 2 or lines[0].split(",")[0].strip() not in ("date", "Date"):
        return False
    header = [h.strip() for h in lines[0].split(",")]
    if len(set(header)) != len(header) or {"symbol", "close"} & {h.lower() for h in header}:
        return False
    for line in lines[1:]:
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != len(header) or cells[0].strip() != day:
            return False
        for cell in cells[1:]:
            try:
                value = float(cell)
            except ValueError:
                return False
            if not (value > 0 and value != float("inf")):
                return False
    return True


def _reject(zone: LandingZone, path: Path, reason: str) -> None:
    target = zone.rejected() / path.name
    shutil.move(str(path), target)
    (zone.rejected() / f"{path.name}.reason.txt").write_text(reason + "\n")


#: ``ALLOC_AUTOMATION=on`` starts the schedule and sensors with the daemon (otherwise: turn them on in the UI).
_ON = os.environ.get("ALLOC_AUTOMATION", "").lower() in ("on", "1", "true", "running")
_SENSOR_STATUS = dg.DefaultSensorStatus.RUNNING if _ON else dg.DefaultSensorStatus.STOPPED
_SCHEDULE_STATUS = dg.DefaultScheduleStatus.RUNNING if _ON else dg.DefaultScheduleStatus.STOPPED
_SENSOR_INTERVAL = int(os.environ.get("ALLOC_SENSOR_INTERVAL_SECONDS", "30"))
MARKET_KEY = market_prices.key
ALLOCATOR_KEYS = tuple(a.key for a in ALLOCATOR_ASSETS)


@dg.sensor(job=history_job, minimum_interval_seconds=_SENSOR_INTERVAL, default_status=_SENSOR_STATUS,
           description="Runs the daily layers for each new or corrected landing file (validated first).")
def new_market_data_sensor(context: dg.SensorEvaluationContext, landing: LandingZone):
    cursor = json.loads(context.cursor) if context.cursor else {}
    requests, skipped = [], []
    for path in sorted(p for p in landing.directory().iterdir() if p.is_file() and LANDING_NAME.search(p.name)):
        fp = fingerprint(path)
        if cursor.get(path.name) == fp:
            continue
        try:
            day = validate_landing_file(path)
        except MarketDataError as exc:
            _reject(landing, path, str(exc))
            cursor.pop(path.name, None)
            skipped.append(f"rejected {path.name}: {exc}")
            context.log.warning(f"rejected {path.name}: {exc}")
            continue
        cursor[path.name] = fp
        requests.append(dg.RunRequest(
            run_key=f"{path.name}:{fp}",
            partition_key=day,
            run_config={"ops": {"market_prices": {"config": {"files": [str(path)]}}}},
            tags={"alloc/landing_file": path.name},
        ))
    context.update_cursor(json.dumps(cursor, sort_keys=True))
    if requests:
        return dg.SensorResult(run_requests=requests)
    return dg.SkipReason("; ".join(skipped) if skipped else "no new or changed landing files")


@dg.schedule(job=history_job, cron_schedule="30 18 * * 1-5", execution_timezone=EXCHANGE_TIMEZONE,
             default_status=_SCHEDULE_STATUS,
             description="Each weekday at 18:30 New York time: that trading day through every daily layer.")
def daily_schedule(context: dg.ScheduleEvaluationContext):
    day = context.scheduled_execution_time.astimezone(ZoneInfo(EXCHANGE_TIMEZONE)).date()
    if not is_trading_day(day):
        return dg.SkipReason(f"{day} is not an NYSE trading day (exchange holiday)")
    key = day.isoformat()
    return dg.RunRequest(run_key=key, partition_key=key)


def _run_window(run: dg.DagsterRun) -> tuple[str, str] | None:
    """The partition window of a run: its partition key, or its range tags."""
    tags = run.tags
    if "dagster/partition" in tags:
        return tags["dagster/partition"], tags["dagster/partition"]
    if RANGE_START_TAG in tags and RANGE_END_TAG in tags:
        return tags[RANGE_START_TAG], tags[RANGE_END_TAG]
    return None


@dg.run_status_sensor(run_status=dg.DagsterRunStatus.SUCCESS, monitored_jobs=[history_job],
                      request_jobs=[history_job, report_job], default_status=_SENSOR_STATUS,
                      minimum_interval_seconds=_SENSOR_INTERVAL,
                      description=("After a successful history_job run: if it stored market data and later days are "
                                   "already stored, recomputes the allocator layers of those days; otherwise "
                                   "refreshes weights, backtests and the report."))
def report_after_history(context: dg.RunStatusSensorContext):
    run = context.dagster_run
    window = _run_window(run)
    wrote_market = not run.asset_selection or MARKET_KEY in run.asset_selection  # empty: the whole job
    if window is not None and wrote_market:
        later = stored_sessions_after(window[1], context.instance.get_materialized_partitions(MARKET_KEY))
        if later:
            context.log.info(f"{window[1]} landed before {len(later)} later stored day(s): "
                             f"recomputing the allocator layers for {later[0]}..{later[-1]}")
            return dg.RunRequest(
                run_key=f"catch-up-after-{run.run_id}", job_name=history_job.name,
                asset_selection=list(ALLOCATOR_KEYS), tags={**range_tags(later[0], later[-1]), "alloc/catch_up_after": run.run_id},
            )
    return dg.RunRequest(run_key=f"report-after-{run.run_id}", job_name=report_job.name)


def landing_file_day(path: str) -> dt.date | None:
    m = LANDING_NAME.search(Path(path).name)
    return dt.date.fromisoformat(m.group(1)) if m else None


__all__ = ["LandingZone", "daily_schedule", "new_market_data_sensor", "report_after_history"]
