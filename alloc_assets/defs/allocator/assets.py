"""The allocator layers: latent_state -> regime_series -> risk_scalars -> applied_scalars.

Each is one unpartitioned, incremental asset (not thousands of daily partitions). A
materialization reads the change log of its upstream (``layer_changes``) since the version it
consumed last (``layer_watermark``), and recomputes from the earliest changed day through the last
day its upstream holds without a gap, continuing from the stored carry of the day before (or the
latest month-end checkpoint before it). One new day costs one day of work and gives exactly what a
full recompute gives; a day that landed late (or was corrected) recomputes from that day; a run
with nothing new is a no-op. Carries and watermarks are keyed by a hash of the settings: changing
the settings recomputes from the first day rather than mixing configurations.
"""

import datetime as dt
from dataclasses import dataclass

import dagster as dg
import numpy as np
import polars as pl

from alloc_assets.core.regime import REGIME_LABELS
from alloc_assets.core.market.calendar import next_session, rebalance_mask, sessions_between, trading_sessions
from alloc_assets.core.allocator.features import StateFrame, encode, feature_specs
from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.market.panel import PricePanel
from alloc_assets.core.allocator.regimes import PROBABILITY_COLUMNS, compute_regimes, regime_statistics
from alloc_assets.core.allocator.scalars import applied_scalars as compute_applied
from alloc_assets.core.allocator.scalars import risk_scalars as compute_risk_scalars
from alloc_assets.defs.common import (
    JUMP_FITS_TABLE,
    SINGLE_RUN,
    WAREHOUSE_POOL,
    WAREHOUSE_RETRY,
    benchmark_jump_states,
    check_result,
    column_schema,
    history_span,
    new_fit_rows,
    raise_on_blocking,
    stored_indicator_names,
)
from alloc_assets.schemas import (
    APPLIED_CHECKS,
    CHECK_LAG,
    CHECK_PROBABILITIES,
    CHECK_SCALAR_BOUNDS,
    CHECK_SCALAR_JUMP,
    CHECK_STATE_FINITE,
    CHECK_THRASH,
    REGIME_CHECKS,
    REGIME_LABELS,
    RISK_CHECKS,
    STATE_CHECKS,
    AppliedScalars,
    LatentState,
    RegimeSeries,
    RiskScalars,
    failures_markdown,
    mask_outcome,
    pandera_outcome,
)
from resources.allocator import AllocatorSettings
from resources.warehouse import Change, DuckDBWarehouse, Watermark

GROUP = "allocator"


def _specs(asset: str, checks: dict) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, description=desc, blocking=sev == "ERROR")
            for name, (sev, desc) in checks.items()]


def _previous_session(day: dt.date) -> dt.date | None:
    s = trading_sessions()
    pos = s.searchsorted(np.datetime64(day, "D"), side="left")
    return s[pos - 1].date() if pos > 0 else None


def _resume_point(warehouse: DuckDBWarehouse, asset: str, config_hash: str, start: dt.date,
                  first: dt.date) -> tuple[dt.date, dict | None]:
    """Where to start computing for a window starting at ``start``: (from_date, carry before it)."""
    prev = _previous_session(start)
    if start <= first or prev is None:
        return first, None
    found = warehouse.latest_carry(asset, config_hash, prev)
    if found is None or found[0] < first:
        return first, None
    carry_date, carry = found
    nxt = sessions_between(carry_date + dt.timedelta(days=1), start)
    return nxt[0].date(), carry


@dataclass(frozen=True)
class LayerPlan:
    """What one materialization of an incremental layer computes: rows ``start``..``through``,
    computed from ``compute_from`` on (with ``carry``, the state after the day before it)."""

    asset: str
    upstream: str
    config_hash: str
    upstream_version: int
    start: dt.date | None        # None: nothing to compute
    through: dt.date | None
    compute_from: dt.date | None
    carry: dict | None
    full: bool
    reason: str

    def watermark(self) -> Watermark:
        return Watermark(self.asset, self.upstream, self.upstream_version, self.config_hash)

    def change(self, run_id: str) -> Change:
        return Change(self.asset, self.start, self.through, run_id)

    def metadata(self) -> dict:
        return {"computed_rows_from": str(self.start) if self.start else "nothing to compute",
                "computed_through": str(self.through) if self.through else "n/a",
                "recomputed_from_carry_of": str(self.compute_from) if self.compute_from else "n/a",
                "full_recompute": self.full, "why": self.reason,
                "upstream_version_consumed": self.upstream_version}


