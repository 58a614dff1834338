"""The simulated allocator equals the pipeline's on the same price path (float64, 1e-6 or better):
features, stress score, thresholds, regime probabilities, labels, risk and applied scalars, and the
daily returns of both books against ``core.backtest.run_backtest``; from a fresh history and from
the pipeline's carries; and the NumPy backend equals the JAX one."""

from __future__ import annotations

import numpy as np
import pytest

from alloc_assets.core.portfolio.backtest import run_backtest
from alloc_assets.core.market.calendar import trading_sessions
from alloc_assets.core.allocator.features import encode
from alloc_assets.core.market.panel import PricePanel, load_bundled_panel
from alloc_assets.core.allocator.regimes import compute_regimes
from alloc_assets.core.allocator.scalars import ScalarBasis, ScalarConfig, applied_scalars, risk_scalars
from alloc_assets.sim.engine import allocator as alloc
from alloc_assets.sim.engine import allocator_state as alloc_state
from alloc_assets.sim.engine.backend import NUMPY
from alloc_assets.sim.models.calendar import calendar_from_dates
from alloc_assets.sim.engine.kernel import SimSettings, run_strategies
from alloc_assets.sim.models.world_calibration import calibrate_world_model
from alloc_assets.sim.engine.books import StrategyConfig

TOL = 1e-6
F64 = SimSettings(block_size=3, dtype="float64")
COST_BPS = 5.0


@pytest.fixture(scope="module")
def history() -> PricePanel:
    p = load_bundled_panel()
    return PricePanel(p.dates, p.symbols, p.close)  # no benchmark: the equal-weight index, as on simulated paths


@pytest.fixture(scope="module")
def world(history):
    state, _ = encode(history)
    regimes, _ = compute_regimes(state)
    # start in STRESS so that the short paths visit the upper regimes
    return calibrate_world_model(np.diff(np.log(history.close), axis=0), regimes.label[1:], p0=[0.0, 0.0, 1.0, 0.0])


def _sessions_from(day: str, n: int) -> np.ndarray:
    sessions = trading_sessions()
    i = sessions.searchsorted(np.datetime64(day))
    return sessions[i : i + n].to_numpy().astype("datetime64[D]")


def _pipeline(panel: PricePanel, config: alloc_state.AllocatorConfig):
    state, _ = encode(panel, None, config.features)
    regimes, _ = compute_regimes(state, config.regimes)
    scalars, _ = risk_scalars(regimes.dates, regimes.probs, config.scalars, None, state.column("vol_21d"), regimes.label)
    applied = applied_scalars(regimes.dates, scalars.risk_scalar, "monthly", config.apply_missing_scalar_as)
    return state, regimes, scalars, applied


def _compare(rec, k, rows, state, regimes, scalars, applied, reb_sim, reb_rows, panel):
    """Sim record columns (path k) against pipeline rows ``rows``."""
    assert np.abs(rec["features"][:, :, k] - state.values[rows]).max() < TOL
    assert np.abs(rec["score"][:, k] - regimes.score[rows]).max() < TOL
    assert np.abs(rec["thresholds"][:, :, k] - regimes.thresholds[rows]).max() < TOL
    assert np.abs(rec["probs"][:, :, k] - regimes.probs[rows]).max() < TOL
    np.testing.assert_array_equal(rec["label"][:, k], regimes.label[rows])
    assert np.abs(rec["scalar"][:, k] - scalars.risk_scalar[rows]).max() < TOL
    # the scalar applied at each rebalance of the simulated days
    by_date = dict(zip(applied["date"].to_numpy().astype("datetime64[D]"), applied["risk_scalar_applied"].to_numpy()))
    sim_applied = rec["applied"][reb_sim, k]
    pipe_applied = np.array([by_date[d] for d in panel.dates[reb_rows]])
    assert np.abs(sim_applied - pipe_applied).max() < TOL


