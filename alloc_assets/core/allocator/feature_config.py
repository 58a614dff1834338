"""What the latent state holds: the encoder's settings (``FeatureConfig``), the feature table
(``feature_specs``: name, formula, window, units) and the rows (``StateFrame``); pure, no Dagster.

Volatilities are annualised with ``TRADING_DAYS_PER_YEAR``; halflives and spans are in trading days.
The full feature table and its conventions: docs/notes/allocator.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from alloc_assets.core.common.markdown import md_table

TRADING_DAYS_PER_YEAR = 252


class IndexSource(str, Enum):
    """Which index the market-level features (volatility, drawdown, trend) are computed on."""

    AUTO = "auto"  # the benchmark when the panel has one, else the equal-weight index
    BENCHMARK = "benchmark"
    EQUAL_WEIGHT = "equal_weight"


@dataclass(frozen=True)
class FeatureConfig:
    """Settings of the state encoder; windows in trading days, volatilities annualised decimals.

    ``vol_half_lives`` gives one ``vol_<h>d`` column each; ``vol_shock`` uses the first and last.
    ``corr_half_lives`` is (short, long); ``corr_shock`` is short minus long.
    """

    vol_half_lives: tuple[int, ...] = (10, 21, 63)
    corr_half_lives: tuple[int, int] = (21, 126)
    trend_span: int = 200
    breadth_span: int = 200
    prior_index_vol: float = 0.16
    prior_stock_vol: float = 0.30
    prior_corr: float = 0.30
    warm_days: int = 63
    index: IndexSource = IndexSource.AUTO

    def __post_init__(self) -> None:
        if len(self.vol_half_lives) < 2 or any(h <= 0 for h in self.vol_half_lives):
            raise ValueError(f"vol_half_lives needs at least two positive half-lives, got {self.vol_half_lives}")
        if len(self.corr_half_lives) != 2 or any(h <= 0 for h in self.corr_half_lives):
            raise ValueError(f"corr_half_lives must be (short, long) positive, got {self.corr_half_lives}")
        if self.trend_span < 1 or self.breadth_span < 1 or self.warm_days < 0:
            raise ValueError("trend_span and breadth_span must be >= 1 and warm_days >= 0")
        if not (-1.0 < self.prior_corr < 1.0) or self.prior_index_vol <= 0 or self.prior_stock_vol <= 0:
            raise ValueError("prior volatilities must be > 0 and prior_corr in (-1, 1)")


@dataclass(frozen=True)
class FeatureSpec:
    """One row of the feature documentation table (shown in the UI)."""

    name: str
    formula: str
    window: str
    units: str


def hl_alpha(half_life: float) -> float:
    """EWMA weight on the new observation for a half-life in days: 1 - 0.5 ** (1 / h)."""
    return 1.0 - 0.5 ** (1.0 / half_life)


def span_alpha(span: float) -> float:
    """EWMA weight on the new observation for a span in days (pandas convention): 2 / (span + 1)."""
    return 2.0 / (span + 1.0)


def vol_column(half_life: int) -> str:
    return f"vol_{half_life}d"


def corr_column(half_life: int) -> str:
    return f"corr_{half_life}d"


def feature_specs(config: FeatureConfig = FeatureConfig(), extra_names: tuple[str, ...] = ()) -> tuple[FeatureSpec, ...]:
    """The documentation table of the columns ``encode`` produces with ``config`` (in column order)."""
    h_short, h_long = config.vol_half_lives[0], config.vol_half_lives[-1]
    c_short, c_long = config.corr_half_lives
    specs = [
        FeatureSpec(
            vol_column(h),
            "sqrt(252 * EWMA(r_idx^2)), r_idx = daily log return of the index (benchmark, else equal weight)",
            f"half-life {h} d",
            "annualised volatility, decimal",
        )
        for h in config.vol_half_lives
    ]
    specs += [
        FeatureSpec("vol_shock", f"log({vol_column(h_short)} / {vol_column(h_long)})", f"{h_short} d / {h_long} d", "log ratio"),
        FeatureSpec("drawdown", "I_t / max(I_s, s <= t) - 1, running max from the first day", "expanding", "fraction, <= 0"),
        FeatureSpec(
            corr_column(c_short),
            "mean off-diagonal correlation of the zero-mean EWMA covariance of the stocks' log returns",
            f"half-life {c_short} d",
            "correlation",
        ),
        FeatureSpec(corr_column(c_long), "same as above", f"half-life {c_long} d", "correlation"),
        FeatureSpec("corr_shock", f"{corr_column(c_short)} - {corr_column(c_long)}", f"{c_short} d / {c_long} d", "correlation"),
        FeatureSpec("trend", "log I_t - EWMA(log I)", f"span {config.trend_span} d", "log ratio"),
        FeatureSpec(
            "breadth",
            "share of stocks with log P_i > EWMA(log P_i); a tie counts 1/2",
            f"span {config.breadth_span} d",
            "fraction in [0, 1]",
        ),
    ]
    specs += [
        FeatureSpec(name, "exogenous input, forward-filled from its last finite value", "-", "as given")
        for name in extra_names
    ]
    return tuple(specs)


FEATURE_SPECS: tuple[FeatureSpec, ...] = feature_specs()


def feature_table_markdown() -> str:
    """The default features (name, formula, window, units) as a markdown table."""
    return md_table(("feature", "formula", "window", "units"),
                    [(s.name, s.formula, s.window, s.units) for s in feature_specs()], align_right_from=4)


@dataclass(frozen=True)
class StateFrame:
    """Latent state rows.

    Attributes
    ----------
    dates : ``datetime64[D]`` array, shape (T,).
    columns : feature names, length F (``FeatureSpec`` order, then extras).
    values : float64 array, shape (T, F).
    warm : bool array, shape (T,): enough history for the features to have forgotten their priors.
    """

    dates: np.ndarray
    columns: tuple[str, ...]
    values: np.ndarray
    warm: np.ndarray

    def __len__(self) -> int:
        return len(self.dates)

    def column(self, name: str) -> np.ndarray:
        """One feature as a (T,) array."""
        try:
            return self.values[:, self.columns.index(name)]
        except ValueError:
            raise KeyError(f"no feature {name!r} in the state; columns are {self.columns}") from None

    def slice(self, start: int, stop: int) -> "StateFrame":
        return StateFrame(self.dates[start:stop], self.columns, self.values[start:stop], self.warm[start:stop])

    @staticmethod
    def concat(frames: list["StateFrame"]) -> "StateFrame":
        """Rows of ``frames`` one after the other (same columns)."""
        if not frames:
            raise ValueError("nothing to concatenate")
        cols = frames[0].columns
        if any(f.columns != cols for f in frames):
            raise ValueError("state frames have different columns")
        return StateFrame(
            np.concatenate([f.dates for f in frames]),
            cols,
            np.concatenate([f.values for f in frames]),
            np.concatenate([f.warm for f in frames]),
        )

    def to_pandas(self):
        """A DataFrame with ``date``, one column per feature, then ``warm`` (the warehouse layout)."""
        import pandas as pd

        df = pd.DataFrame(self.values, columns=list(self.columns))
        df.insert(0, "date", pd.to_datetime(self.dates))
        df["warm"] = self.warm
        return df

