"""One pandera model per stored artifact, plus the checks that need run-time facts.

Every asset validates its frame *before* it writes: blocking (ERROR) failures stop the write (the
warehouse keeps what it had), and each check becomes a Dagster check result whose metadata carries
the offending rows (file and row of the input where known). WARN checks are reported and the data
is stored. Check names are module constants so tests, assets and the UI agree.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandera.polars as pa
import polars as pl

from alloc_assets.core.regime import PROBABILITY_COLUMNS, REGIME_LABELS

ERROR = "ERROR"
WARN = "WARN"
MAX_FAILURE_ROWS = 20  # offending rows shown in check metadata (the count is always complete)


@dataclass(frozen=True)
class CheckOutcome:
    """The result of one named data check on one artifact."""

    name: str
    passed: bool
    severity: str
    description: str
    failures: pl.DataFrame = field(default_factory=pl.DataFrame)

    @property
    def blocking_failure(self) -> bool:
        return not self.passed and self.severity == ERROR


# --------------------------------------------------------------------------------------------
# market_prices

CHECK_PRICES_VALID = "prices_finite_positive"
CHECK_UNIQUE_DATE_SYMBOL = "unique_date_symbol"
CHECK_DATES_IN_PARTITION = "dates_in_partition"
CHECK_EXPECTED_SYMBOLS = "expected_symbols"
CHECK_NO_MISSING_SESSIONS = "no_missing_sessions"
CHECK_RETURN_JUMPS = "return_jumps"
CHECK_INDICATORS_VALID = "indicators_valid"

MARKET_CHECKS: dict[str, tuple[str, str]] = {
    CHECK_PRICES_VALID: (ERROR, "Every close is a finite number > 0 (no NaN, inf, zero or negative price)."),
    CHECK_UNIQUE_DATE_SYMBOL: (ERROR, "At most one row per (date, symbol)."),
    CHECK_DATES_IN_PARTITION: (ERROR, "Every row is dated inside the partition (window) being materialized."),
    CHECK_EXPECTED_SYMBOLS: (ERROR, "Every date has a price for every symbol of the universe, and no other symbol."),
    CHECK_NO_MISSING_SESSIONS: (ERROR, "Every NYSE session of the partition window has data (no silent hole)."),
    CHECK_RETURN_JUMPS: (WARN, "No daily return larger in magnitude than the configured threshold."),
    CHECK_INDICATORS_VALID: (ERROR, "Indicators (never traded): one value per (date, name), dated on an NYSE session "
                             "inside the window, finite or missing (a missing value carries the last one forward)."),
}


class MarketPrices(pa.DataFrameModel):
    """``market_prices``: daily adjusted closes of the strategy universe, one row per (date, symbol)."""

    date: dt.date = pa.Field(nullable=False, description="NYSE trading day (partition key).")
    symbol: str = pa.Field(nullable=False, description="Ticker of a stock in the strategy universe.")
    close: float = pa.Field(gt=0, nullable=False, description="Adjusted close price, finite and > 0.")

    @pa.check("close", name="finite")
    def finite(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_finite())

    class Config:
        unique = ["date", "symbol"]
        strict = False  # provenance columns (source_file, source_row) travel with the frame


class MarketIndicators(pa.DataFrameModel):
    """``market_indicators``: exogenous daily series (VIX, spreads, yields) that feed the latent
    state and are never traded, one row per (date, name)."""

    date: dt.date = pa.Field(nullable=False, description="NYSE trading day (rows on other days are skipped on read, with a note).")
    name: str = pa.Field(nullable=False, description="Indicator name (lower case, from the file or column name).")
    value: float = pa.Field(nullable=True, description="Value as given; NaN where the file had a missing token "
                            "(the latent state carries the last value forward).")

    @pa.check("value", name="finite_or_missing")
    def finite_or_missing(cls, data: pa.PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(data.key).is_finite() | pl.col(data.key).is_nan() | pl.col(data.key).is_null())

    class Config:
        unique = ["date", "name"]
        strict = False


def indicator_checks(frame: pl.DataFrame, start: dt.date, end: dt.date, sessions: set[dt.date]) -> CheckOutcome:
    """The ``indicators_valid`` check of the indicator rows meant for [start, end] (provenance kept)."""
    sev, desc = MARKET_CHECKS[CHECK_INDICATORS_VALID]
    if frame.height == 0:
        return CheckOutcome(CHECK_INDICATORS_VALID, True, sev, desc)
    fc = pandera_failures(MarketIndicators, frame)
    problems: dict[int, str] = {}
    if fc.height:
        fc = fc.filter(pl.col("index").is_not_null())
        for i, c, v in zip(fc["index"].to_list(), fc["check"].to_list(), fc["failure_case"].to_list()):
            problems.setdefault(int(i), f"{c}: {v}")
    dates = frame["date"].to_list()
    for i, d in enumerate(dates):
        if d < start or d > end:
            problems.setdefault(i, f"dated outside {start}..{end}")
        elif d not in sessions:
            problems.setdefault(i, "not an NYSE trading day")
    return CheckOutcome(CHECK_INDICATORS_VALID, not problems, sev, desc,
                        _rows(frame, sorted(problems), [problems[i] for i in sorted(problems)]))


def pandera_failures(model: type[pa.DataFrameModel], frame: pl.DataFrame) -> pl.DataFrame:
    """pandera's lazy failure cases (``check, column, failure_case, index``); empty if valid."""
    try:
        model.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        return exc.failure_cases
    return pl.DataFrame()


