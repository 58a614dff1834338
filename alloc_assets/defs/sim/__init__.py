"""Dagster: the world model, the stress tests, the resilience optimiser and the regime-aware allocation."""
