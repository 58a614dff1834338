"""Regime-aware allocation (sim/regime_allocation.py) and its asset ``regime_allocation``.

References: the two-asset minimum-variance closed form (interior and with a bound active), the
unconstrained ``Sigma^-1 1 / 1' Sigma^-1 1``, the mixture covariance against a Monte Carlo draw of
the mixture and the law of total covariance written out per element, and the hedge-ratio cap.
"""

from __future__ import annotations

import pickle

import dagster as dg
import numpy as np
import pytest

from alloc_assets.sim.portfolio import regime_allocation as ra
from alloc_assets.sim.models.world import WorldModel


def world_model() -> WorldModel:
    means = np.array([[6e-4, 4e-4, 3e-4], [2e-4, 2e-4, 1e-4], [-8e-4, -4e-4, 0.0], [-3e-3, -1e-3, 2e-4]])
    vols = np.array([0.015, 0.011, 0.007])
    covs = []
    for k in range(4):
        rho = 0.1 + 0.2 * k
        corr = rho + (1 - rho) * np.eye(3)
        s = vols * (1.0 + 0.8 * k)
        covs.append(corr * np.outer(s, s))
    trans = np.full((4, 4), 0.01) + np.diag([0.96] * 4)
    return WorldModel.create(trans, means, np.stack(covs), p0=np.array([0.5, 0.2, 0.2, 0.1]))


def test_two_asset_minimum_variance_matches_the_closed_form():
    s1, s2, rho = 0.20, 0.30, 0.25
    cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    w1 = (s2**2 - rho * s1 * s2) / (s1**2 + s2**2 - 2 * rho * s1 * s2)
    np.testing.assert_allclose(ra.min_variance_weights(cov), [w1, 1 - w1], atol=1e-12)
    # rho high enough that the closed form shorts asset 2: long-only puts everything in asset 1
    rho = 0.9
    cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    assert (s2**2 - rho * s1 * s2) / (s1**2 + s2**2 - 2 * rho * s1 * s2) > 1
    np.testing.assert_allclose(ra.min_variance_weights(cov), [1.0, 0.0], atol=1e-12)
    # with a cap of 0.6 on each weight the optimum of a convex parabola sits on the cap
    np.testing.assert_allclose(ra.min_variance_weights(cov, 0.0, 0.6), [0.6, 0.4], atol=1e-12)


def test_minimum_variance_is_the_unconstrained_closed_form_when_interior():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(6, 6))
    cov = a @ a.T / 6 + 0.5 * np.eye(6)
    x = np.linalg.solve(cov, np.ones(6))
    closed = x / x.sum()
    assert closed.min() > 0
    np.testing.assert_allclose(ra.min_variance_weights(cov, 0.0, 1.0), closed, atol=1e-10)
    # an active cap: no feasible direction lowers the variance (KKT: the gradient is equal on the
    # free weights, not larger at a lower bound, not smaller at an upper bound)
    cap = 0.9 * closed.max()
    w = ra.min_variance_weights(cov, 0.0, cap)
    g = 2 * cov @ w
    free = (w > 1e-9) & (w < cap - 1e-9)
    assert abs(w.sum() - 1) < 1e-12 and w.max() <= cap + 1e-12 and free.sum() >= 2
    np.testing.assert_allclose(g[free], g[free].mean(), rtol=1e-8)
    assert np.all(g[w >= cap - 1e-9] <= g[free].mean() + 1e-10)


def test_mixture_covariance_is_the_law_of_total_covariance():
    m = world_model()
    means, covs = np.asarray(m.means), m.covariances()
    p = np.array([0.4, 0.3, 0.2, 0.1])
    got = ra.mixture_covariance(means, covs, p)
    mu = sum(p[k] * means[k] for k in range(4))
    explicit = np.zeros((3, 3))
    for i in range(3):
        for j in range(3):
            # E[r_i r_j] - E[r_i] E[r_j] with E[r_i r_j | k] = Sigma_k,ij + mu_k,i mu_k,j
            explicit[i, j] = sum(p[k] * (covs[k][i, j] + means[k][i] * means[k][j]) for k in range(4)) - mu[i] * mu[j]
    np.testing.assert_allclose(got, explicit, rtol=1e-12)
    within = ra.mixture_covariance(means, covs, p, between=False)
    np.testing.assert_allclose(within, np.einsum("k,kij->ij", p, covs), rtol=1e-14)
    # Monte Carlo: draw the regime, then the normal return; scale the means up so the between
    # term is visible above the sampling error
    big = means * 40
    rng = np.random.default_rng(1)
    n = 400_000
    k = rng.choice(4, size=n, p=p)
    z = rng.standard_normal((n, 3))
    chol = np.linalg.cholesky(covs)
    draws = big[k] + np.einsum("nij,nj->ni", chol[k], z)
    mc = np.cov(draws, rowvar=False)
    exact = ra.mixture_covariance(big, covs, p)
    assert np.abs(exact - ra.mixture_covariance(big, covs, p, between=False)).max() > 10 * np.abs(mc - exact).max()
    np.testing.assert_allclose(mc, exact, rtol=0.02, atol=2e-6)


