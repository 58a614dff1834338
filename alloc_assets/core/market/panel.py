"""The in-memory price panel that every pure core takes (pure; no Dagster import)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "data" / "us_equities_1990_2022"


@dataclass(frozen=True)
class PricePanel:
    """Daily adjusted closes on trading days.

    Attributes
    ----------
    dates : ``datetime64[D]`` array, shape (T,), strictly increasing trading days.
    symbols : tuple of N symbols (the strategy universe; the benchmark is separate).
    close : float64 array, shape (T, N), adjusted close prices, finite and > 0.
    benchmark : float64 array, shape (T,), or None: the benchmark index level (S&P 500 in the
        bundled set). Where None, layers that need an index use the equal-weight index of ``close``.
    sectors : mapping symbol -> sector (may be empty).
    """

    dates: np.ndarray
    symbols: tuple[str, ...]
    close: np.ndarray
    benchmark: np.ndarray | None = None
    sectors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t, n = self.close.shape
        if len(self.dates) != t or len(self.symbols) != n:
            raise ValueError(f"panel shapes disagree: dates {len(self.dates)}, symbols {len(self.symbols)}, "
                             f"close {self.close.shape}")
        if self.benchmark is not None and self.benchmark.shape != (t,):
            raise ValueError(f"benchmark shape {self.benchmark.shape} != ({t},)")

    def slice(self, start: int, stop: int) -> "PricePanel":
        """Rows [start, stop) as a new panel."""
        bench = None if self.benchmark is None else self.benchmark[start:stop]
        return PricePanel(self.dates[start:stop], self.symbols, self.close[start:stop], bench, self.sectors)

    def returns(self) -> np.ndarray:
        """Simple daily returns, shape (T, N); row 0 is NaN (no previous close in the panel)."""
        out = np.full_like(self.close, np.nan)
        out[1:] = self.close[1:] / self.close[:-1] - 1.0
        return out


def load_bundled_panel() -> PricePanel:
    """The bundled US equities set (20 stocks, S&P 500 benchmark, sectors), 1990-01-02..2022-12-28."""
    prices = pd.read_csv(BUNDLED_DIR / "prices.csv.gz")
    bench = pd.read_csv(BUNDLED_DIR / "sp500_index.csv.gz")
    sectors = pd.read_csv(BUNDLED_DIR / "sectors.csv")
    dates = pd.to_datetime(prices.pop("Date")).to_numpy().astype("datetime64[D]")
    if not (pd.to_datetime(bench["Date"]).to_numpy().astype("datetime64[D]") == dates).all():
        raise ValueError("bundled benchmark dates differ from price dates")
    return PricePanel(
        dates=dates,
        symbols=tuple(prices.columns),
        close=prices.to_numpy(dtype=np.float64),
        benchmark=bench["SP500"].to_numpy(dtype=np.float64),
        sectors=dict(zip(sectors["symbol"], sectors["sector"])),
    )