def plan_layer(warehouse: DuckDBWarehouse, asset: str, upstream: str, config_hash: str,
               upstream_first: dt.date | None, upstream_through: dt.date | None) -> LayerPlan:
    """Where ``asset`` must recompute, from the change log and its watermark (see the module doc)."""
    version = warehouse.latest_version(upstream)
    wm = warehouse.watermark(asset)
    own_last = None
    if warehouse.table_exists(asset):
        own_last = warehouse.query(f"SELECT max(date) AS d FROM {asset}")["d"][0]
    if upstream_first is None or upstream_through is None:
        return LayerPlan(asset, upstream, config_hash, version, None, None, None, None, False,
                         f"{upstream} holds no contiguous days yet")
    if wm is None or own_last is None or wm.config_hash != config_hash or wm.upstream != upstream:
        why = "first run" if wm is None or own_last is None else "settings changed"
        return LayerPlan(asset, upstream, config_hash, version, upstream_first, upstream_through, upstream_first,
                         None, True, f"{why}: recompute from the first day")
    changed = warehouse.changed_since(upstream, wm.version)
    following = next_session(own_last)
    candidates = [d for d in (changed, following) if d is not None]
    start = max(min(candidates), upstream_first) if candidates else None
    if start is None or start > upstream_through:
        return LayerPlan(asset, upstream, config_hash, version, None, upstream_through, None, None, False,
                         f"up to date through {own_last} ({upstream} holds nothing new without a gap)")
    compute_from, carry = _resume_point(warehouse, asset, config_hash, start, upstream_first)
    why = (f"{upstream} changed from {changed}" if changed is not None and changed <= (following or changed)
           else f"new days after {own_last}")
    return LayerPlan(asset, upstream, config_hash, version, start, upstream_through, compute_from, carry, False, why)


def start_layer(warehouse: DuckDBWarehouse, asset: str, upstream: str, config_hash: str) -> tuple[LayerPlan, dt.date]:
    """The plan of ``asset`` and its upstream's first day (the market: through its last day
    without a gap); an empty upstream fails without retry."""
    first, through = history_span(warehouse) if upstream == "market_prices" else _span(warehouse, upstream)
    if first is None:
        raise dg.Failure(allow_retries=False, description=f"{upstream} is empty: materialize it first.")
    return plan_layer(warehouse, asset, upstream, config_hash, first, through), first


def write_layer(warehouse: DuckDBWarehouse, plan: LayerPlan, frame: pl.DataFrame, run_id: str,
                carries: pl.DataFrame | None = None) -> int | None:
    """Replace the layer's rows from ``plan.start`` on, drop stale carries, append the change and
    move the watermark: one transaction."""
    start = dt.date.min if plan.full else plan.start
    return warehouse.replace_window({plan.asset: frame}, start, dt.date.max, carries=carries,
                                    stale_carries=(plan.asset, start), change=plan.change(run_id),
                                    consumed=plan.watermark(), rebuild=plan.full)


def _no_op(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, plan: LayerPlan, specs: dict):
    """Nothing new upstream: move the watermark, materialize with the reason, checks pass (skipped)."""
    warehouse.replace_window({}, dt.date.min, dt.date.min, consumed=plan.watermark())
    context.log.info(f"{plan.asset}: {plan.reason}")
    yield dg.MaterializeResult(metadata={**plan.metadata(), "dagster/row_count": 0})
    for name in specs:
        yield dg.AssetCheckResult(asset_key=plan.asset, check_name=name, passed=True,
                                  description=f"nothing recomputed: {plan.reason}")


def _span(warehouse: DuckDBWarehouse, table: str) -> tuple[dt.date | None, dt.date | None]:
    if not warehouse.table_exists(table):
        return None, None
    row = warehouse.query(f"SELECT min(date) AS a, max(date) AS b FROM {table}")
    return row["a"][0], row["b"][0]


def _require_complete(frame_dates: list[dt.date], start: dt.date, end: dt.date, upstream: str, asset: str) -> None:
    """No silent holes: every session in [start, end] must be present upstream."""
    expected = list(sessions_between(start, end).date)
    have = set(frame_dates)
    missing = [d for d in expected if d not in have]
    if missing:
        raise dg.Failure(
            allow_retries=False,
            description=(f"{asset}: {upstream} has no rows for {len(missing)} trading day(s) between {start} and {end} "
                         f"(first: {missing[0]}); materialize {upstream} for that range first. Nothing was stored."),
            metadata={"missing_dates": dg.MetadataValue.md(", ".join(map(str, missing[:50])))},
        )


