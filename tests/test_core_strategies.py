"""Strategy weights: risk parity exactness, limits, transitions, causality, batched sleeves."""

from __future__ import annotations

import numpy as np
import pytest

from alloc_assets.core import strategies as st
from alloc_assets.core.calendar import RebalanceFrequency, rebalance_indices
from alloc_assets.core.panel import load_bundled_panel


@pytest.fixture(scope="module")
def panel():
    return load_bundled_panel()


@pytest.fixture(scope="module")
def bundled(panel):
    returns = panel.returns()
    idx = rebalance_indices(panel.dates, RebalanceFrequency.MONTHLY)
    sid = st.sector_ids(panel.symbols, panel.sectors)
    return returns, idx, sid


def _random_cov(rng, n, k=None):
    a = rng.normal(size=(n, k or 3 * n)) * rng.uniform(0.005, 0.03, size=(n, 1))
    return a @ a.T / a.shape[1]


def _limits_hold(w, sid, limits, cov=None, tol=1e-12):
    onehot = st._sector_onehot(sid)
    assert np.all(w >= -tol)
    assert np.all(w.sum(axis=-1) <= 1 + tol)
    if limits.max_weight is not None:
        assert w.max() <= limits.max_weight + tol
    if limits.max_sector_weight is not None:
        assert (w @ onehot).max() <= limits.max_sector_weight + tol
    if limits.max_total_risk is not None and cov is not None:
        assert st.ex_ante_volatility(w, cov).max() <= limits.max_total_risk + 1e-10


# ---------------------------------------------------------------- risk parity


def test_risk_parity_equalises_risk_contributions_batched():
    rng = np.random.default_rng(0)
    covs = np.stack([_random_cov(rng, 12) for _ in range(50)])
    w = st.risk_parity_weights(covs)
    rc = st.risk_contributions(w, covs)
    np.testing.assert_allclose(rc, 1 / 12, atol=1e-8, rtol=0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert np.all(w > 0)


def test_risk_parity_closed_forms():
    # uncorrelated assets: weights proportional to 1 / vol
    vols = np.array([0.01, 0.02, 0.04, 0.015])
    w = st.risk_parity_weights(np.diag(vols**2))
    np.testing.assert_allclose(w, (1 / vols) / (1 / vols).sum(), rtol=1e-12)
    # two assets, any correlation: 1 / vol as well
    cov = np.array([[0.02**2, 0.6 * 0.02 * 0.05], [0.6 * 0.02 * 0.05, 0.05**2]])
    np.testing.assert_allclose(st.risk_parity_weights(cov), [5 / 7, 2 / 7], rtol=1e-12)


def test_risk_parity_budgets():
    rng = np.random.default_rng(1)
    cov = _random_cov(rng, 6)
    budgets = np.array([1, 2, 3, 1, 1, 2], dtype=float)
    w = st.risk_parity_weights(cov, budgets=budgets)
    np.testing.assert_allclose(st.risk_contributions(w, cov), budgets / budgets.sum(), atol=1e-10)


def test_risk_parity_masked_equals_sub_universe():
    rng = np.random.default_rng(2)
    cov = _random_cov(rng, 10)
    mask = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 1], dtype=bool)
    w = st.risk_parity_weights(cov, mask=mask)
    sub = st.risk_parity_weights(cov[np.ix_(mask, mask)])
    assert np.all(w[~mask] == 0)
    np.testing.assert_allclose(w[mask], sub, rtol=1e-10)


def test_risk_parity_on_every_bundled_rebalance(bundled):
    returns, idx, _ = bundled
    cov, n_obs = st.trailing_covariances(returns, idx[idx >= 126], 126)
    assert np.all(n_obs == 126)
    w = st.risk_parity_weights(cov)
    np.testing.assert_allclose(st.risk_contributions(w, cov), 1 / 20, atol=1e-8, rtol=0)


def test_trailing_covariance_is_causal_and_matches_numpy(bundled):
    returns, idx, _ = bundled
    k = 50
    cov, n_obs = st.trailing_covariances(returns, idx[k : k + 1], 63)
    window = returns[idx[k] - 62 : idx[k] + 1]
    np.testing.assert_allclose(cov[0], np.cov(window, rowvar=False, ddof=1), rtol=1e-12)
    # the first window skips the NaN row 0 and is shorter
    cov0, n0 = st.trailing_covariances(returns, idx[:1], 63)
    assert n0[0] == idx[0] and np.all(np.isfinite(cov0))


# ---------------------------------------------------------------- limits


def test_single_name_cap_redistributes_pro_rata():
    limits = st.RiskLimits(max_weight=0.4, max_sector_weight=None, max_total_risk=None)
    w = st.apply_risk_limits(np.array([0.5, 0.3, 0.2]), np.arange(3), limits)
    np.testing.assert_allclose(w, [0.4, 0.36, 0.24])


