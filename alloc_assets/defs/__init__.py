"""Dagster definitions by layer (market, allocator, backtest/report, sim, automation)."""
