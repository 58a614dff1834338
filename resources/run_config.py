"""Run settings (``dg.Config``) of the assets that take them."""

from __future__ import annotations

import dagster as dg


class MarketPricesConfig(dg.Config):
    """Run settings of ``market_prices``."""

    files: list[str] = []
    """Accepted landing copies (``landing/accepted/<day>/...``) this run must read for their days
    (the sensor names the copies it validated); other days of the window use their CURRENT copy."""
    consume: list[str] = []
    """``<original path>::<sha256>`` of landing files to remove once stored (set by the sensor)."""
    symbols: list[str] = []
    """The universe; empty = the symbols already stored, else those of the source."""
    jump_threshold: float = 0.5
    """``return_jumps`` (WARN) flags a daily return with |r| above this fraction."""
