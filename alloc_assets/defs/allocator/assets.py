"""The allocator layers: latent_state -> regime_series -> risk_scalars -> applied_scalars.

Each is one unpartitioned, incremental asset: ``alloc_assets.store.layers`` plans which days to
recompute (from the upstream's change log and the stored carries) and writes them in one
transaction; one new day costs one day of work and gives exactly what a full recompute gives, a run
with nothing new is a no-op. ``applied_scalars`` is small and recomputed whole.
"""

import datetime as dt

import dagster as dg
import numpy as np
import polars as pl

from alloc_assets.core.allocator.features import encode
from alloc_assets.core.allocator.feature_config import feature_specs, feature_table_markdown
from alloc_assets.core.allocator.layer_checks import (
    EARLY_WARNING_PROB,
    EARLY_WARNING_SCORE,
    early_warning,
    label_transitions,
    previous_rebalances,
    scalar_jumps,
)
from alloc_assets.core.allocator.regimes import regime_statistics, regimes_in_pieces
from alloc_assets.core.allocator.scalars import applied_scalars as compute_applied
from alloc_assets.core.allocator.scalars import risk_scalars as compute_risk_scalars
from alloc_assets.core.allocator.scalars import scalar_checkpoints
from alloc_assets.core.common.markdown import md_table
from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.regime import PROBABILITY_COLUMNS, REGIME_LABELS
from alloc_assets.defs.common import (
    SINGLE_RUN,
    WAREHOUSE_POOL,
    WAREHOUSE_RETRY,
    asset_check_specs,
    check_result,
    column_schema,
    failing_without_retry,
    raise_on_blocking,
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
    RISK_CHECKS,
    STATE_CHECKS,
    AppliedScalars,
    CheckOutcome,
    LatentState,
    RegimeSeries,
    RiskScalars,
    failures_markdown,
    mask_outcome,
    pandera_outcome,
)
from alloc_assets.store.jump_fits import JUMP_FITS_TABLE, benchmark_jump_states, new_fit_rows
from alloc_assets.store.changes import first_change
from alloc_assets.store.layers import (
    LayerPlan,
    month_end_carries,
    previous_value,
    require_complete,
    skip_layer,
    start_layer,
    to_polars,
    window_filter,
    write_layer,
)
from alloc_assets.store.readers import load_indicators, load_panel, load_state, recent_regime_labels, stored_indicator_names
from resources.allocator import AllocatorSettings
from resources.warehouse import Change, DuckDBWarehouse

GROUP = "allocator"


def _no_op(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, plan: LayerPlan, specs: dict):
    """Nothing new upstream: move the watermark, materialize with the reason, checks pass (skipped)."""
    skip_layer(warehouse, plan)
    context.log.info(f"{plan.asset}: {plan.reason}")
    yield dg.MaterializeResult(metadata={**plan.metadata(), "dagster/row_count": 0})
    for name in specs:
        yield dg.AssetCheckResult(asset_key=plan.asset, check_name=name, passed=True,
                                  description=f"nothing recomputed: {plan.reason}")


# ------------------------------------------------------------------------------------------------
# latent_state