@pytest.fixture(scope="module")
def fresh_run(world):
    horizon = 760  # long enough for the histogram thresholds to replace the priors (504 warm scores)
    dates = _sessions_from("2015-01-30", horizon + 1)  # day 0 is a month end: a rebalance for both
    cal = calendar_from_dates(dates)
    close0 = np.linspace(10.0, 50.0, world.n_assets)
    config = alloc_state.AllocatorConfig()
    run = run_strategies(world, 3, cal, 7, start=alloc_state.fresh_state(close0, config), allocator=config,
                         strategy=StrategyConfig(cost_bps=COST_BPS), settings=F64, record=True)
    return horizon, dates, cal, close0, config, run


def test_simulated_allocator_equals_pipeline_from_a_fresh_history(world, fresh_run):
    horizon, dates, cal, close0, config, run = fresh_run
    rec = run.record
    reb = np.flatnonzero(cal.rebalance)
    regimes_seen = set()
    for k in range(3):
        lr = rec["log_returns"][:, :, k]
        close = close0 * np.exp(np.vstack([np.zeros(world.n_assets), np.cumsum(lr, axis=0)]))
        panel = PricePanel(dates, tuple(f"S{i}" for i in range(world.n_assets)), close)
        state, regimes, scalars, applied = _pipeline(panel, config)
        rows = np.arange(horizon + 1)
        _compare(rec, k, rows, state, regimes, scalars, applied, reb, reb, panel)
        regimes_seen |= set(regimes.label.tolist())
        assert len(np.unique(regimes.thresholds[:, 0])) > 1  # the histogram thresholds were exercised
        # both books against the pipeline's backtest engine (returns of days 1..H)
        target = np.full((reb.size, world.n_assets), 1.0 / world.n_assets)
        base = run_backtest(panel.returns(), reb, target, None, COST_BPS)
        scaled = run_backtest(panel.returns(), reb, target, applied["risk_scalar_applied"].to_numpy(), COST_BPS)
        assert np.abs(rec["returns"][:, 0, k] - base.portfolio_return[1:]).max() < 1e-12
        assert np.abs(rec["returns"][:, 1, k] - scaled.portfolio_return[1:]).max() < 1e-12
    assert len(regimes_seen) >= 3


def test_simulated_allocator_equals_pipeline_continuing_from_the_carries(history, world):
    # the expected-probability basis with a volatility cap, to cover the other scalar branches
    config = alloc_state.AllocatorConfig(scalars=ScalarConfig(basis=ScalarBasis.EXPECTED, vol_target=0.20))
    cut = int(np.searchsorted(history.dates, np.datetime64("2022-11-30"))) + 1
    past = history.slice(0, cut)  # ends on a month end: day 0 is a rebalance for both
    start = alloc_state.start_from_panel(past, config)
    assert not start.fresh and start.row0 == cut - 1
    horizon = 120
    dates = _sessions_from(str(past.dates[-1]), horizon + 1)
    assert dates[0] == past.dates[-1]
    cal = calendar_from_dates(dates)
    run = run_strategies(world, 3, cal, 3, start=start, allocator=config, settings=F64, record=True)
    rec = run.record
    reb = np.flatnonzero(cal.rebalance)[1:]  # rebalances among the simulated days 1..H
    for k in range(3):
        lr = rec["log_returns"][:, :, k]
        new = past.close[-1] * np.exp(np.cumsum(lr, axis=0))
        panel = PricePanel(np.concatenate([past.dates, dates[1:]]), past.symbols, np.vstack([past.close, new]))
        state, regimes, scalars, applied = _pipeline(panel, config)
        rows = np.arange(cut, cut + horizon)
        # the record of a continued history holds days 1..H (day 0 was computed by the pipeline)
        _compare(rec, k, rows, state, regimes, scalars, applied, reb - 1, cut - 1 + reb, panel)


