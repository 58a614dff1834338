"""Dagster definitions by layer (market, state, regime, risk, backtest, report, sim, automation)."""

from alloc_assets import _dagster_patches

_dagster_patches.apply()