@dg.asset(
    deps=["market_prices"],
    group_name=GROUP,
    backfill_policy=SINGLE_RUN,
    kinds={"duckdb", "numpy", "pandera"},
    code_version="state-2",
    pool=WAREHOUSE_POOL,
    retry_policy=WAREHOUSE_RETRY,
    check_specs=asset_check_specs("latent_state", STATE_CHECKS),
    metadata={"dagster/column_schema": column_schema(LatentState), "dagster/table_name": "latent_state",
              "features": dg.MetadataValue.md(feature_table_markdown())},
)
def latent_state(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, allocator: AllocatorSettings):
    """Causal market features per trading day, z_t = Encoder(o_t, z_{t-1}).

    Realised volatility at several horizons, volatility shock, benchmark drawdown, average pairwise
    correlation and its shock, trend and breadth (see the ``features`` table in this asset's
    metadata for formulas, windows and units). A value dated t uses closes through t only. Rows are
    defined from the first day; ``warm`` is false while the features lean on their priors.
    """
    with warehouse.session(), failing_without_retry():  # one DuckDB connection for the whole step
        warehouse.ensure_tables("allocator")
        names = stored_indicator_names(warehouse)
        cfg, h = allocator.feature_config(), allocator.config_hash("state", indicators=names)
        plan, first = start_layer(warehouse, "latent_state", "market_prices", h)
        if plan.start is None:
            yield from _no_op(context, warehouse, plan, STATE_CHECKS)
            return
        start, end, from_date, carry = plan.start, plan.through, plan.compute_from, plan.carry
        panel = load_panel(warehouse, from_date, end)
        require_complete([dt.date.fromisoformat(str(d)) for d in panel.dates], max(from_date, first), end,
                          "market_prices", "latent_state")
        clash = sorted(set(names) & {s.name for s in feature_specs()} | set(names) & {"date", "warm"})
        if clash:
            raise dg.Failure(allow_retries=False, description=(
                f"indicator name(s) {clash} clash with latent-state features: rename the indicator file or column."))
        extra = load_indicators(warehouse, panel.dates, names)
        frame_all, _, carries = encode(panel, carry, cfg, extra=extra, return_carries=True)
        keep_from = int(np.searchsorted(frame_all.dates, np.datetime64(start, "D")))
        frame = to_polars(frame_all.slice(keep_from, len(frame_all)).to_pandas(), keep_nan=True)
        features = [c for c in frame.columns if c not in ("date", "warm")]
        # an indicator is NaN before its first value (it then carries forward): allowed, inf never
        finite = frame.select(pl.all_horizontal([
            (pl.col(c).is_finite() | pl.col(c).is_nan()) if c in names else pl.col(c).is_finite()
            for c in features])).to_series()
        outcomes = [mask_outcome(CHECK_STATE_FINITE, STATE_CHECKS, frame, ~finite, "non-finite feature"),]
        yield from raise_on_blocking(context, outcomes, asset="latent_state")
        checkpoints = month_end_carries(frame_all.dates, carries, keep_from)
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
                "last_state": dg.MetadataValue.md(md_table(("feature", "value"), [(k, f"{last[k]:.4f}") for k in features])),
            },
        )
        for o in outcomes:
            yield check_result(o, "latent_state")


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
    check_specs=asset_check_specs("regime_series", REGIME_CHECKS),
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
    with warehouse.session(), failing_without_retry():  # one DuckDB connection for the whole step
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
        state = load_state(warehouse, first if ((hmm or jump) and carry is not None) else from_date, end)
        require_complete([dt.date.fromisoformat(str(d)) for d in state.dates], from_date, end, "latent_state", "regime_series")
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
            pieces, checkpoints = regimes_in_pieces(state, cfg, carry, start, jump_states)
        except ValueError as exc:  # e.g. ':log' on an indicator with a value <= 0
            if "log-transformed" not in str(exc):
                raise
            raise dg.Failure(allow_retries=False, description=(
                f"regime_series: {exc}: drop ':log' from that allocator.score_indicators entry.")) from None
        frame = window_filter(to_polars(pieces), start, end)
        frame = frame.with_columns(early_warning().alias("early_warning"))
        outcomes = [pandera_outcome(CHECK_PROBABILITIES, REGIME_CHECKS, RegimeSeries, frame)]
        transitions = label_transitions(recent_regime_labels(warehouse, start, frame))
        thrash = transitions > allocator.thrash_limit
        sev, desc = REGIME_CHECKS[CHECK_THRASH]
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
                    + md_table(("feature", "contribution"), [(k, f"{v:+.3f}") for k, v in contrib])),
                "time_in_regime": dg.MetadataValue.json({k: round(float(v), 4) for k, v in stats["share"].items()}),
                "transitions_per_year": float(stats["per_year"]),
            },
        )
        for o in outcomes:
            yield check_result(o, "regime_series")


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
    check_specs=asset_check_specs("risk_scalars", RISK_CHECKS),
    metadata={"dagster/column_schema": column_schema(RiskScalars), "dagster/table_name": "risk_scalars"},
)
def risk_scalars(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, allocator: AllocatorSettings):
    """The daily risk scalar in [floor, 1]: the expected scalar under the regime map (NORMAL 1.00,
    ELEVATED 0.85, STRESS 0.70, CRISIS 0.55 by default), an optional volatility-target cap, the
    floor, and a maximum change per day. Computed with data through the close of its date."""
    with warehouse.session(), failing_without_retry():  # one DuckDB connection for the whole step
        warehouse.ensure_tables("allocator")
        cfg, h = allocator.scalar_config(), allocator.config_hash("risk")
        plan, _ = start_layer(warehouse, "risk_scalars", "regime_series", h)
        if plan.start is None:
            yield from _no_op(context, warehouse, plan, RISK_CHECKS)
            return
        start, end, from_date, carry = plan.start, plan.through, plan.compute_from, plan.carry
        reg = warehouse.query(
            "SELECT r.date, r.regime, " + ", ".join(f"r.{c}" for c in PROBABILITY_COLUMNS) + ", s.vol_21d "
            "FROM regime_series r JOIN latent_state s USING (date) WHERE r.date BETWEEN ? AND ? ORDER BY r.date",
            [from_date, end])
        require_complete(reg["date"].to_list(), from_date, end, "regime_series", "risk_scalars")
        dates = reg["date"].to_numpy().astype("datetime64[D]")
        probs = reg.select(list(PROBABILITY_COLUMNS)).to_numpy()
        labels = np.array([REGIME_LABELS.index(r) for r in reg["regime"].to_list()], dtype=np.int64)
        series, _ = compute_risk_scalars(dates, probs, cfg, carry, reg["vol_21d"].to_numpy(), labels=labels)
        frame_all = to_polars(series.to_pandas()).with_columns(reg["regime"].alias("regime"))
        frame = window_filter(frame_all, start, end).select(
            "date", "regime", "risk_scalar", "expected_scalar", "vol_cap", "target_scalar", "step_limited")
        floor = cfg.effective_floor
        bounds_bad = (frame["risk_scalar"] < floor - 1e-12) | (frame["risk_scalar"] > 1.0 + 1e-12)
        prev = previous_value(warehouse, "risk_scalars", "risk_scalar", start)
        jumps = scalar_jumps(prev, frame["risk_scalar"].to_list())
        jump_bad = pl.Series(jumps > (cfg.max_step or np.inf) + 1e-12)
        outcomes = [
            mask_outcome(CHECK_SCALAR_BOUNDS, RISK_CHECKS, frame, bounds_bad, f"outside [{floor}, 1]"),
            mask_outcome(CHECK_SCALAR_JUMP, RISK_CHECKS, frame, jump_bad, f"daily change above {cfg.max_step}"),
        ]
        yield from raise_on_blocking(context, outcomes, asset="risk_scalars")
        carries = scalar_checkpoints(dates, series.risk_scalar, start)
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
    check_specs=asset_check_specs("applied_scalars", APPLIED_CHECKS),
    metadata={"dagster/column_schema": column_schema(AppliedScalars), "dagster/table_name": "applied_scalars"},
)
def applied_scalars(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, allocator: AllocatorSettings):
    """The scalar in force from each rebalance date: the risk scalar computed at the previous
    rebalance, with data through its close (one-rebalance lag). Rebalances: the last trading day of
    each month (weekly and daily selectable). Before the first computed scalar:
    ``apply_missing_scalar_as`` (1.0). Human overrides (``overrides_file``: start,end,scalar,reason)
    replace the scalar and are recorded as ``source = override`` with their reason."""
    with warehouse.session(), failing_without_retry():  # one DuckDB connection for the whole step
        try:
            apply_cfg = allocator.apply_config()
        except MarketDataError as exc:
            raise dg.Failure(allow_retries=False, description=str(exc)) from None
        rs = warehouse.query("SELECT date, risk_scalar FROM risk_scalars ORDER BY date")
        if rs.height == 0:
            raise dg.Failure(allow_retries=False, description="risk_scalars is empty: materialize it first.")
        start, end = rs["date"][0], rs["date"][-1]
        require_complete(rs["date"].to_list(), start, end, "risk_scalars", "applied_scalars")
        dates = rs["date"].to_numpy().astype("datetime64[D]")
        table = compute_applied(dates, rs["risk_scalar"].to_numpy(), apply_cfg.frequency,
                                apply_cfg.apply_missing_scalar_as, apply_cfg.overrides)
        frame = pl.from_pandas(table).with_columns(pl.col("date").cast(pl.Date), pl.col("source_date").cast(pl.Date),
                                                   pl.col("reason").cast(pl.Utf8))
        frame = window_filter(frame, start, end)
        floor = 0.0 if not allocator.multipliers else min(allocator.floor, *allocator.multipliers)
        is_override = frame["source"] == "override"
        bounds_bad = ((frame["risk_scalar_applied"] < floor - 1e-12) & ~is_override) | (frame["risk_scalar_applied"] > 1.0 + 1e-12)
        lag = frame.join(rs.rename({"date": "source_date", "risk_scalar": "_expected"}), on="source_date", how="left")
        rebal_prev = previous_rebalances(dates, apply_cfg.frequency)
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
        changed = first_change(warehouse, "applied_scalars", frame, ["date"], "risk_scalar_applied")
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


ALLOCATOR_ASSETS = [latent_state, regime_series, risk_scalars, applied_scalars]