def test_cascading_caps_and_infeasible_goes_to_cash():
    limits = st.RiskLimits(max_weight=0.35, max_sector_weight=None, max_total_risk=None)
    w = st.apply_risk_limits(np.array([0.5, 0.3, 0.2]), np.arange(3), limits)
    # 0.5 -> 0.35; 0.15 to the others pro rata -> 0.39, 0.26; 0.39 -> 0.35; 0.04 to the last -> 0.30
    np.testing.assert_allclose(w, [0.35, 0.35, 0.30])
    tight = st.RiskLimits(max_weight=0.2, max_sector_weight=None, max_total_risk=None)
    w = st.apply_risk_limits(np.array([0.5, 0.3, 0.2]), np.arange(3), tight)
    np.testing.assert_allclose(w, [0.2, 0.2, 0.2])  # 0.4 cannot be placed: cash


def test_sector_cap_scales_sector_and_feeds_others():
    limits = st.RiskLimits(max_weight=None, max_sector_weight=0.3, max_total_risk=None)
    sid = np.array([0, 0, 1, 1, 2])
    w = st.apply_risk_limits(np.array([0.3, 0.2, 0.1, 0.1, 0.3]), sid, limits)
    # sector 0 scaled 0.5 -> 0.3; its 0.2 goes to sector 1 (sector 2 is full), which then overflows
    # to 0.4 and is scaled back to 0.3; the last 0.1 has nowhere to go: cash
    np.testing.assert_allclose(w, [0.18, 0.12, 0.15, 0.15, 0.3])
    sid = np.array([0, 0, 1, 2])
    w = st.apply_risk_limits(np.array([0.3, 0.2, 0.25, 0.25]), sid, limits)
    np.testing.assert_allclose(w, [0.18, 0.12, 0.3, 0.3])  # single-name sectors hit the cap too
    # names at zero never receive weight
    w = st.apply_risk_limits(np.array([0.3, 0.2, 0.5, 0.0]), sid, st.RiskLimits(max_weight=0.4, max_sector_weight=0.3, max_total_risk=None))
    assert w[3] == 0.0 and w.sum() == pytest.approx(0.6)  # 0.3 + 0.3, the rest in cash


def test_total_risk_cap_scales_to_cash():
    cov = np.diag([0.02, 0.03]) ** 2
    limits = st.RiskLimits(max_weight=None, max_sector_weight=None, max_total_risk=0.1)
    w = st.apply_risk_limits(np.array([0.5, 0.5]), np.arange(2), limits, cov)
    assert st.ex_ante_volatility(w, cov) == pytest.approx(0.1)
    np.testing.assert_allclose(w[0], w[1])


def test_limits_hold_on_random_books():
    rng = np.random.default_rng(3)
    sid = rng.integers(0, 5, size=15)
    raw = rng.dirichlet(np.full(15, 0.3), size=2000)
    covs = np.stack([_random_cov(rng, 15) for _ in range(2000)])
    limits = st.RiskLimits(max_weight=0.2, max_sector_weight=0.3, max_total_risk=0.12)
    w = st.apply_risk_limits(raw, sid, limits, covs)
    _limits_hold(w, sid, limits, covs)
    # where the limits leave room, nothing is lost to cash
    loose = st.RiskLimits(max_weight=0.2, max_sector_weight=0.3, max_total_risk=None)
    w2 = st.apply_risk_limits(np.full((1, 15), 1 / 15), sid, loose)
    assert w2.sum() == pytest.approx(min(1.0, 0.3 * len(set(sid))))


# ---------------------------------------------------------------- transitions


def test_max_change_moves_uniformly_towards_target():
    prev = np.array([0.5, 0.5, 0.0])
    new = np.array([0.2, 0.4, 0.4])
    tr = st.Transition(max_change=0.1, min_change=0.0)
    out = st.smooth_transition(prev, new, tr, np.arange(3), st.RiskLimits(None, None, None))
    np.testing.assert_allclose(out, prev + 0.25 * (new - prev))
    assert np.abs(out - prev).max() == pytest.approx(0.1)


def test_min_change_threshold_is_relative_and_entries_exits_trade():
    prev = np.array([0.30, 0.30, 0.40, 0.00])
    new = np.array([0.31, 0.20, 0.39, 0.10])  # +3.3 %, -33 %, -2.5 %, entry
    tr = st.Transition(min_change=0.05)
    out = st.smooth_transition(prev, new, tr, np.arange(4), st.RiskLimits(None, None, None))
    np.testing.assert_allclose(out, [0.30, 0.20, 0.40, 0.10])
    exit_ = st.smooth_transition(prev, np.array([0.31, 0.3, 0.39, 0.0]), tr, np.arange(4), st.RiskLimits(None, None, None))
    assert exit_[3] == 0.0
    # held names that add up above 1 take the excess from the names that trade
    over = st.smooth_transition(np.array([0.5, 0.5, 0.0]), np.array([0.48, 0.48, 0.04]), tr, np.arange(3), st.RiskLimits(None, None, None))
    np.testing.assert_allclose(over, [0.5, 0.5, 0.0])