def test_hedge_ratio_is_one_and_a_half_times_stress_capped_at_one():
    assert ra.hedge_ratio([1.0, 0.0, 0.0, 0.0]) == (0.0, 0.0)
    h, s = ra.hedge_ratio([0.5, 0.2, 0.2, 0.1])
    assert s == pytest.approx(0.3) and h == pytest.approx(0.45)
    h, s = ra.hedge_ratio([0.2, 0.1, 0.4, 0.3])
    assert s == pytest.approx(0.7) and h == 1.0
    assert ra.hedge_ratio([0.4, 0.0, 0.2, 0.4])[0] == pytest.approx(0.9)
    assert ra.hedge_ratio([0.0, 0.0, 2 / 3, 1 / 3])[0] == 1.0
    assert ra.hedge_ratio([0.0, 1.0, 0.0, 0.0])[0] == 0.0  # ELEVATED alone raises no hedge


def test_regime_allocation_blends_regime_optima_with_todays_probabilities():
    m = world_model()
    p = np.array([0.5, 0.2, 0.2, 0.1])
    a = ra.regime_allocation(m, p, 0.0, 0.7)
    np.testing.assert_allclose(a.covs, m.covariances() * 252, rtol=1e-14)
    np.testing.assert_allclose(a.means, np.asarray(m.means) * 252, rtol=1e-14)
    for k in range(4):
        np.testing.assert_allclose(a.regime_weights[k], ra.min_variance_weights(a.covs[k], 0.0, 0.7), atol=1e-12)
    np.testing.assert_allclose(a.blend, p @ a.regime_weights, atol=1e-15)
    np.testing.assert_allclose(a.sigma_mixture, ra.mixture_covariance(np.asarray(m.means), m.covariances(), p) * 252, rtol=1e-12)
    np.testing.assert_allclose(a.mixture, ra.min_variance_weights(a.sigma_mixture, 0.0, 0.7), atol=1e-12)
    assert a.stress == pytest.approx(0.3) and a.hedge == pytest.approx(0.45)
    np.testing.assert_allclose(a.hedged, 0.55 * a.mixture, atol=1e-15)
    # the optimum of Sigma_t has the lowest volatility under Sigma_t of all the candidate books
    vols = a.volatilities()
    assert all(vols["weight_mixture"]["sigma_t"] <= vols[n]["sigma_t"] + 1e-12 for n in vols if n != "weight_hedged")
    # each regime's optimum is the least volatile book in its own regime
    for k, r in enumerate(ra.REGIMES):
        assert all(vols[f"weight_{r.lower()}"][r] <= vols[n][r] + 1e-12 for n in vols if n != "weight_hedged")
    # the lowest-volatility stock gains weight as the regimes become stressed (here: more correlated)
    assert a.regime_weights[3, 2] > a.regime_weights[0, 2]
    assert 0 < a.between_share < 0.05


def test_regime_allocation_asset_stores_the_table(tmp_path, alloc_home):
    from alloc_assets.defs.sim.resilience import RESILIENCE_ASSETS, regime_allocation
    from alloc_assets.defs.resources import RESOURCES
    from resources.simulation import RegimeAllocationSettings, SimulationSettings
    from resources.warehouse import DuckDBWarehouse

    assert regime_allocation in RESILIENCE_ASSETS and isinstance(RESOURCES["regime_settings"], RegimeAllocationSettings)
    sim_dir = tmp_path / "sim"
    sim_dir.mkdir()
    model = world_model()
    p_today = np.array([0.2, 0.1, 0.4, 0.3])  # differs from the model's p0: the asset uses p_today
    (sim_dir / "world_model.pkl").write_bytes(pickle.dumps({"model": model, "start": None, "p_today": p_today,
                                                            "last_date": "2022-12-28"}))
    wh = DuckDBWarehouse()
    result = dg.materialize([regime_allocation], instance=dg.DagsterInstance.ephemeral(),
                            resources={"warehouse": wh, "simulation": SimulationSettings(output_dir=str(sim_dir)),
                                       "regime_settings": RegimeAllocationSettings(max_weight=0.7)})
    assert result.success
    meta = result.asset_materializations_for_node("regime_allocation")[0].metadata
    direct = ra.regime_allocation(model, p_today, 0.0, 0.7)
    stored = wh.query("SELECT * FROM regime_allocation")
    assert stored["symbol"].to_list() == ["asset_0", "asset_1", "asset_2"]
    for name, w in direct.portfolios().items():
        np.testing.assert_allclose(stored[name].to_numpy(), w, atol=1e-14)
    np.testing.assert_allclose(stored["vol_crisis"].to_numpy(), np.sqrt(np.diag(model.covariances()[3]) * 252), rtol=1e-12)
    assert meta["hedge_ratio"].value == 1.0 and meta["stress"].value == pytest.approx(0.7)  # min(1, 1.5 x 0.7)
    assert stored["weight_hedged"].sum() == pytest.approx(0.0)
    assert meta["p_today"].value["CRISIS"] == pytest.approx(0.3)
    assert "| symbol | weight_normal |" in meta["weights"].value and "Sigma_t" in meta["portfolio_vols"].value
