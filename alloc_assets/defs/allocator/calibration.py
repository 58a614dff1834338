"""``regime_calibration``: the regimes calibrated for behaviour, not Sharpe.

A reader of the stored ``regime_series`` (read-only session): the walk-forward calibration of
``core.calibration`` (thresholds and dwell set at each year start from the days before it), with
the targets against what each year achieved. It runs after the report in ``refresh_job`` (a
dependency on ``comparison_report``), so the report never waits for it.
"""

import dagster as dg
import numpy as np
import polars as pl

from alloc_assets.core.regime import REGIME_KEYS
from alloc_assets.core.allocator.calibration import calibration_summary, targets_markdown, walk_forward_calibration
from alloc_assets.core.report.report import jsonable
from alloc_assets.core.regime import PROBABILITY_COLUMNS
from alloc_assets.defs.common import SINGLE_RUN
from resources.allocator import AllocatorSettings
from resources.warehouse import DuckDBWarehouse

TABLE = "regime_calibration"
SCHEMA = {"year": pl.Int64, "calibrated_on": pl.String, "history_days": pl.Int64,
          **{c: pl.Float64 for c in ("tau_elevated", "tau_stress", "tau_crisis",
                                      "layer_tau_elevated", "layer_tau_stress", "layer_tau_crisis")},
          "dwell": pl.Int64, "past_transitions_per_year": pl.Float64, "days": pl.Int64,
          **{f"score_share_{k}": pl.Float64 for k in REGIME_KEYS}, **{f"label_share_{k}": pl.Float64 for k in REGIME_KEYS},
          "label_transitions_per_year": pl.Float64}


@dg.asset(
    deps=["regime_series", "comparison_report"],
    group_name="report",
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy"},
    code_version="calibration-1",
    metadata={"dagster/table_name": TABLE},
)
def regime_calibration(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, allocator: AllocatorSettings):
    """The regimes calibrated for behaviour (time shares about 70/20/8/2 %, fewer than 20
    transitions a year), walk-forward: at each year start, score thresholds at the 70/90/98 %
    quantiles of every past stress score and the smallest hysteresis dwell whose labels over the
    past stay under 20 transitions a year; then what the year achieved (raw score shares, the
    governor's label shares and transitions) beside the thresholds the regime layer had in force.
    No return of any book enters the calibration."""
    with warehouse.session(read_only=True):
        reg = warehouse.query("SELECT * FROM regime_series ORDER BY date")
    if reg.height == 0 or "score" not in reg.columns:
        raise dg.Failure(allow_retries=False, description="regime_series is empty or has no stress score: run the refresh job.")
    dates = reg["date"].to_numpy().astype("datetime64[D]")
    thresholds = reg.select("threshold_elevated", "threshold_stress", "threshold_crisis").to_numpy().astype(np.float64)
    rows = walk_forward_calibration(dates, reg["score"].to_numpy().astype(np.float64),
                                    reg.select(PROBABILITY_COLUMNS).to_numpy().astype(np.float64),
                                    reg["regime"].to_list(), thresholds,
                                    allocator.regime_config().hysteresis)
    frame = pl.DataFrame([{
        "year": r.year, "calibrated_on": r.calibrated_on, "history_days": r.history_days,
        "tau_elevated": r.thresholds[0], "tau_stress": r.thresholds[1], "tau_crisis": r.thresholds[2],
        "layer_tau_elevated": r.layer_thresholds[0], "layer_tau_stress": r.layer_thresholds[1],
        "layer_tau_crisis": r.layer_thresholds[2], "dwell": r.dwell,
        "past_transitions_per_year": r.past_transitions_per_year, "days": r.days,
        **{f"score_share_{k}": v for k, v in zip(REGIME_KEYS, r.score_shares)},
        **{f"label_share_{k}": v for k, v in zip(REGIME_KEYS, r.label_shares)},
        "label_transitions_per_year": r.label_transitions_per_year,
    } for r in rows], schema=SCHEMA)  # no row before two years of scores
    summary = jsonable(calibration_summary(rows))
    with warehouse.session():
        warehouse.replace_table(TABLE, frame)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "targets_vs_achieved": dg.MetadataValue.md(targets_markdown(summary, bool(rows))),
        "summary": dg.MetadataValue.json(summary),
    })
