"""Strategy weights: risk parity exactness, limits, transitions, causality, batched sleeves."""

from __future__ import annotations

import numpy as np
import pytest

from alloc_assets.core.portfolio.covariance import trailing_covariances
from alloc_assets.core.portfolio.limits import apply_risk_limits, ex_ante_volatility, sector_onehot
from alloc_assets.core.portfolio.profiles import DEFAULT_PROFILE, RiskLimits, StrategyKind, StrategyProfile, Transition, VolWeighting, get_profile, sector_ids
from alloc_assets.core.portfolio.risk_parity import risk_parity_weights
from alloc_assets.core.portfolio.sleeves import reallocate_sleeves, sleeve_inputs
from alloc_assets.core.portfolio.transitions import smooth_transition
from tests.portfolio.reference_strategies import risk_contributions, spread_path
from alloc_assets.core.portfolio.weights import profile_weights, raw_weights, weights_raw
from alloc_assets.core.portfolio.backtest import run_backtest
from alloc_assets.core.market.calendar import RebalanceFrequency, rebalance_indices



@pytest.fixture(scope="module")
def bundled(panel):
    returns = panel.returns()
    idx = rebalance_indices(panel.dates, RebalanceFrequency.MONTHLY)
    sid = sector_ids(panel.symbols, panel.sectors)
    return returns, idx, sid


def _random_cov(rng, n, k=None):
    a = rng.normal(size=(n, k or 3 * n)) * rng.uniform(0.005, 0.03, size=(n, 1))
    return a @ a.T / a.shape[1]


def _limits_hold(w, sid, limits, cov=None, tol=1e-12):
    onehot = sector_onehot(sid)
    assert np.all(w >= -tol)
    assert np.all(w.sum(axis=-1) <= 1 + tol)
    if limits.max_weight is not None:
        assert w.max() <= limits.max_weight + tol
    if limits.max_sector_weight is not None:
        assert (w @ onehot).max() <= limits.max_sector_weight + tol
    if limits.max_total_risk is not None and cov is not None:
        assert ex_ante_volatility(w, cov).max() <= limits.max_total_risk + 1e-10


# ---------------------------------------------------------------- risk parity


