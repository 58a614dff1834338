"""``market_prices`` and ``market_indicators``: their pandera models and the checks that need
run-time facts (the partition window, the NYSE sessions, the universe, the previous close).

Input rows carry provenance (``source_file``, ``source_row``) so a failure names the file and
line to fix; the models are not strict, so those columns travel with the frame.
"""

from __future__ import annotations

import datetime as dt

import pandera.polars as pa
import polars as pl

from alloc_assets.schemas.checks import ERROR, WARN, CheckOutcome, offending_rows, pandera_failures

__all__ = ["CHECK_DATES_IN_PARTITION", "CHECK_EXPECTED_SYMBOLS", "CHECK_INDICATORS_VALID",
    "CHECK_NO_MISSING_SESSIONS", "CHECK_PRICES_VALID", "CHECK_RETURN_JUMPS", "CHECK_UNIQUE_DATE_SYMBOL",
    "MARKET_CHECKS", "MarketIndicators", "MarketPrices", "describe_first_failure", "indicator_checks",
    "market_price_checks"]

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
                        offending_rows(frame, sorted(problems), [problems[i] for i in sorted(problems)]))


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
        return CheckOutcome(name, not first, sev, desc, offending_rows(frame, list(first), list(first.values())))

    out.append(from_pandera(CHECK_PRICES_VALID, None, {"close"}))
    out.append(from_pandera(CHECK_UNIQUE_DATE_SYMBOL, {"multiple_fields_uniqueness"}, None))

    # dates inside the window
    idx = frame.with_row_index("_i").filter((pl.col("date") < start) | (pl.col("date") > end))["_i"].to_list()
    sev, desc = MARKET_CHECKS[CHECK_DATES_IN_PARTITION]
    out.append(CheckOutcome(CHECK_DATES_IN_PARTITION, not idx, sev, desc,
                            offending_rows(frame, idx, [f"dated outside {start}..{end}"] * len(idx))))

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
    problems = offending_rows(frame, unknown, ["symbol not in the universe"] * len(unknown))
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
    """One line naming file, row and column of the first offending row of a failed check (any
    artifact's). It lives here because the column it names follows the market checks; other
    checks fall back to ``source_column``, then ``close``."""
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
