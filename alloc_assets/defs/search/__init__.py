"""Dagster: the strategy search and its fan-out jobs."""