def _rows(frame: pl.DataFrame, index: list[int], problem: list[str]) -> pl.DataFrame:
    """The offending input rows (with provenance) and what is wrong with each."""
    if not index:
        return pl.DataFrame()
    lookup = dict(zip(index, problem))
    rows = frame.with_row_index("_i").filter(pl.col("_i").is_in(index))
    return rows.with_columns(pl.Series("problem", [lookup[int(i)] for i in rows["_i"]])).drop("_i")


def market_price_checks(
    frame: pl.DataFrame,
    start: dt.date,
    end: dt.date,
    sessions: list[dt.date],
    expected_symbols: list[str] | None,
    previous_close: dict[str, float] | None = None,
    jump_threshold: float = 0.5,
) -> list[CheckOutcome]:
    """All ``market_prices`` checks for the rows meant for the window [start, end].

    ``frame``: long rows ``date, symbol, close`` (+ ``source_file, source_row``);
    ``sessions``: the NYSE sessions of the window; ``expected_symbols``: the universe (None: the
    symbols present); ``previous_close``: last stored close before ``start`` per symbol, so the
    return-jump check covers the first day of the window too.
    """
    out: list[CheckOutcome] = []
    fc = pandera_failures(MarketPrices, frame)

    def from_pandera(name: str, checks: set[str] | None, columns: set[str] | None) -> CheckOutcome:
        sel = fc
        if sel.height:
            if checks is not None:
                sel = sel.filter(pl.col("check").is_in(list(checks)))
            if columns is not None:
                sel = sel.filter(pl.col("column").is_in(list(columns)))
            sel = sel.filter(pl.col("index").is_not_null())
        index = [int(i) for i in sel["index"].to_list()] if sel.height else []
        problems = [f"{c}: {v}" for c, v in zip(sel["check"].to_list(), sel["failure_case"].to_list())] if sel.height else []
        first: dict[int, str] = {}
        for i, p in zip(index, problems):
            first.setdefault(i, p)
        sev, desc = MARKET_CHECKS[name]
        return CheckOutcome(name, not first, sev, desc, _rows(frame, list(first), list(first.values())))

    out.append(from_pandera(CHECK_PRICES_VALID, None, {"close"}))
    out.append(from_pandera(CHECK_UNIQUE_DATE_SYMBOL, {"multiple_fields_uniqueness"}, None))

    # dates inside the window
    idx = frame.with_row_index("_i").filter((pl.col("date") < start) | (pl.col("date") > end))["_i"].to_list()
    sev, desc = MARKET_CHECKS[CHECK_DATES_IN_PARTITION]
    out.append(CheckOutcome(CHECK_DATES_IN_PARTITION, not idx, sev, desc,
                            _rows(frame, idx, [f"dated outside {start}..{end}"] * len(idx))))

    # every session present
    present = set(frame["date"].unique().to_list()) if frame.height else set()
    missing = [d for d in sessions if d not in present]
    sev, desc = MARKET_CHECKS[CHECK_NO_MISSING_SESSIONS]
    out.append(CheckOutcome(CHECK_NO_MISSING_SESSIONS, not missing, sev, desc,
                            pl.DataFrame({"date": missing, "problem": ["no market data for this trading day"] * len(missing)},
                                         schema={"date": pl.Date, "problem": pl.Utf8})))

    # the universe on every date
    universe = sorted(expected_symbols) if expected_symbols else sorted(frame["symbol"].unique().to_list())
    sev, desc = MARKET_CHECKS[CHECK_EXPECTED_SYMBOLS]
    unknown = frame.with_row_index("_i").filter(~pl.col("symbol").is_in(universe))["_i"].to_list()
    per_date = frame.filter(pl.col("symbol").is_in(universe)).group_by("date").agg(pl.col("symbol").unique())
    gaps = []
    for d, syms in per_date.sort("date").iter_rows():
        for s in sorted(set(universe) - set(syms)):
            gaps.append((d, s))
    problems = _rows(frame, unknown, ["symbol not in the universe"] * len(unknown))
    if gaps:
        gap_frame = pl.DataFrame({"date": [g[0] for g in gaps], "symbol": [g[1] for g in gaps],
                                  "problem": ["no price for this symbol on this date"] * len(gaps)},
                                 schema={"date": pl.Date, "symbol": pl.Utf8, "problem": pl.Utf8})
        problems = gap_frame if problems.height == 0 else pl.concat([problems, gap_frame], how="diagonal_relaxed")
    out.append(CheckOutcome(CHECK_EXPECTED_SYMBOLS, problems.height == 0, sev, desc, problems))

    # return jumps (WARN), only meaningful on otherwise valid prices
    sev, desc = MARKET_CHECKS[CHECK_RETURN_JUMPS]
    valid = frame.filter(pl.col("close").is_finite() & (pl.col("close") > 0))
    if previous_close:
        prev = pl.DataFrame({"symbol": list(previous_close), "_prev0": list(previous_close.values())})
        valid = valid.join(prev, on="symbol", how="left")
    else:
        valid = valid.with_columns(pl.lit(None, dtype=pl.Float64).alias("_prev0"))
    valid = valid.sort(["symbol", "date"]).with_columns(
        pl.col("close").shift(1).over("symbol").alias("_prev"))
    valid = valid.with_columns(
        pl.when(pl.col("_prev").is_null()).then(pl.col("_prev0")).otherwise(pl.col("_prev")).alias("_prev"))
    jumps = valid.with_columns((pl.col("close") / pl.col("_prev") - 1.0).alias("return")).filter(
        pl.col("return").abs() > jump_threshold).drop("_prev0", "_prev")
    jumps = jumps.with_columns(pl.format("|return| > {}", pl.lit(jump_threshold)).alias("problem"))
    out.append(CheckOutcome(CHECK_RETURN_JUMPS, jumps.height == 0, sev,
                            f"{desc} (threshold {jump_threshold:.0%})", jumps))
    return out


