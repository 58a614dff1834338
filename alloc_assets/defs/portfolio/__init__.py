"""Dagster: the strategy's weights and the twin backtests."""