def load_panel(warehouse: DuckDBWarehouse, start: dt.date, end: dt.date) -> PricePanel:
    """Prices (and benchmark, sectors) of [start, end] from the warehouse as a ``PricePanel``."""
    prices = warehouse.query("SELECT date, symbol, close FROM market_prices WHERE date BETWEEN ? AND ?", [start, end])
    if prices.height == 0:
        raise dg.Failure(allow_retries=False, description=f"market_prices has no rows between {start} and {end}; materialize it first.")
    wide = prices.pivot(on="symbol", index="date", values="close").sort("date")
    symbols = tuple(sorted(c for c in wide.columns if c != "date"))
    close = wide.select(symbols).to_numpy().astype(np.float64)
    if not np.isfinite(close).all():
        raise dg.Failure(allow_retries=False, description="market_prices has a symbol missing on some date in the window; re-run market_prices.")
    dates = wide["date"].to_numpy().astype("datetime64[D]")
    bench = None
    has_benchmark = warehouse.table_exists("market_benchmark") and \
        warehouse.query("SELECT count(*) AS n FROM market_benchmark")["n"][0] > 0
    if has_benchmark:  # a data set with a benchmark needs it on every day: never a silent switch
        b = warehouse.query("SELECT date, close FROM market_benchmark WHERE date BETWEEN ? AND ? ORDER BY date", [start, end])
        got = set(b["date"].to_list())
        missing = [d for d in wide["date"].to_list() if d not in got]
        if missing:
            raise dg.Failure(allow_retries=False, description=(
                f"market_benchmark has no close on {len(missing)} stored trading day(s) between {start} and {end} "
                f"(first: {missing[0]}): the benchmark would silently become the equal-weight index. Land a file "
                "with the benchmark column for those days (or fix the source) and re-run."))
        b = b.filter(pl.col("date").is_in(wide["date"].to_list()))
        bench = b["close"].to_numpy().astype(np.float64)
    sectors = {}
    if warehouse.table_exists("market_sectors"):
        sec = warehouse.query("SELECT symbol, sector FROM market_sectors")
        sectors = dict(zip(sec["symbol"].to_list(), sec["sector"].to_list()))
    return PricePanel(dates, symbols, close, bench, sectors)


