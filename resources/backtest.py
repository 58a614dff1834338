"""Settings of the strategy, the twin backtests and the report."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from resources.settings import default_reports_dir


class BacktestSettings(dg.ConfigurableResource):
    """The strategy profile and the backtest's costs, cash rate and allocator mode."""

    profile: str = Field(default="risk_parity", description="equal_weight | inverse_vol | risk_parity | momentum | "
                         "performance_weighted | hybrid | vol_target")
    cost_bps: float = Field(default=5.0, description="Cost in basis points of traded notional")
    cash_rate: float = Field(default=0.0, description="Annual rate earned by the unscaled remainder (decimal)")
    allocator_mode: str = Field(default="precomputed", description="off | compute | precomputed")
    reports_dir: str = Field(default="", description="Where report files go; empty = $ALLOC_HOME/reports")

    def reports_root(self) -> Path:
        return Path(self.reports_dir or default_reports_dir())
