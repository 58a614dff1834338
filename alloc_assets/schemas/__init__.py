"""One pandera model per stored artifact, plus the checks that need run-time facts.

Every asset validates its frame *before* it writes: blocking (ERROR) failures stop the write, and
each check becomes a Dagster check result whose metadata carries the offending rows. Check names
are module constants so tests, assets and the UI agree. One module per domain (``market``,
``allocator``, ``portfolio``) and ``checks`` for what they share; every public name is re-exported
here, so ``from alloc_assets.schemas import X`` works for all of them.
"""

from alloc_assets.core.regime import REGIME_LABELS
from alloc_assets.schemas.allocator import (
    APPLIED_CHECKS,
    CHECK_LAG,
    CHECK_PROBABILITIES,
    CHECK_SCALAR_BOUNDS,
    CHECK_SCALAR_JUMP,
    CHECK_STATE_FINITE,
    CHECK_THRASH,
    REGIME_CHECKS,
    RISK_CHECKS,
    SCALAR_SOURCES,
    STATE_CHECKS,
    AppliedScalars,
    LatentState,
    RegimeSeries,
    RiskScalars,
)
from alloc_assets.schemas.checks import (
    ERROR,
    MAX_FAILURE_ROWS,
    WARN,
    CheckOutcome,
    failures_markdown,
    mask_outcome,
    offending_rows,
    pandera_failures,
    pandera_outcome,
    polars_schema,
)
from alloc_assets.schemas.market import (
    CHECK_DATES_IN_PARTITION,
    CHECK_EXPECTED_SYMBOLS,
    CHECK_INDICATORS_VALID,
    CHECK_NO_MISSING_SESSIONS,
    CHECK_PRICES_VALID,
    CHECK_RETURN_JUMPS,
    CHECK_UNIQUE_DATE_SYMBOL,
    MARKET_CHECKS,
    MarketIndicators,
    MarketPrices,
    describe_first_failure,
    indicator_checks,
    market_price_checks,
)
from alloc_assets.schemas.portfolio import (
    BACKTEST_CHECKS,
    CHECK_BACKTEST_FINITE,
    CHECK_REPORT_KEYS,
    CHECK_SCALED_CONSISTENT,
    CHECK_WEIGHTS_VALID,
    REPORT_CHECKS,
    WEIGHT_CHECKS,
    Backtest,
    Weights,
)

__all__ = [
    "APPLIED_CHECKS", "BACKTEST_CHECKS", "CHECK_BACKTEST_FINITE", "CHECK_DATES_IN_PARTITION", "CHECK_EXPECTED_SYMBOLS",
    "CHECK_INDICATORS_VALID", "CHECK_LAG", "CHECK_NO_MISSING_SESSIONS", "CHECK_PRICES_VALID", "CHECK_PROBABILITIES",
    "CHECK_REPORT_KEYS", "CHECK_RETURN_JUMPS", "CHECK_SCALAR_BOUNDS", "CHECK_SCALAR_JUMP", "CHECK_SCALED_CONSISTENT",
    "CHECK_STATE_FINITE", "CHECK_THRASH", "CHECK_UNIQUE_DATE_SYMBOL", "CHECK_WEIGHTS_VALID", "ERROR", "MARKET_CHECKS",
    "MAX_FAILURE_ROWS", "REGIME_CHECKS", "REGIME_LABELS", "REPORT_CHECKS", "RISK_CHECKS", "SCALAR_SOURCES",
    "STATE_CHECKS", "WARN", "WEIGHT_CHECKS", "AppliedScalars", "Backtest", "CheckOutcome", "LatentState",
    "MarketIndicators", "MarketPrices", "RegimeSeries", "RiskScalars", "Weights", "describe_first_failure",
    "failures_markdown", "indicator_checks", "market_price_checks", "mask_outcome", "offending_rows",
    "pandera_failures", "pandera_outcome", "polars_schema",
]