def test_numpy_backend_runs_the_same_allocator(world, fresh_run):
    """The NumPy kernel of the benchmark executes the same code: same outputs on the same returns."""
    horizon, _, cal, close0, config, run = fresh_run
    start = alloc_state.fresh_state(close0, config)
    rec = run.record
    cuts = np.concatenate([[0], np.flatnonzero(cal.refresh), [horizon + 1]])
    st = alloc_state.broadcast_state(alloc_state.with_score_buffer(start.state, int(np.diff(cuts).max())), 3, np.float64, xp=np)
    st, out = alloc.allocator_day(st, None, False, False, True, config, NUMPY, advance=False)
    outs = [out]
    for t in range(1, horizon + 1):
        st, out = alloc.allocator_day(st, rec["log_returns"][t - 1], t >= config.features.warm_days, bool(cal.refresh[t]),
                                      bool(cal.rebalance[t]), config, NUMPY)
        outs.append(out)
    for name in ("features", "score", "probs", "label", "scalar"):
        np.testing.assert_allclose(np.stack([o[name] for o in outs]), rec[name], rtol=0, atol=1e-12)


def test_allocator_config_rejects_what_is_not_ported():
    from alloc_assets.core.allocator.regime_config import RegimeConfig, RegimeMethod

    with pytest.raises(ValueError, match="stress-score"):
        alloc_state.AllocatorConfig(regimes=RegimeConfig(method=RegimeMethod.HMM))
    with pytest.raises(ValueError, match="benchmark"):
        alloc_state.state_from_carries({"index_source": "benchmark"}, {"method": "stress_score"})


def test_changing_costs_and_targets_reuses_the_compiled_kernel(history, world, fresh_run):
    """The cost and every number of the scalar map (multipliers, floor, volatility
    target, step limit, missing-scalar value) are traced: a run with other values compiles nothing
    (XLA compilations counted through ``jax.monitoring``), and the values are really used: the
    outputs equal the pipeline's (``core.scalars``, ``core.backtest``) under the new settings."""
    import jax

    from alloc_assets.sim.engine.allocator_state import AllocatorConfig

    horizon, dates, cal, close0, _, default_run = fresh_run  # the default settings, compiled by the fixture
    compiles: list[str] = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiles.append(str(kwargs.get("fun_name", "?")))

    config = AllocatorConfig(scalars=ScalarConfig(multipliers=(1.0, 0.8, 0.6, 0.4), floor=0.3, vol_target=0.12, max_step=0.1),
                             apply_missing_scalar_as=0.9)
    cost = 17.0
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        run = run_strategies(world, 3, cal, 7, start=alloc_state.fresh_state(close0, config), allocator=config,
                             strategy=StrategyConfig(cost_bps=cost), settings=F64, record=True)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert compiles == [], f"recompiled: {compiles}"

    # the new values are the ones used: the pipeline with the same settings on every path's prices
    rec = run.record
    reb = np.flatnonzero(cal.rebalance)
    target = np.full((reb.size, world.n_assets), 1.0 / world.n_assets)
    for k in range(3):
        close = close0 * np.exp(np.vstack([np.zeros(world.n_assets), np.cumsum(rec["log_returns"][:, :, k], axis=0)]))
        panel = PricePanel(dates, tuple(f"S{i}" for i in range(world.n_assets)), close)
        state, regimes, scalars, applied = _pipeline(panel, config)
        _compare(rec, k, np.arange(horizon + 1), state, regimes, scalars, applied, reb, reb, panel)
        base = run_backtest(panel.returns(), reb, target, None, cost)
        scaled = run_backtest(panel.returns(), reb, target, applied["risk_scalar_applied"].to_numpy(), cost)
        assert np.abs(rec["returns"][:, 0, k] - base.portfolio_return[1:]).max() < 1e-12
        assert np.abs(rec["returns"][:, 1, k] - scaled.portfolio_return[1:]).max() < 1e-12
    # not a vacuous change: the same paths under the default settings give other scalars
    assert np.abs(rec["scalar"] - default_run.record["scalar"]).max() > 0.05