def test_spread_path_linear_and_interrupted():
    idx = np.array([2, 10, 12])
    targets = np.array([[0.6, 0.0], [0.0, 0.6], [0.3, 0.3]])
    days, path, src = st.spread_path(idx, targets, 3, 14)
    np.testing.assert_array_equal(days, [2, 3, 4, 10, 11, 12, 13])
    np.testing.assert_array_equal(src, [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(path[:3, 0], [0.2, 0.4, 0.6])
    np.testing.assert_allclose(path[3:5], [[0.4, 0.2], [0.2, 0.4]])  # interrupted after two thirds
    np.testing.assert_allclose(path[5], [0.2 + (0.3 - 0.2) / 3, 0.4 + (0.3 - 0.4) / 3])


# ---------------------------------------------------------------- profiles on the bundled data


def test_default_profile_is_monthly_risk_parity():
    assert st.DEFAULT_PROFILE.kind is st.StrategyKind.RISK_PARITY
    assert st.DEFAULT_PROFILE.frequency is RebalanceFrequency.MONTHLY
    assert st.get_profile("momentum").kind is st.StrategyKind.MOMENTUM
    with pytest.raises(ValueError, match="known:"):
        st.get_profile("nope")


@pytest.mark.parametrize("kind", list(st.StrategyKind))
def test_every_profile_within_limits_on_bundled_data(panel, bundled, kind):
    returns, idx, sid = bundled
    limits = st.RiskLimits(max_weight=0.2, max_sector_weight=0.3, max_total_risk=0.35)
    profile = st.StrategyProfile(name=kind.value, kind=kind, limits=limits)
    out = st.weights_raw(returns, idx, profile, sid)
    assert out.target.shape == (idx.size, 20)
    risk_cov, _ = st.trailing_covariances(returns, idx, profile.lookback)
    late = idx >= profile.lookback
    _limits_hold(out.target[late], sid, limits, risk_cov[late])
    _limits_hold(out.target, sid, st.RiskLimits(0.2, 0.3, None))
    assert np.all(out.target.sum(axis=1) > 0.2)
    np.testing.assert_array_equal(out.trade_idx, idx)


@pytest.mark.parametrize("kind", [st.StrategyKind.RISK_PARITY, st.StrategyKind.MOMENTUM, st.StrategyKind.VOL_TARGET, st.StrategyKind.PERFORMANCE_WEIGHTED])
def test_weights_are_causal(bundled, kind):
    returns, idx, sid = bundled
    cut = 200  # rebalance row index
    profile = st.StrategyProfile(name=kind.value, kind=kind)
    full = st.weights_raw(returns, idx, profile, sid).target
    future = returns.copy()
    tail = future[idx[cut] + 1 :]
    future[idx[cut] + 1 :] = np.random.default_rng(0).permutation(tail) * 1.5
    changed = st.weights_raw(future, idx, profile, sid).target
    # identical up to the rounding of batched linear algebra (batch contents differ)
    np.testing.assert_allclose(full[: cut + 1], changed[: cut + 1], atol=1e-14, rtol=0)
    assert not np.allclose(full[cut + 2 :], changed[cut + 2 :])


def test_risk_parity_profile_has_equal_risk_where_limits_do_not_bind(bundled):
    returns, idx, sid = bundled
    profile = st.StrategyProfile(limits=st.RiskLimits(None, None, None), transition=st.Transition(min_change=0.0))
    out = st.weights_raw(returns, idx, profile, sid)
    cov, _ = st.trailing_covariances(returns, idx, 126)
    late = idx >= 126
    np.testing.assert_allclose(st.risk_contributions(out.target[late], cov[late]), 1 / 20, atol=1e-8)


@pytest.mark.parametrize("kind", list(st.StrategyKind))
def test_stale_name_gets_no_covariance_based_weight(panel, kind):
    # RRC's bundled prices barely move in early 1990: 75 zero returns in the first 80 days
    returns = panel.returns()[:150]
    rrc = panel.symbols.index("RRC")
    idx = np.arange(60, 150)
    profile = st.StrategyProfile(name=kind.value, kind=kind, limits=st.RiskLimits(None, None, None), transition=st.Transition(min_change=0))
    w = st.weights_raw(returns, idx, profile).target
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    stale = np.array([np.var(returns[max(1, e - 125) : e + 1, rrc]) == 0 for e in idx]) & (idx >= 63)
    assert stale.any()
    if kind in (st.StrategyKind.INVERSE_VOL, st.StrategyKind.RISK_PARITY, st.StrategyKind.VOL_TARGET):
        assert np.all(w[stale, rrc] == 0)


def test_momentum_picks_the_top_12_1_names():
    rng = np.random.default_rng(4)
    returns = rng.normal(0, 1e-4, (400, 6))
    returns[0] = np.nan
    drift = np.array([5, -1, 3, 0, 4, -2]) * 1e-3
    returns[1:] += drift
    profile = st.StrategyProfile(name="m", kind="momentum", momentum_top_fraction=0.5)
    w = st.raw_weights(returns, np.array([100, 300]), profile)
    np.testing.assert_allclose(w[0], 1 / 6)  # not enough history: equal weight
    np.testing.assert_allclose(w[1], [1 / 3, 0, 1 / 3, 0, 1 / 3, 0])


def test_performance_weighted_floors_negative_sharpe(bundled):
    returns, idx, _ = bundled
    profile = st.StrategyProfile(name="p", kind="performance_weighted", lookback=126)
    k = 100
    w = st.raw_weights(returns, idx[k : k + 1], profile)[0]
    window = returns[idx[k] - 125 : idx[k] + 1]
    sharpe = np.maximum(window.mean(0) / window.std(0, ddof=1), 0)
    np.testing.assert_allclose(w, sharpe / sharpe.sum(), rtol=1e-10)


@pytest.mark.parametrize("weighting", list(st.VolWeighting))
def test_vol_target_never_exceeds_target(bundled, weighting):
    returns, idx, _ = bundled
    profile = st.StrategyProfile(name="v", kind="vol_target", vol_weighting=weighting, target_vol=0.12)
    w = st.raw_weights(returns, idx, profile)
    cov, n_obs = st.trailing_covariances(returns, idx, profile.vol_window)
    ready = n_obs >= profile.min_history
    assert np.all(st.ex_ante_volatility(w[ready], cov[ready]) <= 0.12 + 1e-12)
    assert np.all(w.sum(axis=1) <= 1 + 1e-12)
    vols = np.sqrt(np.einsum("rii->ri", cov[ready]))
    # calmer names never get less weight than more volatile ones
    order = np.argsort(vols, axis=1)
    ranked = np.take_along_axis(w[ready], order, axis=1)
    assert np.all(np.diff(ranked, axis=1) <= 1e-15)


def test_spread_days_produce_a_daily_path(bundled):
    returns, idx, sid = bundled
    profile = st.StrategyProfile(transition=st.Transition(spread_days=5))
    out = st.weights_raw(returns, idx, profile, sid)
    assert out.trade_idx.size > idx.size
    assert np.all(np.diff(out.trade_idx) > 0)
    np.testing.assert_array_equal(out.trade_idx[out.trade_source == 3][0], idx[3])
    scal = out.scalars_for_trades(np.linspace(0.5, 1.0, idx.size))
    assert scal.shape == out.trade_idx.shape


# ---------------------------------------------------------------- batched sleeves


def test_reallocate_sleeves_equals_one_at_a_time(bundled):
    returns, idx, sid = bundled
    inp = st.sleeve_inputs(returns, idx, sid, n_sleeves=64, seed=1)
    limits, tr = st.RiskLimits(0.2, 0.3, 0.3), st.Transition(max_change=0.1, min_change=0.05)
    batch = st.reallocate_sleeves(inp.cov, inp.universe, inp.prev, sid, limits, tr, inp.cov_index)
    for s in range(64):
        c = inp.cov[inp.cov_index[s]]
        rp = st.risk_parity_weights(c, mask=inp.universe[s])
        lim = st.apply_risk_limits(rp, sid, limits, c)
        one = st.smooth_transition(inp.prev[s], lim, tr, sid, limits, c)
        np.testing.assert_allclose(batch[s], one, atol=1e-13)
    _limits_hold(batch, sid, limits, inp.cov[inp.cov_index])
    assert np.all(batch[~inp.universe] == 0)
    assert np.abs(batch - inp.prev).max() <= 0.1 + 1e-12


def test_reallocate_many_sleeves(bundled):
    """(Speed is measured by ``make bench``, entry ``reallocation_10000_strategies``, not here.)"""
    returns, idx, sid = bundled
    inp = st.sleeve_inputs(returns, idx, sid, n_sleeves=3000)
    w = st.reallocate_sleeves(inp.cov, inp.universe, inp.prev, sid, cov_index=inp.cov_index)
    assert w.shape == (3000, 20)
