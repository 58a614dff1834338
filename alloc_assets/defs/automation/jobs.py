"""Jobs. One run goes from market data to the report.

- ``refresh_job``: ``market_prices`` over one year partition or a range of them (one run, single-run
  backfill), then the incremental allocator layers, weights, both backtests and the report. A
  landing file, a scheduled day and a history backfill are each ONE run of this job.
- ``derive_job``: everything after the market layer (no partition): what the state-driven
  ``catch_up_sensor`` runs when stored market data is newer than the report, and what a settings
  change needs.
"""

import dagster as dg

DERIVED = dg.AssetSelection.groups("allocator", "strategy", "report")

refresh_job = dg.define_asset_job(
    "refresh_job",
    selection=dg.AssetSelection.groups("market") | DERIVED,
    description="Market data for a year (or a range of years) through every derived layer and the report, in one run.",
    tags={"alloc/warehouse_writer": "true"},
)

derive_job = dg.define_asset_job(
    "derive_job",
    selection=DERIVED,
    description="The allocator layers (incremental), weights, both backtests and the report from the stored market data.",
    tags={"alloc/warehouse_writer": "true"},
)
