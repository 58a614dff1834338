"""Dagster: ``market_prices`` and its yearly partitions."""