def describe_first_failure(outcome: CheckOutcome) -> str:
    """One line naming file, row and column of the first offending row of a failed check."""
    f = outcome.failures
    if f.height == 0:
        return outcome.description
    r = f.row(0, named=True)
    parts = []
    if r.get("source_file"):
        parts.append(f"file {r['source_file']}")
    if r.get("source_row") is not None:
        parts.append(f"row {r['source_row']} (line {int(r['source_row']) + 1})")
    column = "date" if outcome.name in (CHECK_DATES_IN_PARTITION, CHECK_NO_MISSING_SESSIONS) else (
        "symbol" if outcome.name in (CHECK_EXPECTED_SYMBOLS, CHECK_UNIQUE_DATE_SYMBOL) else
        (r.get("source_column") or "close"))
    if outcome.name == CHECK_EXPECTED_SYMBOLS and r.get("symbol") and not r.get("source_file"):
        column = f"symbol {r['symbol']}"
    parts.append(f"column '{column}'")
    detail = ", ".join(f"{k}={r[k]}" for k in ("date", "symbol", "close") if k in r and r[k] is not None)
    more = f" (and {f.height - 1} more)" if f.height > 1 else ""
    return f"{', '.join(parts)}: {r.get('problem', outcome.name)} [{detail}]{more} - check '{outcome.name}': {outcome.description}"


