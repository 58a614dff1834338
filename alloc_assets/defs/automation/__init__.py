"""Dagster: jobs, the daily schedule and the sensors (landing files, catch-up, run watchdog)."""
