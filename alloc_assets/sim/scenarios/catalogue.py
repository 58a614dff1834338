"""The catalogue of named scenarios (``SCENARIOS``) and of the stress shocks on top of them.

A scenario changes the world model calibrated on history; every scenario's universe is the
calibrated equities plus one rates sleeve (a constant-duration Treasury index, the last asset).
Parameter scenarios set the equal-weight equity index's annual return and volatility, the cash
rate ``rf`` and the correlation of equities with the rates sleeve (annualised decimals). Stress
shocks act through the model's state and persist: price moves spread over ``SHOCK_DAYS``, a
mean-reverting Heston variance factor, a decaying rates volatility, a correlation jump, a forced
starting regime. The table of scenarios, the sensitivities and the reasons behind each number are
in docs/notes/simulation.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alloc_assets.core.regime import Regime

RATES_DURATION = 7.0
YIELD_VOL = 0.009
TERM_PREMIUM = 0.01
EQUITY_RATE_DURATION = 5.0
CREDIT_EQUITY_BETA = 4.0
FLIGHT_TO_QUALITY = 0.125  # yield change per unit of spread change (-50 bp for +400 bp)
VOL_HALF_LIFE_DAYS = 42.0
SHOCK_DAYS = 63  # a shock's price moves are spread over 3 months (its stated horizon)
RATES_VOL_MULTIPLIER = 1.5  # the rates sleeve's volatility on day 1 of a yield shock
EQUITY_VOL_MULTIPLIER = 1.5  # equity volatility on day 1 of a rate or credit shock (no VIX level given)
CORRELATION_SHARE = 0.25  # share of the day-1 index variance carried by one common shock in a VIX shock
HESTON_KAPPA = 2.0  # Heston mean reversion a year (kappa 2, a common S&P 500 calibration) ...
HESTON_VOL_OF_VAR = 0.3 / np.sqrt(0.04)  # ... and vol of variance 0.3 at theta 0.04, in relative units (1.5)
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)



@dataclass(frozen=True)
class MarketShock:
    """A shock acting through the model's state (see the module docstring): price moves spread over
    ``shock_days``, a mean-reverting equity variance factor, a correlation jump, a starting regime.

    rates_bp : parallel yield change (basis points). credit_spread_bp : credit spread change (bp).
    vix_from, vix_to : implied volatility before (descriptive) and after: day-1 equity index
    volatility ``vix_to`` % (Heston variance factor plus the common shock, both mean-reverting).
    vol_half_life_days : half-life of the rates sleeve's volatility multiplier.
    start_regime : regime of day 0.
    flight_to_quality : add the yield fall that comes with wider spreads (``FLIGHT_TO_QUALITY``).
    shock_days : days over which the price moves are spread (the shock's stated horizon).
    equity_vol_multiplier : day-1 equity volatility multiplier when no ``vix_to`` is given.
    """

    rates_bp: float = 0.0
    credit_spread_bp: float = 0.0
    vix_from: float | None = None
    vix_to: float | None = None
    vol_half_life_days: float = VOL_HALF_LIFE_DAYS
    start_regime: Regime | None = None
    flight_to_quality: bool = True
    shock_days: int = SHOCK_DAYS
    equity_vol_multiplier: float | None = None

    def yield_change(self) -> float:
        """Total yield change over the shock (decimal), including the flight to quality."""
        ftq = -FLIGHT_TO_QUALITY * self.credit_spread_bp if self.flight_to_quality else 0.0
        return (self.rates_bp + ftq) / 1e4


@dataclass(frozen=True)
class ScenarioSpec:
    """One named scenario (see the module docstring). Rates and returns annualised decimals."""

    name: str
    description: str
    equity_return: float | None
    equity_vol: float | None
    rf: float
    corr_equity_rates: float
    shock: MarketShock | None = None

    @property
    def calibrated(self) -> bool:
        """True when the calibrated world model is used as is (``from_today``)."""
        return self.equity_return is None


SCENARIOS: dict[str, ScenarioSpec] = {
    s.name: s
    for s in (
        ScenarioSpec("base", "long-run base case", 0.08, 0.18, 0.03, -0.3),
        ScenarioSpec("bull", "strong, calm market", 0.15, 0.12, 0.02, 0.0),
        ScenarioSpec("bear", "falling, volatile market, flight to quality", -0.05, 0.35, 0.01, -0.6),
        ScenarioSpec("high_vol", "crisis-level volatility, low rates", 0.05, 0.40, 0.02, -0.5),
        ScenarioSpec("low_vol", "calm market, higher rates, stocks and bonds together", 0.07, 0.08, 0.04, 0.2),
        ScenarioSpec("rates_up_200bp", "yields +200 bp over 3 months", 0.08, 0.18, 0.03, -0.3,
                     MarketShock(rates_bp=200.0, equity_vol_multiplier=EQUITY_VOL_MULTIPLIER)),
        ScenarioSpec(
            "credit_spreads_400bp", "credit spreads +400 bp over 3 months", 0.08, 0.18, 0.03, -0.3,
            MarketShock(credit_spread_bp=400.0, start_regime=Regime.STRESS, equity_vol_multiplier=EQUITY_VOL_MULTIPLIER),
        ),
        ScenarioSpec(
            "vol_spike", "VIX 15 -> 65 on day 1, mean-reverting (Heston)", 0.08, 0.18, 0.03, -0.3,
            MarketShock(vix_from=15.0, vix_to=65.0, start_regime=Regime.CRISIS),
        ),
        ScenarioSpec(
            "combined_2008", "2008-like: credit +400 bp, VIX 65, yields -100 bp, crisis regime", 0.08, 0.18, 0.03, -0.3,
            MarketShock(rates_bp=-50.0, credit_spread_bp=400.0, vix_from=15.0, vix_to=65.0, start_regime=Regime.CRISIS),
        ),
        ScenarioSpec("from_today", "calibrated world model from today's state", None, None, 0.03, -0.3),
    )
}
SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)


def get_scenario(name: str) -> ScenarioSpec:
    """The named scenario; the error lists the known names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_NAMES)}") from None