def failures_markdown(frame: pl.DataFrame, limit: int = MAX_FAILURE_ROWS) -> str:
    """Offending rows as a markdown table (first ``limit``), for check metadata in the UI."""
    if frame.height == 0:
        return "_none_"
    head = frame.head(limit)
    cols = head.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in head.iter_rows():
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    if frame.height > limit:
        lines.append(f"\n_{frame.height - limit} more rows not shown_")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# allocator layers: latent_state, regime_series, risk_scalars, applied_scalars

CHECK_STATE_FINITE = "state_finite"
CHECK_PROBABILITIES = "probabilities_valid"
CHECK_THRASH = "regime_thrash"
CHECK_SCALAR_BOUNDS = "scalar_within_bounds"
CHECK_SCALAR_JUMP = "scalar_jump"
CHECK_LAG = "lag_honoured"

STATE_CHECKS = {CHECK_STATE_FINITE: (ERROR, "Every feature of every row is a finite number.")}
REGIME_CHECKS = {
    CHECK_PROBABILITIES: (ERROR, "p_normal..p_crisis each in [0, 1], summing to 1 within 1e-9; regime is a known label."),
    CHECK_THRASH: (WARN, "Regime transitions over the last 252 days stay within the thrash limit."),
}
RISK_CHECKS = {
    CHECK_SCALAR_BOUNDS: (ERROR, "risk_scalar within [floor, 1]."),
    CHECK_SCALAR_JUMP: (WARN, "The daily change of risk_scalar stays within max_step."),
}
APPLIED_CHECKS = {
    CHECK_SCALAR_BOUNDS: (ERROR, "risk_scalar_applied within [floor, 1] (overrides within [0, 1])."),
    CHECK_LAG: (ERROR, "At each rebalance r(k), a computed scalar is the risk scalar of r(k-1) (one-rebalance lag)."),
}
SCALAR_SOURCES = ("computed", "override", "missing_default")


class LatentState(pa.DataFrameModel):
    """``latent_state``: causal market features per trading day (one column per feature) and ``warm``."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Trading day; features use data through this close only.")
    warm: bool = pa.Field(nullable=False, description="False while the features still lean on their day-1 priors.")

    class Config:
        strict = False


class RegimeSeries(pa.DataFrameModel):
    """``regime_series``: P(regime | data through t) and the hysteresis label."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Trading day.")
    regime: str = pa.Field(isin=list(REGIME_LABELS), description="Label after hysteresis.")
    p_normal: float = pa.Field(ge=0, le=1, description="P(NORMAL | data through t).")
    p_elevated: float = pa.Field(ge=0, le=1, description="P(ELEVATED | data through t).")
    p_stress: float = pa.Field(ge=0, le=1, description="P(STRESS | data through t).")
    p_crisis: float = pa.Field(ge=0, le=1, description="P(CRISIS | data through t).")
    score: float = pa.Field(nullable=True, description="Stress score (weighted standardised features).")

    @pa.dataframe_check(name="probabilities_sum_to_one")
    def sums_to_one(cls, data: pa.PolarsData) -> pl.LazyFrame:
        total = pl.sum_horizontal(*(pl.col(c) for c in PROBABILITY_COLUMNS))
        return data.lazyframe.select(((total - 1.0).abs() <= 1e-9).alias("ok"))

    class Config:
        strict = False


class RiskScalars(pa.DataFrameModel):
    """``risk_scalars``: the daily scalar computed from the regime probabilities."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Trading day.")
    regime: str = pa.Field(isin=list(REGIME_LABELS), description="Regime label of the day.")
    risk_scalar: float = pa.Field(ge=0, le=1, description="Scalar in [floor, 1] computed with data through the close.")

    class Config:
        strict = False


class AppliedScalars(pa.DataFrameModel):
    """``applied_scalars``: the scalar in force from each rebalance date (computed at the previous one)."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Rebalance date r(k).")
    risk_scalar_applied: float = pa.Field(ge=0, le=1, description="Scalar applied from r(k).")
    source_date: dt.date = pa.Field(nullable=True, description="r(k-1), the date the scalar was computed (computed rows).")
    source: str = pa.Field(isin=list(SCALAR_SOURCES), description="computed | override | missing_default.")

    class Config:
        strict = False