def test_risk_parity_equalises_risk_contributions_batched():
    rng = np.random.default_rng(0)
    covs = np.stack([_random_cov(rng, 12) for _ in range(50)])
    w = risk_parity_weights(covs)
    rc = risk_contributions(w, covs)
    np.testing.assert_allclose(rc, 1 / 12, atol=1e-8, rtol=0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert np.all(w > 0)


def test_risk_parity_closed_forms():
    # uncorrelated assets: weights proportional to 1 / vol
    vols = np.array([0.01, 0.02, 0.04, 0.015])
    w = risk_parity_weights(np.diag(vols**2))
    np.testing.assert_allclose(w, (1 / vols) / (1 / vols).sum(), rtol=1e-12)
    # two assets, any correlation: 1 / vol as well
    cov = np.array([[0.02**2, 0.6 * 0.02 * 0.05], [0.6 * 0.02 * 0.05, 0.05**2]])
    np.testing.assert_allclose(risk_parity_weights(cov), [5 / 7, 2 / 7], rtol=1e-12)


def test_risk_parity_budgets():
    rng = np.random.default_rng(1)
    cov = _random_cov(rng, 6)
    budgets = np.array([1, 2, 3, 1, 1, 2], dtype=float)
    w = risk_parity_weights(cov, budgets=budgets)
    np.testing.assert_allclose(risk_contributions(w, cov), budgets / budgets.sum(), atol=1e-10)


def test_risk_parity_masked_equals_sub_universe():
    rng = np.random.default_rng(2)
    cov = _random_cov(rng, 10)
    mask = np.array([1, 0, 1, 1, 0, 1, 1, 0, 1, 1], dtype=bool)
    w = risk_parity_weights(cov, mask=mask)
    sub = risk_parity_weights(cov[np.ix_(mask, mask)])
    assert np.all(w[~mask] == 0)
    np.testing.assert_allclose(w[mask], sub, rtol=1e-10)


def test_risk_parity_on_every_bundled_rebalance(bundled):
    returns, idx, _ = bundled
    cov, n_obs = trailing_covariances(returns, idx[idx >= 126], 126)
    assert np.all(n_obs == 126)
    w = risk_parity_weights(cov)
    np.testing.assert_allclose(risk_contributions(w, cov), 1 / 20, atol=1e-8, rtol=0)


def test_trailing_covariance_is_causal_ledoit_wolf(bundled):
    """Independent reference: scikit-learn's LedoitWolf (centred, MLE empirical covariance) fitted on
    the same window of rows ``e - window + 1 .. e``."""
    sk = pytest.importorskip("sklearn.covariance")
    returns, idx, _ = bundled
    for k, window in ((50, 63), (200, 126), (394, 126)):
        cov, n_obs = trailing_covariances(returns, idx[k : k + 1], window)
        x = returns[idx[k] - window + 1 : idx[k] + 1]
        ref = sk.LedoitWolf().fit(x).covariance_
        assert n_obs[0] == window
        np.testing.assert_allclose(cov[0], ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
        assert 0 < sk.LedoitWolf().fit(x).shrinkage_ < 1
    # the first window skips the NaN row 0 and is shorter; a stale name (RRC: zero returns in early
    # 1990) is left out of the estimate, with zero covariances
    cov0, n0 = trailing_covariances(returns, idx[:1], 63)
    assert n0[0] == idx[0] and np.all(np.isfinite(cov0))
    x0 = returns[1 : idx[0] + 1]
    live = x0.std(axis=0) > 0
    assert live.sum() == 19
    ref0 = sk.LedoitWolf().fit(x0[:, live]).covariance_
    np.testing.assert_allclose(cov0[0][np.ix_(live, live)], ref0, rtol=1e-12, atol=1e-12 * np.abs(ref0).max())
    assert np.all(cov0[0][~live] == 0) and np.all(cov0[0][:, ~live] == 0)


def test_trailing_covariance_is_deterministic_and_independent_of_the_batch(bundled):
    returns, idx, _ = bundled
    cov, _ = trailing_covariances(returns, idx, 126)
    np.testing.assert_array_equal(cov, trailing_covariances(returns, idx, 126)[0])
    for k in (0, 5, 200, idx.size - 1):  # short early windows and full ones, alone or in a batch
        np.testing.assert_array_equal(cov[k], trailing_covariances(returns, idx[k : k + 1], 126)[0][0])


def test_trailing_covariance_of_a_zero_variance_name_is_zero_and_the_rest_is_ledoit_wolf():
    sk = pytest.importorskip("sklearn.covariance")
    returns = _factor_returns(40, 6, 11)
    returns[:, 2] = 0.0  # a stale price: the return is 0 every day
    returns[0, 2] = np.nan
    returns[:, 4] = 0.001  # a constant return is a zero variance too
    returns[0, 4] = np.nan
    cov, _ = trailing_covariances(returns, np.array([40]), 30)
    live = np.array([0, 1, 3, 5])
    lw = sk.LedoitWolf().fit(returns[11:41][:, live])
    assert 0 < lw.shrinkage_ < 1
    ref = lw.covariance_
    np.testing.assert_allclose(cov[0][np.ix_(live, live)], ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    assert np.all(cov[0][[2, 4]] == 0) and np.all(cov[0][:, [2, 4]] == 0)


def _factor_returns(n_days, n_names, seed):
    """One market factor plus idiosyncratic noise of unequal sizes, after a NaN row 0."""
    rng = np.random.default_rng(seed)
    beta = rng.uniform(0.5, 1.5, n_names)
    idio = rng.uniform(0.005, 0.03, n_names)
    x = rng.normal(0, 0.01, (n_days, 1)) * beta + rng.normal(0, 1, (n_days, n_names)) * idio
    return np.vstack([np.full(n_names, np.nan), x])


def _singular_window():
    return _factor_returns(20, 30, 0)  # 30 names, 20 days


def test_risk_parity_on_more_names_than_days_is_finite_with_equal_risk():
    """N = 30 names, a 20-day window: the sample covariance has rank 19. The Ledoit-Wolf covariance
    is positive definite and the ERC weights equalise risk under it (independent formula with
    scikit-learn's covariance)."""
    sk = pytest.importorskip("sklearn.covariance")
    returns = _singular_window()
    window = returns[1:]
    assert np.linalg.matrix_rank(np.cov(window, rowvar=False)) < 30
    lw = sk.LedoitWolf().fit(window)
    assert 0 < lw.shrinkage_ < 1
    sigma = lw.covariance_
    cov, n_obs = trailing_covariances(returns, np.array([20]), 20)
    assert n_obs[0] == 20
    w = risk_parity_weights(cov[0])
    assert np.all(np.isfinite(w)) and np.all(w > 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-14)
    sw = sigma @ w
    rc = w * sw / (w @ sw)
    np.testing.assert_allclose(rc, 1 / 30, rtol=0, atol=1e-10)
    # the same through the profile (a 20-day lookback, ready after 20 rows)
    profile = StrategyProfile(lookback=20, min_history=20, limits=RiskLimits(None, None, None),
                                 transition=Transition(min_change=0.0))
    wp = weights_raw(returns, np.array([20]), profile).target[0]
    sw = sigma @ wp
    np.testing.assert_allclose(wp * sw / (wp @ sw), 1 / 30, rtol=0, atol=1e-10)
    assert wp.sum() == pytest.approx(1.0, abs=1e-14)


def test_zero_variance_name_gets_zero_weight_and_does_not_raise():
    sk = pytest.importorskip("sklearn.covariance")
    returns = _singular_window()
    returns[1:, 7] = 0.0  # constant price over the whole window
    cov, _ = trailing_covariances(returns, np.array([20]), 20)
    w = risk_parity_weights(cov[0])  # the solver itself excludes a zero-variance name
    assert w[7] == 0.0 and np.all(np.isfinite(w)) and w.sum() == pytest.approx(1.0, abs=1e-14)
    live = np.arange(30) != 7
    sigma = sk.LedoitWolf().fit(returns[1:, live]).covariance_
    sw = sigma @ w[live]
    np.testing.assert_allclose(w[live] * sw / (w[live] @ sw), 1 / 29, rtol=0, atol=1e-10)
    for kind in (StrategyKind.RISK_PARITY, StrategyKind.HYBRID, StrategyKind.INVERSE_VOL, StrategyKind.VOL_TARGET):
        profile = StrategyProfile(name=kind.value, kind=kind, lookback=20, min_history=20, vol_window=20)
        out = weights_raw(returns, np.array([20]), profile).target[0]
        assert np.all(np.isfinite(out)) and np.all(out >= 0)
        if kind is not StrategyKind.HYBRID:  # hybrid's momentum half is not covariance based
            assert out[7] == 0.0
    # a universe of zero-variance names only: every risk contribution is 0, so equal weight is ERC
    np.testing.assert_allclose(risk_parity_weights(np.zeros((3, 3))), 1 / 3, rtol=1e-15)


def test_degenerate_window_with_no_shrinkage_falls_back_to_inverse_vol():
    """Every name's centred return has the same size every day (+-c_i): Ledoit-Wolf's intensity is 0
    (scikit-learn agrees), the covariance is the rank-1 sample one and no ERC exists (a long-only mix
    has zero variance). The profile falls back to the ERC of the diagonal: inverse volatility."""
    sk = pytest.importorskip("sklearn.covariance")
    sign = np.tile([1.0, -1.0], 10)
    amp = np.array([0.01, 0.02, 0.015, 0.03])
    returns = np.vstack([np.full(4, np.nan), np.outer(sign, amp) * np.array([1, -1, 1, -1])])
    assert sk.LedoitWolf().fit(returns[1:]).shrinkage_ < 1e-12  # 0 up to rounding
    cov, _ = trailing_covariances(returns, np.array([20]), 20)
    assert np.linalg.matrix_rank(cov[0]) == 1
    profile = StrategyProfile(lookback=20, min_history=20, limits=RiskLimits(None, None, None))
    w = raw_weights(returns, np.array([20]), profile)[0]
    np.testing.assert_allclose(w, (1 / amp) / (1 / amp).sum(), rtol=1e-12)


# ---------------------------------------------------------------- limits


def test_single_name_cap_redistributes_pro_rata():
    limits = RiskLimits(max_weight=0.4, max_sector_weight=None, max_total_risk=None)
    w = apply_risk_limits(np.array([0.5, 0.3, 0.2]), np.arange(3), limits)
    np.testing.assert_allclose(w, [0.4, 0.36, 0.24])


def test_cascading_caps_and_infeasible_goes_to_cash():
    limits = RiskLimits(max_weight=0.35, max_sector_weight=None, max_total_risk=None)
    w = apply_risk_limits(np.array([0.5, 0.3, 0.2]), np.arange(3), limits)
    # 0.5 -> 0.35; 0.15 to the others pro rata -> 0.39, 0.26; 0.39 -> 0.35; 0.04 to the last -> 0.30
    np.testing.assert_allclose(w, [0.35, 0.35, 0.30])
    tight = RiskLimits(max_weight=0.2, max_sector_weight=None, max_total_risk=None)
    w = apply_risk_limits(np.array([0.5, 0.3, 0.2]), np.arange(3), tight)
    np.testing.assert_allclose(w, [0.2, 0.2, 0.2])  # 0.4 cannot be placed: cash


def test_sector_cap_scales_sector_and_feeds_others():
    limits = RiskLimits(max_weight=None, max_sector_weight=0.3, max_total_risk=None)
    sid = np.array([0, 0, 1, 1, 2])
    w = apply_risk_limits(np.array([0.3, 0.2, 0.1, 0.1, 0.3]), sid, limits)
    # sector 0 scaled 0.5 -> 0.3; its 0.2 goes to sector 1 (sector 2 is full), which then overflows
    # to 0.4 and is scaled back to 0.3; the last 0.1 has nowhere to go: cash
    np.testing.assert_allclose(w, [0.18, 0.12, 0.15, 0.15, 0.3])
    sid = np.array([0, 0, 1, 2])
    w = apply_risk_limits(np.array([0.3, 0.2, 0.25, 0.25]), sid, limits)
    np.testing.assert_allclose(w, [0.18, 0.12, 0.3, 0.3])  # single-name sectors hit the cap too
    # names at zero never receive weight
    w = apply_risk_limits(np.array([0.3, 0.2, 0.5, 0.0]), sid, RiskLimits(max_weight=0.4, max_sector_weight=0.3, max_total_risk=None))
    assert w[3] == 0.0 and w.sum() == pytest.approx(0.6)  # 0.3 + 0.3, the rest in cash


def test_total_risk_cap_scales_to_cash():
    cov = np.diag([0.02, 0.03]) ** 2
    limits = RiskLimits(max_weight=None, max_sector_weight=None, max_total_risk=0.1)
    w = apply_risk_limits(np.array([0.5, 0.5]), np.arange(2), limits, cov)
    assert ex_ante_volatility(w, cov) == pytest.approx(0.1)
    np.testing.assert_allclose(w[0], w[1])


def test_limits_hold_on_random_books():
    rng = np.random.default_rng(3)
    sid = rng.integers(0, 5, size=15)
    raw = rng.dirichlet(np.full(15, 0.3), size=2000)
    covs = np.stack([_random_cov(rng, 15) for _ in range(2000)])
    limits = RiskLimits(max_weight=0.2, max_sector_weight=0.3, max_total_risk=0.12)
    w = apply_risk_limits(raw, sid, limits, covs)
    _limits_hold(w, sid, limits, covs)
    # where the limits leave room, nothing is lost to cash
    loose = RiskLimits(max_weight=0.2, max_sector_weight=0.3, max_total_risk=None)
    w2 = apply_risk_limits(np.full((1, 15), 1 / 15), sid, loose)
    assert w2.sum() == pytest.approx(min(1.0, 0.3 * len(set(sid))))


# ---------------------------------------------------------------- transitions


def test_max_change_moves_uniformly_towards_target():
    prev = np.array([0.5, 0.5, 0.0])
    new = np.array([0.2, 0.4, 0.4])
    tr = Transition(max_change=0.1, min_change=0.0)
    out = smooth_transition(prev, new, tr, np.arange(3), RiskLimits(None, None, None))
    np.testing.assert_allclose(out, prev + 0.25 * (new - prev))
    assert np.abs(out - prev).max() == pytest.approx(0.1)


def test_min_change_threshold_is_relative_and_entries_exits_trade():
    prev = np.array([0.30, 0.30, 0.40, 0.00])
    new = np.array([0.31, 0.20, 0.39, 0.10])  # +3.3 %, -33 %, -2.5 %, entry
    tr = Transition(min_change=0.05)
    out = smooth_transition(prev, new, tr, np.arange(4), RiskLimits(None, None, None))
    np.testing.assert_allclose(out, [0.30, 0.20, 0.40, 0.10])
    exit_ = smooth_transition(prev, np.array([0.31, 0.3, 0.39, 0.0]), tr, np.arange(4), RiskLimits(None, None, None))
    assert exit_[3] == 0.0
    # held names that add up above 1 take the excess from the names that trade
    over = smooth_transition(np.array([0.5, 0.5, 0.0]), np.array([0.48, 0.48, 0.04]), tr, np.arange(3), RiskLimits(None, None, None))
    np.testing.assert_allclose(over, [0.5, 0.5, 0.0])


def test_min_change_band_is_on_the_drifted_weights():
    # name 0 drifted from its old target 0.30 to 0.33; the new target 0.34 is within 5 % of 0.33 (not
    # of 0.30): it holds 0.33. Name 2 drifted from 0.40 to 0.39; its new target is its old one, 0.40,
    # within 5 % of 0.39: it holds 0.39 (the old rule set 0.40, trading against the drift). Name 1
    # moves from 0.28 to 0.20 (-29 %): it trades.
    none = RiskLimits(None, None, None)
    tr = Transition(min_change=0.05)
    prev = np.array([0.30, 0.30, 0.40])
    out = smooth_transition(prev, np.array([0.34, 0.20, 0.40]), tr, np.arange(3), none, drifted=np.array([0.33, 0.28, 0.39]))
    np.testing.assert_array_equal(out, [0.33, 0.20, 0.39])
    # held names above full investment: the excess is taken from the traders pro rata (rule unchanged)
    out = smooth_transition(prev, np.array([0.34, 0.30, 0.36]), tr, np.arange(3), none, drifted=np.array([0.35, 0.25, 0.40]))
    np.testing.assert_allclose(out, [0.35, 0.30 * 65 / 66, 0.36 * 65 / 66], rtol=1e-15)
    # a drifted weight above a limit is cut to it, to cash (limits win over the band)
    out = smooth_transition(prev, np.array([0.36, 0.29, 0.35]), tr, np.arange(3), RiskLimits(0.36, None, None),
                               drifted=np.array([0.37, 0.28, 0.35]))
    np.testing.assert_array_equal(out, [0.36, 0.28, 0.35])
    # without drift information the book is the previous target (a single step, as for the sleeves)
    out = smooth_transition(prev, np.array([0.31, 0.20, 0.39]), tr, np.arange(3), none)
    np.testing.assert_array_equal(out, [0.30, 0.20, 0.40])


# five names, equal weight capped at 0.19 (0.05 in cash); rebalances at rows 3 and 10
_CAP = RiskLimits(max_weight=0.19, max_sector_weight=None, max_total_risk=None, fit_to_universe=False)  # binding on purpose
_HELD = np.array([True, True, False, False, True])


def _drift_returns():
    returns = np.zeros((16, 5))
    returns[0] = np.nan
    returns[1:4] = [0.01, -0.02, 0.0, 0.03, 0.0]  # before the first trade: never earned
    returns[6] = [-0.02, -0.01, -0.08, 0.12, -0.005]
    returns[8] = [0.001, 0.002, -0.001, 0.0, 0.001]
    returns[12] = [0.004, -0.03, 0.01, 0.0, 0.002]
    return returns, np.array([3, 10])


def _engine_drifted(returns, trade_idx, targets, day, cash_rate=0.0):
    """The engine's drifted weights just before the trade at ``day``: the same engine run up to that
    close with the earlier trades only."""
    before = trade_idx < day
    res = run_backtest(returns[: day + 1], trade_idx[before], targets[before], cash_rate_annual=cash_rate)
    return res.weights[day]


@pytest.mark.parametrize("cash_rate", [0.0, 0.05])
def test_held_names_keep_their_drifted_weight_and_do_not_trade(cash_rate):
    returns, idx = _drift_returns()
    profile = StrategyProfile(name="ew", kind="equal_weight", limits=_CAP)
    out = weights_raw(returns, idx, profile, cash_rate_annual=cash_rate)
    np.testing.assert_allclose(out.target[0], 0.19)
    # closed form: w_i G_i / (sum_j w_j G_j + cash G_cash), G the growth over rows 4..10
    growth = np.prod(1.0 + returns[4:11], axis=0)
    cash_growth = (1.0 + cash_rate) ** (7 / 252)
    drifted = 0.19 * growth / (0.19 * growth.sum() + 0.05 * cash_growth)
    held = np.abs(0.19 - drifted) < 0.05 * drifted
    np.testing.assert_array_equal(held, _HELD)  # names 2 and 3 drifted by more than 5 %: they trade
    assert np.all(np.abs(0.19 - drifted[held]) > 1e-3)  # the old rule (band on 0.19) traded them back
    np.testing.assert_allclose(out.target[1][held], drifted[held], rtol=1e-14)
    np.testing.assert_allclose(out.target[1][~held], 0.19, rtol=1e-15)  # traders reach the target
    # on the engine the held names do not trade at all
    engine = _engine_drifted(returns, idx, out.target, idx[1], cash_rate)
    np.testing.assert_allclose(engine, drifted, rtol=1e-13)
    assert np.all(out.target[1][held] == engine[held])
    bt = run_backtest(returns, idx, out.target, cash_rate_annual=cash_rate)
    assert bt.turnover[idx[1]] == pytest.approx(np.abs(out.target[1] - engine)[~held].sum(), rel=1e-12)
    assert bt.turnover[idx[1]] > 0.03


def test_held_names_do_not_trade_on_any_day_of_a_spread():
    returns, idx = _drift_returns()
    profile = StrategyProfile(name="ew", kind="equal_weight", limits=_CAP, transition=Transition(spread_days=3))
    out = weights_raw(returns, idx, profile)
    np.testing.assert_array_equal(out.trade_idx, [3, 4, 5, 10, 11, 12])
    np.testing.assert_array_equal(out.trade_source, [0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(out.trade_target[:3, 0], [0.19 / 3, 0.38 / 3, 0.19])  # from cash: entries trade
    for j in (3, 4, 5):
        day, target = out.trade_idx[j], out.trade_target[j]
        engine = _engine_drifted(returns, out.trade_idx, out.trade_target, day)
        assert np.all(target[_HELD] == engine[_HELD]), day
        if j == 3:  # the traders' path starts where the path stood (0.19), not at their drifted weight
            assert np.all(target[~_HELD] != engine[~_HELD])
            np.testing.assert_array_equal(target[~_HELD], 0.19)
    # without the band the daily path is the plain linear spread of the final targets
    plain = StrategyProfile(name="ew", kind="equal_weight", limits=_CAP, transition=Transition(spread_days=3, min_change=0.0))
    out = weights_raw(returns, idx, plain)
    days, path, src = spread_path(idx, out.target, 3, returns.shape[0])
    np.testing.assert_array_equal(out.trade_idx, days)
    np.testing.assert_array_equal(out.trade_target, path)
    np.testing.assert_array_equal(out.trade_source, src)


def test_band_on_drifted_weights_on_the_bundled_data(panel):
    """Default profile on the bundled data: almost no turnover is left on names whose new target is
    within the 5 % band of their drifted weight (the band on the old targets left 12.7 % there), and
    the names the band holds sit exactly at their drifted weight."""
    out = profile_weights(panel)
    returns = panel.returns()
    bt = run_backtest(returns, out.trade_idx, out.trade_target)
    total = in_band = 0.0
    pairs = at_drifted = 0
    for k in range(1, out.trade_idx.size):
        day = out.trade_idx[k]
        before = bt.weights[day - 1]  # the engine's book after the close of day - 1, earning day's return
        drifted = before * (1 + returns[day]) / (1 + before @ returns[day])
        traded = np.abs(out.trade_target[k] - drifted)
        band = (drifted > 0) & (out.trade_target[k] > 0) & (traded < 0.05 * drifted)
        total += traded.sum()
        in_band += traded[band].sum()
        pairs += band.sum()
        at_drifted += (traded[band] <= 1e-15).sum()
    assert in_band / total < 0.01
    assert at_drifted > 0.9 * pairs and pairs > 3000


def test_spread_path_linear_and_interrupted():
    idx = np.array([2, 10, 12])
    targets = np.array([[0.6, 0.0], [0.0, 0.6], [0.3, 0.3]])
    days, path, src = spread_path(idx, targets, 3, 14)
    np.testing.assert_array_equal(days, [2, 3, 4, 10, 11, 12, 13])
    np.testing.assert_array_equal(src, [0, 0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(path[:3, 0], [0.2, 0.4, 0.6])
    np.testing.assert_allclose(path[3:5], [[0.4, 0.2], [0.2, 0.4]])  # interrupted after two thirds
    np.testing.assert_allclose(path[5], [0.2 + (0.3 - 0.2) / 3, 0.4 + (0.3 - 0.4) / 3])


# ---------------------------------------------------------------- profiles on the bundled data


def test_default_profile_is_monthly_risk_parity():
    assert DEFAULT_PROFILE.kind is StrategyKind.RISK_PARITY
    assert DEFAULT_PROFILE.frequency is RebalanceFrequency.MONTHLY
    assert get_profile("momentum").kind is StrategyKind.MOMENTUM
    with pytest.raises(ValueError, match="known:"):
        get_profile("nope")


@pytest.mark.parametrize("kind", list(StrategyKind))
def test_every_profile_within_limits_on_bundled_data(panel, bundled, kind):
    returns, idx, sid = bundled
    limits = RiskLimits(max_weight=0.2, max_sector_weight=0.3, max_total_risk=0.35)
    profile = StrategyProfile(name=kind.value, kind=kind, limits=limits)
    out = weights_raw(returns, idx, profile, sid)
    assert out.target.shape == (idx.size, 20)
    risk_cov, _ = trailing_covariances(returns, idx, profile.lookback)
    late = idx >= profile.lookback
    _limits_hold(out.target[late], sid, limits, risk_cov[late])
    _limits_hold(out.target, sid, RiskLimits(0.2, 0.3, None))
    assert np.all(out.target.sum(axis=1) > 0.2)
    np.testing.assert_array_equal(out.trade_idx, idx)


@pytest.mark.parametrize("kind", [StrategyKind.RISK_PARITY, StrategyKind.MOMENTUM, StrategyKind.VOL_TARGET, StrategyKind.PERFORMANCE_WEIGHTED])
def test_weights_are_causal(bundled, kind):
    returns, idx, sid = bundled
    cut = 200  # rebalance row index
    profile = StrategyProfile(name=kind.value, kind=kind)
    full = weights_raw(returns, idx, profile, sid).target
    future = returns.copy()
    tail = future[idx[cut] + 1 :]
    future[idx[cut] + 1 :] = np.random.default_rng(0).permutation(tail) * 1.5
    changed = weights_raw(future, idx, profile, sid).target
    # identical up to the rounding of batched linear algebra (batch contents differ)
    np.testing.assert_allclose(full[: cut + 1], changed[: cut + 1], atol=1e-14, rtol=0)
    assert not np.allclose(full[cut + 2 :], changed[cut + 2 :])


def test_risk_parity_profile_has_equal_risk_where_limits_do_not_bind(bundled):
    returns, idx, sid = bundled
    profile = StrategyProfile(limits=RiskLimits(None, None, None), transition=Transition(min_change=0.0))
    out = weights_raw(returns, idx, profile, sid)
    cov, _ = trailing_covariances(returns, idx, 126)
    late = idx >= 126
    np.testing.assert_allclose(risk_contributions(out.target[late], cov[late]), 1 / 20, atol=1e-8)


@pytest.mark.parametrize("kind", list(StrategyKind))
def test_stale_name_gets_no_covariance_based_weight(panel, kind):
    # RRC's bundled prices barely move in early 1990: 75 zero returns in the first 80 days
    returns = panel.returns()[:150]
    rrc = panel.symbols.index("RRC")
    idx = np.arange(60, 150)
    profile = StrategyProfile(name=kind.value, kind=kind, limits=RiskLimits(None, None, None), transition=Transition(min_change=0))
    w = weights_raw(returns, idx, profile).target
    assert np.all(np.isfinite(w)) and np.all(w >= 0)
    stale = np.array([np.var(returns[max(1, e - 125) : e + 1, rrc]) == 0 for e in idx]) & (idx >= 63)
    assert stale.any()
    if kind in (StrategyKind.INVERSE_VOL, StrategyKind.RISK_PARITY, StrategyKind.VOL_TARGET):
        assert np.all(w[stale, rrc] == 0)


def test_momentum_picks_the_top_12_1_names():
    rng = np.random.default_rng(4)
    returns = rng.normal(0, 1e-4, (400, 6))
    returns[0] = np.nan
    drift = np.array([5, -1, 3, 0, 4, -2]) * 1e-3
    returns[1:] += drift
    profile = StrategyProfile(name="m", kind="momentum", momentum_top_fraction=0.5)
    w = raw_weights(returns, np.array([100, 300]), profile)
    np.testing.assert_allclose(w[0], 1 / 6)  # not enough history: equal weight
    np.testing.assert_allclose(w[1], [1 / 3, 0, 1 / 3, 0, 1 / 3, 0])


def test_performance_weighted_floors_negative_sharpe(bundled):
    returns, idx, _ = bundled
    profile = StrategyProfile(name="p", kind="performance_weighted", lookback=126)
    k = 100
    w = raw_weights(returns, idx[k : k + 1], profile)[0]
    window = returns[idx[k] - 125 : idx[k] + 1]
    sharpe = np.maximum(window.mean(0) / window.std(0, ddof=1), 0)
    np.testing.assert_allclose(w, sharpe / sharpe.sum(), rtol=1e-10)


@pytest.mark.parametrize("weighting", list(VolWeighting))
def test_vol_target_never_exceeds_target(bundled, weighting):
    returns, idx, _ = bundled
    profile = StrategyProfile(name="v", kind="vol_target", vol_weighting=weighting, target_vol=0.12)
    w = raw_weights(returns, idx, profile)
    cov, n_obs = trailing_covariances(returns, idx, profile.vol_window)
    ready = n_obs >= profile.min_history
    assert np.all(ex_ante_volatility(w[ready], cov[ready]) <= 0.12 + 1e-12)
    assert np.all(w.sum(axis=1) <= 1 + 1e-12)
    vols = np.sqrt(np.einsum("rii->ri", cov[ready]))
    # calmer names never get less weight than more volatile ones
    order = np.argsort(vols, axis=1)
    ranked = np.take_along_axis(w[ready], order, axis=1)
    assert np.all(np.diff(ranked, axis=1) <= 1e-15)


def test_spread_days_produce_a_daily_path(bundled):
    returns, idx, sid = bundled
    profile = StrategyProfile(transition=Transition(spread_days=5))
    out = weights_raw(returns, idx, profile, sid)
    assert out.trade_idx.size > idx.size
    assert np.all(np.diff(out.trade_idx) > 0)
    np.testing.assert_array_equal(out.trade_idx[out.trade_source == 3][0], idx[3])
    scal = out.scalars_for_trades(np.linspace(0.5, 1.0, idx.size))
    assert scal.shape == out.trade_idx.shape


# ---------------------------------------------------------------- batched sleeves


def test_reallocate_sleeves_equals_one_at_a_time(bundled):
    returns, idx, sid = bundled
    inp = sleeve_inputs(returns, idx, sid, n_sleeves=64, seed=1)
    limits, tr = RiskLimits(0.2, 0.3, 0.3), Transition(max_change=0.1, min_change=0.05)
    batch = reallocate_sleeves(inp.cov, inp.universe, inp.prev, sid, limits, tr, inp.cov_index)
    for s in range(64):
        c = inp.cov[inp.cov_index[s]]
        rp = risk_parity_weights(c, mask=inp.universe[s])
        lim = apply_risk_limits(rp, sid, limits, c)
        one = smooth_transition(inp.prev[s], lim, tr, sid, limits, c)
        np.testing.assert_allclose(batch[s], one, atol=1e-13)
    _limits_hold(batch, sid, limits, inp.cov[inp.cov_index])
    assert np.all(batch[~inp.universe] == 0)
    assert np.abs(batch - inp.prev).max() <= 0.1 + 1e-12


def test_reallocate_many_sleeves(bundled):
    """(Speed is measured by ``make bench``, entry ``reallocation_10000_strategies``, not here.)"""
    returns, idx, sid = bundled
    inp = sleeve_inputs(returns, idx, sid, n_sleeves=3000)
    w = reallocate_sleeves(inp.cov, inp.universe, inp.prev, sid, cov_index=inp.cov_index)
    assert w.shape == (3000, 20)


def test_caps_fit_small_universes_and_say_so():
    """N x cap < 1 must not leave the book in cash silently, and N x cap = 1 must
    not force equal weights: a cap under twice the equal share is raised to min(1, 2 / K)."""
    from alloc_assets.core.portfolio.profiles import RiskLimits, limits_for_universe

    lim = RiskLimits(max_weight=0.20, max_sector_weight=0.30)
    same, notes = limits_for_universe(lim, 20, 7)
    assert same == lim and notes == ()
    two, notes = limits_for_universe(lim, 2, 2)
    assert two.max_weight == 1.0 and two.max_sector_weight == 1.0 and len(notes) == 2
    assert "cash" in notes[0] and "2 / 2 names" in notes[0]
    five, notes = limits_for_universe(lim, 5, 5)
    assert five.max_weight == pytest.approx(0.4) and "equal weights" in notes[0]
    # end to end on two and on five assets: the risk-parity book is fully invested and, with
    # unequal volatilities, not equal-weighted
    rng = np.random.default_rng(8)
    for n in (2, 5):
        vols = np.linspace(0.006, 0.02, n)
        r = rng.normal(0.0003, vols, (600, n))
        r[0] = np.nan
        idx = np.arange(150, 600, 21)
        out = weights_raw(r, idx, DEFAULT_PROFILE)
        assert (out.target.sum(axis=1) > 0.95).all(), n  # the min_change band may leave a sliver in cash
        assert out.target[-1].max() - out.target[-1].min() > 0.05, n  # not forced to equal weight
        assert out.limit_notes and out.limits.max_weight == pytest.approx(min(1.0, 2 / n))
