"""The Dagster layer, one folder per domain: assets, checks, jobs, schedules, sensors, partitions."""

import warnings

import dagster as dg

# single-run backfill policies and pools are marked beta; we rely on them knowingly.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