def mask_outcome(name: str, checks: dict[str, tuple[str, str]], frame: pl.DataFrame, bad: list[bool] | pl.Series,
                 problem: str, columns: list[str] | None = None) -> CheckOutcome:
    """A check outcome from a boolean mask of offending rows."""
    sev, desc = checks[name]
    bad_series = pl.Series(bad, dtype=pl.Boolean) if not isinstance(bad, pl.Series) else bad
    rows = frame.filter(bad_series)
    if columns:
        rows = rows.select([c for c in columns if c in rows.columns])
    rows = rows.with_columns(pl.lit(problem).alias("problem")) if rows.height else rows
    return CheckOutcome(name, rows.height == 0, sev, desc, rows)


def pandera_outcome(name: str, checks: dict[str, tuple[str, str]], model: type[pa.DataFrameModel],
                    frame: pl.DataFrame) -> CheckOutcome:
    """A check outcome from a pandera model: every failure case with its row."""
    fc = pandera_failures(model, frame)
    sev, desc = checks[name]
    if fc.height == 0:
        return CheckOutcome(name, True, sev, desc)
    indexed = fc.filter(pl.col("index").is_not_null())
    index = [int(i) for i in indexed["index"].to_list()]
    problems = [f"{c} {k}: {v}" for c, k, v in zip(indexed["column"], indexed["check"], indexed["failure_case"])]
    first: dict[int, str] = {}
    for i, p in zip(index, problems):
        first.setdefault(i, p)
    rows = _rows(frame, list(first), list(first.values()))
    if rows.height == 0:  # schema-level failure (missing column, dtype)
        rows = fc.select(pl.col("column").cast(pl.Utf8), pl.col("check").cast(pl.Utf8).alias("problem"))
    return CheckOutcome(name, False, sev, desc, rows)


# --------------------------------------------------------------------------------------------
# strategy, backtests, report

CHECK_WEIGHTS_VALID = "weights_valid"
CHECK_SCALED_CONSISTENT = "scaled_equals_scalar_times_raw"
CHECK_BACKTEST_FINITE = "backtest_finite"
CHECK_REPORT_KEYS = "report_has_contract_keys"

WEIGHT_CHECKS = {CHECK_WEIGHTS_VALID: (ERROR, "Weights in [0, 1], each date summing to at most 1 (the rest is cash).")}
BACKTEST_CHECKS = {
    CHECK_BACKTEST_FINITE: (ERROR, "Every daily return is finite and equity stays > 0."),
    CHECK_SCALED_CONSISTENT: (ERROR, "Each scaled weight equals the applied scalar times the raw weight."),
}
REPORT_CHECKS = {CHECK_REPORT_KEYS: (ERROR, "The report holds every key of the contract.")}


class Weights(pa.DataFrameModel):
    """``weights_raw`` / ``weights_scaled``: target weights at trade dates."""

    date: dt.date = pa.Field(nullable=False, description="Trade date (close); the weights earn returns from the next day.")
    symbol: str = pa.Field(nullable=False, description="Stock of the universe.")
    weight: float = pa.Field(ge=0, le=1, description="Target weight; 1 - sum over symbols is cash.")

    class Config:
        strict = False


class Backtest(pa.DataFrameModel):
    """``baseline_backtest`` / ``scaled_backtest``: one row per trading day."""

    date: dt.date = pa.Field(nullable=False, unique=True, description="Trading day.")
    portfolio_return: float = pa.Field(description="Daily return net of costs.")
    equity: float = pa.Field(gt=0, description="Wealth after the day, 1 before the first day.")
    turnover: float = pa.Field(ge=0, description="Traded notional sum |w_new - w_drifted| on the day.")
    cost: float = pa.Field(ge=0, description="Cost charged on the day, bps x turnover / 1e4.")

    class Config:
        strict = False
