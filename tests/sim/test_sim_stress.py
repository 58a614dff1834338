"""Stress tests that bite (a shock moves the paths the allocator reacts to), checked on simulated paths, not on the formulas that
built the scenarios:

* every parameter scenario's equal-weight equity index hits its annual drift and volatility
  (mean and variance of daily simple returns x 252, per path, within 3 standard errors across paths);
* the Heston variance factor's mean follows the closed form ``E[f_t] = 1 + (f_0 - 1)(1 - kappa)^t``;
* each shock raises the realised volatility of the index above the base scenario's on the same
  random numbers for every month of its stated horizon (SHOCK_DAYS), by more than 3 standard errors;
* under ``vol_spike`` and ``combined_2008`` the allocator's book and the baseline differ (paired
  per-path differences of annual volatility and max drawdown) by more than their standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from alloc_assets.sim.engine.kernel import SimSettings, simulate_log_returns
from alloc_assets.sim.models.world import WorldModel
from alloc_assets.sim.scenarios.catalogue import SHOCK_DAYS, get_scenario
from alloc_assets.sim.scenarios.run import run_scenario
from alloc_assets.sim.scenarios.scenario_world import scenario_world_model

SETTINGS = SimSettings(block_size=500, chunk_paths=500)
SEED = 11


@pytest.fixture(scope="module")
def vol_labelled_world():
    """The world model the simulation assets calibrate by default: the bundled history's daily log
    returns on realised-volatility labels (independent of the allocator), warm-up days dropped."""
    from alloc_assets.core.market.panel import load_bundled_panel
    from alloc_assets.sim.models.world_calibration import calibrate_world_model, realised_vol_labels

    log_r = np.diff(np.log(load_bundled_panel().close), axis=0)
    labels = realised_vol_labels(log_r)
    unlabelled = labels < 0
    return calibrate_world_model(np.where(unlabelled[:, None], np.nan, log_r), np.where(unlabelled, 0, labels),
                                 p0=np.eye(4)[labels[-1]])


@pytest.fixture(scope="module")
def world(vol_labelled_world):
    """Scenario and shock tests run on the default world (realised-volatility labels)."""
    return vol_labelled_world


def _index_returns(model, n_eq: int, n_paths: int, horizon: int) -> np.ndarray:
    """(H, P) daily simple returns of the equal-weight (daily rebalanced) equity index."""
    lr = simulate_log_returns(model, n_paths, horizon, SEED, SETTINGS)
    return np.expm1(lr[:, :n_eq, :].astype(np.float64)).mean(axis=1)


@pytest.mark.parametrize("name", ["base", "bull", "bear", "high_vol", "low_vol"])
def test_parameter_scenario_hits_drift_and_volatility_on_simulated_paths(world, name):
    spec = get_scenario(name)
    r = _index_returns(scenario_world_model(spec, world), world.n_assets, 1000, 1260)
    drift = r.mean(axis=0) * 252  # per path
    var = r.var(axis=0, ddof=1) * 252
    se_drift = drift.std(ddof=1) / math.sqrt(drift.size)
    se_var = var.std(ddof=1) / math.sqrt(var.size)
    assert abs(drift.mean() - spec.equity_return) < 3 * se_drift, (drift.mean(), se_drift)
    assert abs(var.mean() - spec.equity_vol**2) < 3 * se_var, (math.sqrt(var.mean()), se_var)


def test_heston_variance_factor_follows_its_closed_form_mean():
    kappa, xi, f0 = 2.0 / 252, 1.5 / math.sqrt(252), 4.0
    model = WorldModel.create([[1.0]], [[0.0]], [[[1e-4]]], var0=f0, var_kappa=kappa, var_xi=xi, var_exposure=1.0)
    out = simulate_log_returns(model, 4000, 252, 3, SimSettings(block_size=1000, dtype="float64"), return_states=True)
    f = out["states"][1]  # (H, P): the factor after each day
    t = np.arange(1, 253)
    expected = 1.0 + (f0 - 1.0) * (1.0 - kappa) ** t
    se = f.std(axis=1, ddof=1) / math.sqrt(f.shape[1])
    assert np.all(np.abs(f.mean(axis=1) - expected) < 4 * se + 1e-3)
    # and the returns carry it: day-1 variance = f0 x 1e-4
    assert out["log_returns"][0, 0].var() == pytest.approx(f0 * 1e-4, rel=0.1)


def test_a_model_without_shocks_is_the_plain_regime_model(world):
    """Neutral shock fields: the returns are mean + L z of the regime drawn (independent rebuild)."""
    model = WorldModel.create([[0.9, 0.1], [0.2, 0.8]], np.zeros((2, 2)), np.stack([np.eye(2) * 1e-4, np.eye(2) * 4e-4]))
    out = simulate_log_returns(model, 2000, 50, 5, SimSettings(block_size=1000, dtype="float64"), return_states=True)
    regime, f = out["states"]
    np.testing.assert_array_equal(f, 1.0)
    r = out["log_returns"]  # (H, 2, P)
    for k, v in ((0, 1e-4), (1, 4e-4)):
        assert r[:, 0][regime == k].var() == pytest.approx(v, rel=0.05)


@pytest.mark.parametrize("name", ["rates_up_200bp", "credit_spreads_400bp", "vol_spike", "combined_2008"])
def test_each_shock_raises_volatility_for_its_stated_horizon(world, name):
    n = world.n_assets
    months = SHOCK_DAYS // 21
    base = _index_returns(scenario_world_model(get_scenario("base"), world), n, 1000, SHOCK_DAYS)
    shocked = _index_returns(scenario_world_model(get_scenario(name), world), n, 1000, SHOCK_DAYS)
    for m in range(months):
        rows = slice(21 * m, 21 * (m + 1))
        d = shocked[rows].std(axis=0, ddof=1) - base[rows].std(axis=0, ddof=1)  # paired: the same random numbers
        assert d.mean() > 3 * d.std(ddof=1) / math.sqrt(d.size), (name, m, d.mean())


@pytest.mark.parametrize("name", ["vol_spike", "combined_2008"])
def test_allocator_and_baseline_books_differ_under_the_shock(bundled_world, name):
    """On the world calibrated on the allocator's own labels (the vol-labelled world: below)."""
    res = run_scenario(name, bundled_world, 1000, 252, SEED, settings=SETTINGS)
    for metric in ("annual_volatility", "max_drawdown"):
        d = res.metrics["allocator"][metric] - res.metrics["baseline"][metric]
        se = d.std(ddof=1) / math.sqrt(d.size)
        assert abs(d.mean()) > 3 * se, (name, metric, d.mean(), se)
    # the allocator de-risks: lower volatility, shallower drawdowns (drawdowns are negative numbers)
    assert res.metrics["allocator"]["annual_volatility"].mean() < res.metrics["baseline"]["annual_volatility"].mean()
    assert res.metrics["allocator"]["max_drawdown"].mean() > res.metrics["baseline"]["max_drawdown"].mean()


