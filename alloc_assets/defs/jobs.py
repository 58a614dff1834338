"""Jobs: the history (range) job over the partitioned layers."""

import dagster as dg

from alloc_assets.partitions import trading_day_partitions

#: Every daily-partitioned asset, run as ONE run over a partition range (single-run backfills).
history_job = dg.define_asset_job(
    "history_job",
    selection=dg.AssetSelection.groups("market", "allocator"),
    partitions_def=trading_day_partitions,
    description="The daily layers over a range of trading days, in one run (history backfill).",
)

#: The whole-history layers (strategy, twin backtests, report), refreshed after the daily layers.
report_job = dg.define_asset_job(
    "report_job",
    selection=dg.AssetSelection.groups("strategy", "report"),
    description="Weights, both backtests and the two-pass comparison report over the stored history.",
)

