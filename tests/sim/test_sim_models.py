"""Monte Carlo models against closed forms and independent references: GBM moments, a Heston call
against QuantLib's semi-analytic price, the regime-switching model's transitions and moments, and
the calibration; plus the engine's reproducibility (chunk size, path count) and precision switch."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from alloc_assets.sim.engine.kernel import SimSettings, provenance, simulate_log_returns, simulate_terminal_log_returns
from alloc_assets.sim.models.world import GBM, Heston, WorldModel, stationary_distribution
from alloc_assets.sim.models.world_calibration import calibrate_world_model, regime_weighted_covariance


def _within(estimate, truth, se, k=3.0):
    assert abs(estimate - truth) <= k * se, f"{estimate} vs {truth}: {abs(estimate - truth) / se:.2f} standard errors"


def test_gbm_terminal_mean_and_variance_match_the_closed_form():
    mu, sigma, horizon = np.array([0.08, 0.02]), np.array([0.2, 0.35]), 252
    corr = np.array([[1.0, 0.5], [0.5, 1.0]])
    model = GBM.create(mu, sigma, corr)
    total = simulate_terminal_log_returns(model, 40_000, horizon, 11, SimSettings(block_size=5000))
    s_t = np.exp(total)  # S_0 = 1
    t = horizon / 252
    n = s_t.shape[1]
    for i in range(2):
        x = s_t[i]
        mean_true = math.exp(mu[i] * t)
        var_true = math.exp(2 * mu[i] * t) * (math.exp(sigma[i] ** 2 * t) - 1.0)
        _within(x.mean(), mean_true, math.sqrt(var_true / n))
        dev2 = (x - x.mean()) ** 2
        _within(x.var(ddof=1), var_true, dev2.std(ddof=1) / math.sqrt(n))
    # the log returns carry the requested correlation
    r = np.corrcoef(total)[0, 1]
    _within(r, 0.5, (1 - 0.25) / math.sqrt(n))


def _quantlib_heston_call(s0, strike, years_days, r, kappa, theta, sigma, rho, v0):
    ql = pytest.importorskip("QuantLib")
    today = ql.Date(3, 1, 2024)
    ql.Settings.instance().evaluationDate = today
    day_count = ql.Actual365Fixed()
    rate = ql.YieldTermStructureHandle(ql.FlatForward(today, r, day_count))
    dividend = ql.YieldTermStructureHandle(ql.FlatForward(today, 0.0, day_count))
    process = ql.HestonProcess(rate, dividend, ql.QuoteHandle(ql.SimpleQuote(s0)), v0, kappa, theta, sigma, rho)
    option = ql.EuropeanOption(ql.PlainVanillaPayoff(ql.Option.Call, strike), ql.EuropeanExercise(today + years_days))
    option.setPricingEngine(ql.AnalyticHestonEngine(ql.HestonModel(process)))
    return option.NPV()


def test_heston_call_by_simulation_matches_the_semi_analytic_price():
    # S0 = K = 100 (at the money), T = 1 year (252 daily steps; QuantLib: 365 days Act/365),
    # r = 3 % continuous, no dividend; kappa 2, theta 0.04, sigma 0.3, rho -0.7, v0 0.04.
    s0, strike, r = 100.0, 100.0, 0.03
    params = dict(kappa=2.0, theta=0.04, sigma=0.3, rho=-0.7, v0=0.04)
    reference = _quantlib_heston_call(s0, strike, 365, r, **params)
    model = Heston.create(mu=r, kappa=params["kappa"], theta=params["theta"], xi=params["sigma"], rho=params["rho"], v0=params["v0"])
    total = simulate_terminal_log_returns(model, 100_000, 252, 5, SimSettings(block_size=10_000, chunk_paths=50_000, dtype="float64"))
    payoff = math.exp(-r) * np.maximum(s0 * np.exp(total[0]) - strike, 0.0)
    se = payoff.std(ddof=1) / math.sqrt(payoff.size)
    _within(payoff.mean(), reference, se)


def _world(n_assets=3) -> WorldModel:
    a = np.array([[0.90, 0.06, 0.03, 0.01], [0.10, 0.80, 0.08, 0.02], [0.05, 0.15, 0.75, 0.05], [0.02, 0.08, 0.20, 0.70]])
    rng = np.random.default_rng(3)
    means = rng.normal(0.0, 0.002, (4, n_assets))
    covs = []
    for k in range(4):
        m = rng.normal(size=(n_assets, n_assets))
        covs.append((m @ m.T / n_assets + np.eye(n_assets)) * (0.01 * (k + 1)) ** 2)
    return WorldModel.create(a, means, np.stack(covs))


def test_regime_switching_reproduces_its_transition_matrix_and_regime_moments():
    world = _world()
    out = simulate_log_returns(world, 2000, 250, 21, SimSettings(block_size=1000, dtype="float64"), return_states=True)
    regimes, rets = out["states"][0], out["log_returns"]  # (H, P), (H, N, P); states = (regime, variance factor)
    prev, nxt = regimes[:-1].ravel(), regimes[1:].ravel()
    a = np.asarray(world.transition)
    for i in range(4):
        n_i = int((prev == i).sum())
        assert n_i > 1000
        for j in range(4):
            est = float(((prev == i) & (nxt == j)).sum()) / n_i
            _within(est, a[i, j], math.sqrt(a[i, j] * (1 - a[i, j]) / n_i))
    x = np.moveaxis(rets, 1, -1).reshape(-1, rets.shape[1])  # (H * P, N)
    lab = regimes.ravel()
    covs = world.covariances()
    for k in range(4):
        xk = x[lab == k]
        nk = xk.shape[0]
        sample_cov = np.cov(xk, rowvar=False)
        for i in range(3):
            _within(xk[:, i].mean(), world.means[k, i], math.sqrt(covs[k, i, i] / nk))
            for j in range(3):
                se = math.sqrt((covs[k, i, i] * covs[k, j, j] + covs[k, i, j] ** 2) / nk)
                _within(sample_cov[i, j], covs[k, i, j], se)


def test_regime_of_day_zero_follows_p0_and_shocks_apply_on_day_one():
    world = _world().replace(p0=np.array([0.0, 0.0, 0.0, 1.0]))
    out = simulate_log_returns(world, 400, 1, 2, SimSettings(block_size=400, dtype="float64"), return_states=True)
    # from CRISIS, day 1's regime is drawn from the CRISIS row
    share = np.bincount(out["states"][0][0], minlength=4) / 400
    assert abs(share[3] - 0.70) < 4 * math.sqrt(0.7 * 0.3 / 400)
    jumped = WorldModel.create(np.asarray(world.transition), np.asarray(world.means), world.covariances(), p0=[1, 0, 0, 0],
                               jump=[-0.1, 0.0, 0.05])
    base = simulate_log_returns(world.replace(p0=np.array([1.0, 0, 0, 0])), 50, 3, 4, SimSettings(block_size=50, dtype="float64"))
    shocked = simulate_log_returns(jumped, 50, 3, 4, SimSettings(block_size=50, dtype="float64"))
    np.testing.assert_allclose(shocked[0] - base[0], np.array([-0.1, 0.0, 0.05])[:, None] * np.ones((3, 50)), atol=1e-12)
    np.testing.assert_allclose(shocked[1:], base[1:], rtol=0, atol=1e-15)  # same draws (re-factored covariance)


def test_calibration_counts_transitions_and_groups_moments():
    rng = np.random.default_rng(0)
    labels = np.repeat(rng.integers(0, 4, 60), 25)
    returns = rng.normal(0, 0.01, (labels.size, 3)) * (1 + labels[:, None])
    world = calibrate_world_model(returns, labels)
    counts = np.zeros((4, 4))
    np.add.at(counts, (labels[:-1], labels[1:]), 1)
    np.testing.assert_allclose(world.transition, counts / counts.sum(axis=1, keepdims=True), atol=1e-15)
    for k in range(4):
        np.testing.assert_allclose(world.means[k], returns[labels == k].mean(axis=0), atol=1e-15)
        np.testing.assert_allclose(world.covariances()[k], np.cov(returns[labels == k], rowvar=False) + 1e-10 * np.eye(3), rtol=1e-9)
    np.testing.assert_array_equal(world.p0, np.eye(4)[labels[-1]])
    pi = stationary_distribution(world.transition)
    np.testing.assert_allclose(pi @ world.transition, pi, atol=1e-12)
    probs = np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 0.0], [0.0, 1.0]])
    sigma = np.asarray(regime_weighted_covariance(world, probs))
    np.testing.assert_allclose(sigma[:, :, 0], 0.5 * (world.covariances()[0] + world.covariances()[1]), rtol=1e-5)
    np.testing.assert_allclose(sigma[:, :, 1], world.covariances()[3], rtol=1e-5)


def test_same_key_gives_identical_paths_whatever_the_chunk_size():
    world = _world()
    runs = [simulate_log_returns(world, 50, 30, 99, SimSettings(block_size=8, chunk_paths=c)) for c in (8, 24, 64)]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)
    fewer = simulate_log_returns(world, 13, 30, 99, SimSettings(block_size=8, chunk_paths=64))
    np.testing.assert_array_equal(fewer, runs[0][..., :13])  # a path does not depend on how many others there are
    other_key = simulate_log_returns(world, 50, 30, 100, SimSettings(block_size=8, chunk_paths=64))
    assert not np.array_equal(other_key, runs[0])


def test_float64_is_selectable_per_call_and_recorded():
    world = _world()
    r64 = simulate_log_returns(world, 8, 5, 1, SimSettings(block_size=8, dtype="float64"))
    r32 = simulate_log_returns(world, 8, 5, 1, SimSettings(block_size=8))
    assert r64.dtype == np.float64 and r32.dtype == np.float32
    assert not jax.config.jax_enable_x64  # the per-call switch does not leak
    prov = provenance(SimSettings(dtype="float64"))
    assert prov["jax_enable_x64"] is True and prov["dtype"] == "float64"
    for key in ("jax_version", "jax_default_prng_impl", "backend", "device_count", "block_size", "jax_threefry_partitionable"):
        assert key in prov


def test_realised_vol_labels_are_causal_expanding_quantiles():
    """The allocator-independent labels: each day's 21-day realised volatility of the equal-weight
    index against the 50/80/95 % quantiles of all volatilities up to that day (a brute-force
    reference with np.quantile on every prefix), -1 in the warm-up, unchanged when days are appended."""
    from alloc_assets.sim.models.world_calibration import realised_vol_labels

    rng = np.random.default_rng(7)
    scale = np.repeat(rng.choice([0.005, 0.01, 0.02, 0.04], 30), 20)  # volatility regimes of 20 days
    r = rng.normal(0.0, 1.0, (scale.size, 3)) * scale[:, None]
    labels = realised_vol_labels(r, window=21, min_history=100)
    index = np.expm1(r).mean(axis=1)
    vol = np.array([index[t - 20 : t + 1].std(ddof=1) for t in range(20, index.size)])  # days 20..
    expected = np.full(index.size, -1)
    for t in range(20 + 99, index.size):
        q = np.quantile(vol[: t - 20 + 1], [0.5, 0.8, 0.95])
        expected[t] = int(np.sum(vol[t - 20] > q))
    np.testing.assert_array_equal(labels, expected)
    assert set(np.unique(labels[labels >= 0])) == {0, 1, 2, 3}
    # no look-ahead: the labels of a prefix are the prefix of the labels
    np.testing.assert_array_equal(realised_vol_labels(r[:400], window=21, min_history=100), labels[:400])
    # the high-volatility stretches get the high labels
    assert scale[labels == 3].mean() > scale[labels == 0].mean()
