"""Dagster: the allocator layers and the regime calibration."""