def test_monthly_path_of_wealth_snapshots():
    """Hand-computed: two paths over three months."""
    from alloc_assets.sim.scenarios.run import monthly_path

    w = np.array([[1.0, 1.0], [1.1, 0.9], [0.99, 0.81], [1.2, 0.9]])
    out = monthly_path(w)
    r = np.array([[0.1, -0.1], [-0.1, -0.1], [1.2 / 0.99 - 1, 0.9 / 0.81 - 1]])
    np.testing.assert_allclose(out["vol_annual"], [np.std(x, ddof=1) * math.sqrt(12) for x in r], atol=1e-12)
    np.testing.assert_allclose(out["drawdown_median"], [np.median([0.0, -0.1]), np.median([0.99 / 1.1 - 1, -0.19]),
                                                        np.median([0.0, -0.1])])
    np.testing.assert_allclose(out["wealth_median"], [1.0, 0.9, 1.05])


@pytest.mark.parametrize("name", ["vol_spike", "combined_2008"])
def test_books_differ_under_the_shock_when_the_world_ignores_the_allocators_labels(vol_labelled_world, name):
    """The allocator's edge under the shocks does not come from a world that switches on its own
    labels: on the realised-volatility world it still lowers volatility and drawdowns beyond 3 SE."""
    res = run_scenario(name, vol_labelled_world, 1000, 252, SEED, settings=SETTINGS)
    d_vol = res.metrics["allocator"]["annual_volatility"] - res.metrics["baseline"]["annual_volatility"]
    d_mdd = res.metrics["allocator"]["max_drawdown"] - res.metrics["baseline"]["max_drawdown"]
    assert d_vol.mean() < -3 * d_vol.std(ddof=1) / math.sqrt(d_vol.size), (name, d_vol.mean())
    assert d_mdd.mean() > 3 * d_mdd.std(ddof=1) / math.sqrt(d_mdd.size), (name, d_mdd.mean())