def load_indicators(warehouse: DuckDBWarehouse, dates: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Each indicator aligned to ``dates`` (NaN where the day has no value; the encoder carries
    the last value forward, so a value dated t uses data through t only)."""
    if not names or len(dates) == 0:
        return {}
    days = [dt.date.fromisoformat(str(d)) for d in dates.astype("datetime64[D]")]
    rows = warehouse.query("SELECT date, name, value FROM market_indicators WHERE date BETWEEN ? AND ?",
                           [days[0], days[-1]])
    pos = {d: i for i, d in enumerate(days)}
    out = {n: np.full(len(days), np.nan) for n in names}
    for d, n, v in rows.iter_rows():
        if d in pos and n in out and v is not None:
            out[n][pos[d]] = v
    return out


def _checkpoints(dates: np.ndarray, carries, keep_from: int = 0) -> dict[dt.date, dict]:
    """Carries to store: every month end and the last date."""
    mask = rebalance_mask(dates, "monthly")
    mask[-1] = True
    out = {}
    for i in np.flatnonzero(mask):
        if i >= keep_from or i == len(dates) - 1:
            out[dt.date.fromisoformat(str(dates[i]))] = carries[int(i)]
    return out


def _window_filter(frame: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    return frame.filter((pl.col("date") >= start) & (pl.col("date") <= end))


def _to_polars(pdf, keep_nan: bool = False) -> pl.DataFrame:
    """``keep_nan``: NaN stays NaN (the state: an indicator before its first value) instead of null."""
    frame = pl.from_pandas(pdf, nan_to_null=not keep_nan)
    return frame.with_columns(pl.col("date").cast(pl.Date))


# ------------------------------------------------------------------------------------------------
# latent_state

def _state_description() -> str:
    lines = ["| feature | formula | window | units |", "|---|---|---|---|"]
    lines += [f"| {s.name} | {s.formula} | {s.window} | {s.units} |" for s in feature_specs()]
    return "\n".join(lines)


@dg.asset(
    deps=["market_prices"],
    group_name=GROUP,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy", "pandera"},
    code_version="state-2",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=_specs("latent_state", STATE_CHECKS),
    metadata={"dagster/column_schema": column_schema(LatentState), "dagster/table_name": "latent_state",
              "features": dg.MetadataValue.md(_state_description())},
)
def latent_state(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, allocator: AllocatorSettings):
    """Causal market features per trading day, z_t = Encoder(o_t, z_{t-1}).

    Realised volatility at several horizons, volatility shock, benchmark drawdown, average pairwise
    correlation and its shock, trend and breadth (see the ``features`` table in this asset's
    metadata for formulas, windows and units). A value dated t uses closes through t only. Rows are
    defined from the first day; ``warm`` is false while the features lean on their priors.
    """
    with warehouse.session():  # one DuckDB connection for the whole step
        warehouse.ensure_tables("allocator")
        names = stored_indicator_names(warehouse)
        cfg, h = allocator.feature_config(), allocator.config_hash("state", indicators=names)
        plan, first = start_layer(warehouse, "latent_state", "market_prices", h)
        if plan.start is None:
            yield from _no_op(context, warehouse, plan, STATE_CHECKS)
            return
        start, end, from_date, carry = plan.start, plan.through, plan.compute_from, plan.carry
        panel = load_panel(warehouse, from_date, end)
        _require_complete([dt.date.fromisoformat(str(d)) for d in panel.dates], max(from_date, first), end,
                          "market_prices", "latent_state")
        clash = sorted(set(names) & {s.name for s in feature_specs()} | set(names) & {"date", "warm"})
        if clash:
            raise dg.Failure(allow_retries=False, description=(
                f"indicator name(s) {clash} clash with latent-state features: rename the indicator file or column."))
        extra = load_indicators(warehouse, panel.dates, names)
        frame_all, _, carries = encode(panel, carry, cfg, extra=extra, return_carries=True)
        keep_from = int(np.searchsorted(frame_all.dates, np.datetime64(start, "D")))
        frame = _to_polars(frame_all.slice(keep_from, len(frame_all)).to_pandas(), keep_nan=True)
        features = [c for c in frame.columns if c not in ("date", "warm")]
        # an indicator is NaN before its first value (it then carries forward): allowed, inf never
        finite = frame.select(pl.all_horizontal([
            (pl.col(c).is_finite() | pl.col(c).is_nan()) if c in names else pl.col(c).is_finite()
            for c in features])).to_series()
        outcomes = [mask_outcome(CHECK_STATE_FINITE, STATE_CHECKS, frame, ~finite, "non-finite feature"),]
        yield from raise_on_blocking(context, outcomes, asset="latent_state")
        checkpoints = _checkpoints(frame_all.dates, carries, keep_from)
        write_layer(warehouse, plan, frame, context.run_id, warehouse.carry_frame("latent_state", h, checkpoints))
        last = frame.tail(1).to_dicts()[0]
        yield dg.MaterializeResult(
            metadata={
                **plan.metadata(),
                "dagster/row_count": frame.height,
                "resumed_from_carry": carry is not None,
                "warm_rows": int(frame["warm"].sum()),
                "indicators": ", ".join(names) or "none (add an indicators/ folder beside the prices)",
                "last_date": str(last["date"]),
                "last_state": dg.MetadataValue.md(
                    "| feature | value |\n|---|---:|\n" + "\n".join(f"| {k} | {last[k]:.4f} |" for k in features)),
            },
        )
        for o in outcomes:
            yield check_result(o, "latent_state")


def _load_state(warehouse: DuckDBWarehouse, start: dt.date, end: dt.date) -> StateFrame:
    rows = warehouse.query("SELECT * FROM latent_state WHERE date BETWEEN ? AND ? ORDER BY date", [start, end])
    if rows.height == 0:
        raise dg.Failure(allow_retries=False, description=f"latent_state has no rows between {start} and {end}; materialize it first.")
    cols = tuple(c for c in rows.columns if c not in ("date", "warm"))
    return StateFrame(rows["date"].to_numpy().astype("datetime64[D]"), cols,
                      rows.select(cols).to_numpy().astype(np.float64), rows["warm"].to_numpy().astype(bool))


# ------------------------------------------------------------------------------------------------
# regime_series

@dg.asset(
    deps=["latent_state"],
    group_name=GROUP,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy", "pandera"},
    code_version="regime-2",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=_specs("regime_series", REGIME_CHECKS),
    metadata={"dagster/column_schema": column_schema(RegimeSeries), "dagster/table_name": "regime_series"},
)
def regime_series(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, allocator: AllocatorSettings):
    """P(regime | data through t) over NORMAL, ELEVATED, STRESS, CRISIS and a hysteresis label.

    Method (resource ``allocator.regime_method``): ``stress_score`` (default; weighted standardised
    features with statistics known at the date, thresholds at walk-forward quantiles of the score's
    own past), ``hmm`` (4-state Gaussian HMM, forward-filtered, refit walk-forward on an expanding
    window, states ordered by volatility) or ``jump_model`` (a peer's statistical jump model on the
    benchmark's returns, refitted walk-forward, online inference only: bull -> NORMAL, bear ->
    CRISIS; refits cached in ``jump_model_fits``). ``contrib_*`` columns hold each feature's contribution to
    the stress score: why the allocator de-risked.
    """
    with warehouse.session():  # one DuckDB connection for the whole step
        warehouse.ensure_tables("allocator")
        try:
            cfg, h = allocator.regime_config(), allocator.config_hash("regime")
        except ValueError as exc:  # a setting that cannot work (e.g. score_indicators listed twice)
            raise dg.Failure(allow_retries=False, description=f"regime_series: allocator settings: {exc}") from None
        plan, first = start_layer(warehouse, "regime_series", "latent_state", h)
        if plan.start is None:
            yield from _no_op(context, warehouse, plan, REGIME_CHECKS)
            return
        start, end, from_date, carry = plan.start, plan.through, plan.compute_from, plan.carry
        hmm = cfg.method.value == "hmm"
        jump = cfg.method.value == "jump_model"
        state = _load_state(warehouse, first if ((hmm or jump) and carry is not None) else from_date, end)
        _require_complete([dt.date.fromisoformat(str(d)) for d in state.dates], from_date, end, "latent_state", "regime_series")
        unknown = sorted({t.feature for t in cfg.score.terms} - set(state.columns))
        if unknown:
            raise dg.Failure(allow_retries=False, description=(
                f"allocator.score_indicators names {unknown}, which the latent state does not have (indicators "
                f"stored: {stored_indicator_names(warehouse) or 'none'}): add the indicator file (indicators/ folder or "
                "ALLOC_INDICATORS) or drop the name from score_indicators."))
        jump_states = None
        if jump:  # the peer model's online states from the benchmark (refits cached in jump_model_fits)
            jump_states, fits, new_fits = benchmark_jump_states(warehouse, state.dates)
            if new_fits:
                warehouse.append_rows(JUMP_FITS_TABLE, new_fit_rows(fits, new_fits), "false", [])
        try:
            frame_all, checkpoints = regimes_in_pieces(state, cfg, carry, start, jump_states)
        except ValueError as exc:  # e.g. ':log' on an indicator with a value <= 0
            if "log-transformed" not in str(exc):
                raise
            raise dg.Failure(allow_retries=False, description=(
                f"regime_series: {exc}: drop ':log' from that allocator.score_indicators entry.")) from None
        frame = _window_filter(frame_all, start, end)
        frame = frame.with_columns(early_warning(frame).alias("early_warning"))
        outcomes = [pandera_outcome(CHECK_PROBABILITIES, REGIME_CHECKS, RegimeSeries, frame)]
        labels_hist = _recent_labels(warehouse, start, frame)
        transitions = int((labels_hist[1:] != labels_hist[:-1]).sum()) if len(labels_hist) > 1 else 0
        thrash = transitions > allocator.thrash_limit
        sev, desc = REGIME_CHECKS[CHECK_THRASH]
        from alloc_assets.schemas import CheckOutcome

        outcomes.append(CheckOutcome(CHECK_THRASH, not thrash, sev, f"{desc} ({transitions} in the last 252 days, "
                                     f"limit {allocator.thrash_limit})",
                                     pl.DataFrame({"transitions_252d": [transitions]}) if thrash else pl.DataFrame()))
        yield from raise_on_blocking(context, outcomes, asset="regime_series")
        write_layer(warehouse, plan, frame, context.run_id, warehouse.carry_frame("regime_series", h, checkpoints))
        warned = frame.filter(pl.col("early_warning"))
        if warned.height:
            context.log.warning(
                f"EARLY WARNING on {warned.height} day(s) of {start}..{end} (stress score > {EARLY_WARNING_SCORE} or "
                f"P(STRESS)+P(CRISIS) > {EARLY_WARNING_PROB}); latest {warned['date'][-1]}: regime {warned['regime'][-1]}, "
                f"score {warned['score'][-1]:.2f}, P(STRESS)+P(CRISIS) {warned['p_stress'][-1] + warned['p_crisis'][-1]:.2f}")
        stats = regime_statistics(frame["date"].to_numpy().astype("datetime64[D]"),
                                  np.array([REGIME_LABELS.index(r) for r in frame["regime"]]))
        last = frame.tail(1).to_dicts()[0]
        contrib = sorted(((k.removeprefix("contrib_"), v) for k, v in last.items() if k.startswith("contrib_")),
                         key=lambda kv: -abs(kv[1]))
        yield dg.MaterializeResult(
            metadata={
                **plan.metadata(),
                "dagster/row_count": frame.height,
                "method": cfg.method.value,
                "last_date": str(last["date"]),
                "last_regime": last["regime"],
            "early_warning_days": int(frame["early_warning"].sum()),
            "early_warning_last_date": bool(last["early_warning"]),
                "last_probabilities": dg.MetadataValue.json({c: round(last[c], 6) for c in PROBABILITY_COLUMNS}),
                "why_last_date": dg.MetadataValue.md(
                    f"Stress score {last['score']:.3f} on {last['date']}; contributions (weight x z-score):\n\n"
                    "| feature | contribution |\n|---|---:|\n" + "\n".join(f"| {k} | {v:+.3f} |" for k, v in contrib)),
                "time_in_regime": dg.MetadataValue.json({k: round(float(v), 4) for k, v in stats["share"].items()}),
                "transitions_per_year": float(stats["per_year"]),
            },
        )
        for o in outcomes:
            yield check_result(o, "regime_series")


EARLY_WARNING_SCORE = 0.6
EARLY_WARNING_PROB = 0.35


def early_warning(frame: pl.DataFrame) -> pl.Expr:
    """The early-warning flag: stress score above 0.6 or P(STRESS) + P(CRISIS) above 0.35."""
    return (pl.col("score") > EARLY_WARNING_SCORE) | ((pl.col("p_stress") + pl.col("p_crisis")) > EARLY_WARNING_PROB)


def _recent_labels(warehouse: DuckDBWarehouse, start: dt.date, frame: pl.DataFrame) -> np.ndarray:
    """Labels of the 252 days ending at the window's last date (stored ones before the window)."""
    before = pl.DataFrame()
    if warehouse.table_exists("regime_series"):
        before = warehouse.query("SELECT date, regime FROM regime_series WHERE date < ? ORDER BY date DESC LIMIT 252", [start])
    labels = (before["regime"].to_list()[::-1] if before.height else []) + frame["regime"].to_list()
    return np.array(labels[-252:])


def regimes_in_pieces(state: StateFrame, cfg, carry: dict | None, start: dt.date,
                      jump_states: np.ndarray | None = None) -> tuple[pl.DataFrame, dict]:
    """Regimes for the rows after the carry, computed piece by piece between month ends so that the
    carry at every month end (and at the last date) is stored: a later run can resume from any of
    them. One pass in total; the pieces give the same rows as one call (tested in the core)."""
    dates = state.dates
    begin = 0 if carry is None else int(np.searchsorted(dates, np.datetime64(carry["last_date"], "D"), side="right"))
    todo = dates[begin:]
    mask = rebalance_mask(todo, "monthly")
    mask[-1] = True
    cuts = begin + np.flatnonzero(mask)
    hmm = cfg.method.value == "hmm"
    frames, checkpoints, cur, lo = [], {}, carry, begin
    for cut in cuts:
        first_row = 0 if hmm else lo
        piece = state.slice(first_row, int(cut) + 1)
        js = None if jump_states is None else jump_states[first_row:int(cut) + 1]
        frame, cur = compute_regimes(piece, cfg, cur, js)
        frames.append(frame.to_pandas())
        day = dt.date.fromisoformat(str(dates[cut]))
        if day >= start or cut == cuts[-1]:
            checkpoints[day] = cur
        lo = int(cut) + 1
    import pandas as pd

    return _to_polars(pd.concat(frames, ignore_index=True)), checkpoints


# ------------------------------------------------------------------------------------------------
# risk_scalars

@dg.asset(
    deps=["regime_series", "latent_state"],
    group_name=GROUP,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy", "pandera"},
    code_version="risk-2",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=_specs("risk_scalars", RISK_CHECKS),
    metadata={"dagster/column_schema": column_schema(RiskScalars), "dagster/table_name": "risk_scalars"},
)
def risk_scalars(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, allocator: AllocatorSettings):
    """The daily risk scalar in [floor, 1]: the expected scalar under the regime map (NORMAL 1.00,
    ELEVATED 0.85, STRESS 0.70, CRISIS 0.55 by default), an optional volatility-target cap, the
    floor, and a maximum change per day. Computed with data through the close of its date."""
    with warehouse.session():  # one DuckDB connection for the whole step
        warehouse.ensure_tables("allocator")
        cfg, h = allocator.scalar_config(), allocator.config_hash("risk")
        plan, first = start_layer(warehouse, "risk_scalars", "regime_series", h)
        if plan.start is None:
            yield from _no_op(context, warehouse, plan, RISK_CHECKS)
            return
        start, end, from_date, carry = plan.start, plan.through, plan.compute_from, plan.carry
        reg = warehouse.query(
            "SELECT r.date, r.regime, " + ", ".join(f"r.{c}" for c in PROBABILITY_COLUMNS) + ", s.vol_21d "
            "FROM regime_series r JOIN latent_state s USING (date) WHERE r.date BETWEEN ? AND ? ORDER BY r.date",
            [from_date, end])
        _require_complete(reg["date"].to_list(), from_date, end, "regime_series", "risk_scalars")
        dates = reg["date"].to_numpy().astype("datetime64[D]")
        probs = reg.select(list(PROBABILITY_COLUMNS)).to_numpy()
        labels = np.array([REGIME_LABELS.index(r) for r in reg["regime"].to_list()], dtype=np.int64)
        series, _ = compute_risk_scalars(dates, probs, cfg, carry, reg["vol_21d"].to_numpy(), labels=labels)
        frame_all = _to_polars(series.to_pandas()).with_columns(reg["regime"].alias("regime"))
        frame = _window_filter(frame_all, start, end).select(
            "date", "regime", "risk_scalar", "expected_scalar", "vol_cap", "target_scalar", "step_limited")
        floor = cfg.effective_floor
        bounds_bad = (frame["risk_scalar"] < floor - 1e-12) | (frame["risk_scalar"] > 1.0 + 1e-12)
        prev = _previous_value(warehouse, "risk_scalars", "risk_scalar", start, carry)
        values = ([prev] if prev is not None else []) + frame["risk_scalar"].to_list()
        jumps = np.abs(np.diff(values)) if len(values) > 1 else np.array([])
        if prev is None:
            jumps = np.concatenate([[0.0], jumps])
        jump_bad = pl.Series(jumps > (cfg.max_step or np.inf) + 1e-12)
        outcomes = [
            mask_outcome(CHECK_SCALAR_BOUNDS, RISK_CHECKS, frame, bounds_bad, f"outside [{floor}, 1]"),
            mask_outcome(CHECK_SCALAR_JUMP, RISK_CHECKS, frame, jump_bad, f"daily change above {cfg.max_step}"),
        ]
        outcomes[0] = outcomes[0] if outcomes[0].passed else outcomes[0]
        yield from raise_on_blocking(context, outcomes, asset="risk_scalars")
        carries = {}
        prev_carry = carry
        # the scalar carry is tiny: one per checkpoint, recomputed from the series
        mask = rebalance_mask(dates, "monthly")
        mask[-1] = True
        for i in np.flatnonzero(mask):
            if dates[i] >= np.datetime64(start, "D") or i == len(dates) - 1:
                carries[dt.date.fromisoformat(str(dates[i]))] = {"previous": float(series.risk_scalar[i]), "last_date": str(dates[i])}
        del prev_carry
        write_layer(warehouse, plan, frame, context.run_id, warehouse.carry_frame("risk_scalars", h, carries))
        yield dg.MaterializeResult(
            metadata={
                **plan.metadata(),
                "dagster/row_count": frame.height,
                "last_date": str(frame["date"][-1]),
                "last_scalar": float(frame["risk_scalar"][-1]),
                "mean_scalar": float(frame["risk_scalar"].mean()),
                "min_scalar": float(frame["risk_scalar"].min()),
                "share_below_1": float((frame["risk_scalar"] < 1.0 - 1e-12).mean()),
            },
        )
        for o in outcomes:
            yield check_result(o, "risk_scalars")


def _previous_value(warehouse: DuckDBWarehouse, table: str, column: str, start: dt.date, carry) -> float | None:
    if not warehouse.table_exists(table):
        return None
    rows = warehouse.query(f"SELECT {column} FROM {table} WHERE date < ? ORDER BY date DESC LIMIT 1", [start])
    return float(rows[column][0]) if rows.height else None


# ------------------------------------------------------------------------------------------------
# applied_scalars

@dg.asset(
    deps=["risk_scalars"],
    group_name=GROUP,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "pandas", "pandera"},
    code_version="applied-2",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=_specs("applied_scalars", APPLIED_CHECKS),
    metadata={"dagster/column_schema": column_schema(AppliedScalars), "dagster/table_name": "applied_scalars"},
)
def applied_scalars(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, allocator: AllocatorSettings):
    """The scalar in force from each rebalance date: the risk scalar computed at the previous
    rebalance, with data through its close (one-rebalance lag). Rebalances: the last trading day of
    each month (weekly and daily selectable). Before the first computed scalar:
    ``apply_missing_scalar_as`` (1.0). Human overrides (``overrides_file``: start,end,scalar,reason)
    replace the scalar and are recorded as ``source = override`` with their reason."""
    with warehouse.session():  # one DuckDB connection for the whole step
        try:
            apply_cfg = allocator.apply_config()
        except MarketDataError as exc:
            raise dg.Failure(allow_retries=False, description=str(exc)) from None
        rs = warehouse.query("SELECT date, risk_scalar FROM risk_scalars ORDER BY date")
        if rs.height == 0:
            raise dg.Failure(allow_retries=False, description="risk_scalars is empty: materialize it first.")
        start, end = rs["date"][0], rs["date"][-1]
        _require_complete(rs["date"].to_list(), start, end, "risk_scalars", "applied_scalars")
        dates = rs["date"].to_numpy().astype("datetime64[D]")
        table = compute_applied(dates, rs["risk_scalar"].to_numpy(), apply_cfg.frequency,
                                apply_cfg.apply_missing_scalar_as, apply_cfg.overrides)
        frame = pl.from_pandas(table).with_columns(pl.col("date").cast(pl.Date), pl.col("source_date").cast(pl.Date),
                                                   pl.col("reason").cast(pl.Utf8))
        frame = _window_filter(frame, start, end)
        floor = 0.0 if not allocator.multipliers else min(allocator.floor, *allocator.multipliers)
        is_override = frame["source"] == "override"
        bounds_bad = ((frame["risk_scalar_applied"] < floor - 1e-12) & ~is_override) | (frame["risk_scalar_applied"] > 1.0 + 1e-12)
        lag = frame.join(rs.rename({"date": "source_date", "risk_scalar": "_expected"}), on="source_date", how="left")
        rebal_prev = _previous_rebalances(dates, apply_cfg.frequency)
        lag = lag.join(rebal_prev, on="date", how="left")
        computed = lag["source"] == "computed"
        lag_bad = computed & ((lag["risk_scalar_applied"] != lag["_expected"]) | (lag["source_date"] != lag["_prev_rebalance"]))
        outcomes = [
            mask_outcome(CHECK_SCALAR_BOUNDS, APPLIED_CHECKS, frame, bounds_bad, f"outside [{floor}, 1]"),
            mask_outcome(CHECK_LAG, APPLIED_CHECKS, lag.drop("_expected"), lag_bad.fill_null(True),
                         "applied scalar is not the risk scalar of the previous rebalance"),
        ]
        yield from raise_on_blocking(context, outcomes, asset="applied_scalars")
        # the whole table (a few hundred rows) is recomputed: cheap, and overrides may change any date
        changed = _first_change_applied(warehouse, frame)
        warehouse.replace_window({"applied_scalars": frame}, dt.date.min, dt.date.max,
                                 change=Change("applied_scalars", changed, end, context.run_id))
        counts = frame.group_by("source").len().to_dicts()
        yield dg.MaterializeResult(
            metadata={
                "dagster/row_count": frame.height,
                "window": f"{start} .. {end}",
                "frequency": apply_cfg.frequency.value,
                "rebalances": frame.height,
                "sources": dg.MetadataValue.json({c["source"]: c["len"] for c in counts}),
                "scaled_rebalances": int((frame["risk_scalar_applied"] < 1.0 - 1e-12).sum()),
                "last_applied": dg.MetadataValue.md(failures_markdown(frame.tail(5))) if frame.height else "_none_",
            },
        )
        for o in outcomes:
            yield check_result(o, "applied_scalars")


def _first_change_applied(warehouse: DuckDBWarehouse, frame: pl.DataFrame) -> dt.date | None:
    if not warehouse.table_exists("applied_scalars"):
        return frame["date"].min() if frame.height else None
    old = warehouse.query("SELECT date, risk_scalar_applied FROM applied_scalars")
    both = frame.select("date", "risk_scalar_applied").join(old, on="date", how="full", coalesce=True, suffix="_old")
    diff = both.filter(pl.col("risk_scalar_applied").is_null() | pl.col("risk_scalar_applied_old").is_null()
                       | (pl.col("risk_scalar_applied") != pl.col("risk_scalar_applied_old")))
    return diff["date"].min() if diff.height else None


def _previous_rebalances(dates: np.ndarray, frequency) -> pl.DataFrame:
    idx = np.flatnonzero(rebalance_mask(dates, frequency))
    reb = [dt.date.fromisoformat(str(dates[i])) for i in idx]
    return pl.DataFrame({"date": reb, "_prev_rebalance": [None, *reb[:-1]] if reb else []},
                        schema={"date": pl.Date, "_prev_rebalance": pl.Date})


ALLOCATOR_ASSETS = [latent_state, regime_series, risk_scalars, applied_scalars]
