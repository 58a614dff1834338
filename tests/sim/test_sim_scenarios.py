"""Scenarios are the documented changes of the world model; the dashboard and figures come out of a
small run; the strategies' per-path results do not depend on the chunk size."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alloc_assets.sim.engine.kernel import SimSettings
from alloc_assets.sim.models.world import stationary_distribution
from alloc_assets.sim.scenarios.catalogue import (
    CORRELATION_SHARE,
    EQUITY_VOL_MULTIPLIER,
    RATES_DURATION,
    RATES_VOL_MULTIPLIER,
    SHOCK_DAYS,
    SCENARIO_NAMES,
    SCENARIOS,
    get_scenario,
)
from alloc_assets.sim.scenarios.run import run_all_scenarios, run_scenario
from alloc_assets.sim.scenarios.scenario_world import scenario_cash_rate, scenario_world_model

SMALL = SimSettings(block_size=16, chunk_paths=64)


@pytest.fixture(scope="module")
def world(bundled_world):
    return bundled_world


@pytest.mark.parametrize("name", ["base", "bull", "bear", "high_vol", "low_vol"])
def test_parameter_scenarios_hit_their_targets(world, name):
    spec = get_scenario(name)
    model = scenario_world_model(spec, world)
    n = world.n_assets
    assert model.n_assets == n + 1
    # the drift and volatility targets are checked on simulated paths in tests/test_sim_stress.py
    covs = model.covariances()
    w = np.full(n, 1.0 / n)
    for k in range(4):  # corr(equal-weight equities, rates sleeve) in every regime
        ew_var = w @ covs[k, :n, :n] @ w
        corr = (w @ covs[k, :n, n]) / math.sqrt(ew_var * covs[k, n, n])
        assert corr == pytest.approx(spec.corr_equity_rates, abs=1e-9)
    np.testing.assert_allclose(model.p0, stationary_distribution(np.asarray(world.transition)), atol=1e-12)
    np.testing.assert_array_equal(model.jump, 0.0)


def test_shocks_are_the_documented_changes(world):
    """The shocks' sizes (shocks persist so the allocator has something to react to: the price
    moves are spread over SHOCK_DAYS, the volatility is a Heston state; their effect on paths is in
    test_sim_stress)."""
    n = world.n_assets
    rates = scenario_world_model(get_scenario("rates_up_200bp"), world)
    assert np.exp(rates.jump[:n]) == pytest.approx(1 - 0.10) and np.exp(rates.jump[n]) == pytest.approx(1 - RATES_DURATION * 0.02)
    assert float(rates.shock_days) == SHOCK_DAYS == 63
    assert float(rates.var0) == pytest.approx(EQUITY_VOL_MULTIPLIER**2) and rates.vol_multiplier0[n] == RATES_VOL_MULTIPLIER
    np.testing.assert_array_equal(rates.var_exposure, np.r_[np.ones(n), 0.0])  # the variance factor moves the equities only
    assert float(rates.var_kappa) * 252 == pytest.approx(2.0) and float(rates.var_xi) * math.sqrt(252) == pytest.approx(0.3 / 0.2)
    assert scenario_cash_rate(get_scenario("rates_up_200bp")) == pytest.approx(0.05)
    credit = scenario_world_model(get_scenario("credit_spreads_400bp"), world)
    assert np.exp(credit.jump[0]) == pytest.approx(1 - 0.16) and np.exp(credit.jump[n]) == pytest.approx(1 + RATES_DURATION * 0.005)
    np.testing.assert_array_equal(credit.p0, [0, 0, 1, 0])
    spike = scenario_world_model(get_scenario("vol_spike"), world)
    covs = spike.covariances()
    w = np.full(n, 1.0 / n)
    # day 1: the index variance is the CRISIS regime's x var0 plus the common shock's (the correlation jump)
    day1_var = float(spike.var0) * (w @ covs[3, :n, :n] @ w) + float(spike.factor_load[0]) ** 2
    assert math.sqrt(252 * day1_var) == pytest.approx(0.65)
    assert float(spike.factor_load[0]) ** 2 == pytest.approx(CORRELATION_SHARE * 0.65**2 / 252)
    assert spike.vol_multiplier0[n] == 1.0 and float(spike.factor_load[n]) == 0.0
    np.testing.assert_array_equal(spike.jump, 0.0)
    combined = scenario_world_model(get_scenario("combined_2008"), world)
    assert np.exp(combined.jump[n]) == pytest.approx(1 + RATES_DURATION * 0.01)
    today = scenario_world_model(get_scenario("from_today"), world)
    np.testing.assert_allclose(today.means[:, :n], world.means)
    np.testing.assert_allclose(today.p0, world.p0)
    assert set(SCENARIO_NAMES) >= {"base", "bull", "bear", "high_vol", "low_vol", "rates_up_200bp", "credit_spreads_400bp",
                                   "vol_spike", "combined_2008", "from_today"}
    with pytest.raises(ValueError, match="unknown scenario"):
        get_scenario("nope")


def test_dashboard_rows_and_figures_from_a_small_run(world):
    results, rows = run_all_scenarios(world, 64, 63, 5, names=["base", "combined_2008"], settings=SMALL)
    assert [(r["scenario"], r["book"]) for r in rows] == [
        ("base", "baseline"), ("base", "allocator"), ("combined_2008", "baseline"), ("combined_2008", "allocator")]
    for r in rows:
        assert 0.0 <= r["p_drawdown_30"] <= r["p_drawdown_20"] <= 1.0
        assert r["cvar_95"] < 0 and r["n_paths"] == 64 and r["horizon_days"] == 63
    assert rows[0]["baseline_sharpe"] == rows[0]["stressed_sharpe"] == rows[2]["baseline_sharpe"]
    json.dumps(rows)  # JSON-safe (None where the median path has not recovered)
    res = results["combined_2008"]
    assert res.summary["baseline"]["max_drawdown_median"] < results["base"].summary["baseline"]["max_drawdown_median"]
    assert res.wealth_quantiles["allocator"].shape == (5, len(res.wealth_days))
    assert res.provenance["dtype"] == "float32"
    for png in (res.fan_chart_png(), res.drawdown_png()):
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert res.dashboard_rows(results["base"])[0]["scenario"] == "combined_2008"


def test_strategy_results_do_not_depend_on_the_chunk_size(world):
    a = run_scenario("base", world, 64, 63, 5, settings=SMALL)  # 4 blocks per call (the dashboard test's compile)
    b = run_scenario("base", world, 64, 63, 5, settings=SimSettings(block_size=16, chunk_paths=16))  # 1 block per call
    for book in ("baseline", "allocator"):
        for name, values in a.metrics[book].items():
            np.testing.assert_array_equal(values, b.metrics[book][name], err_msg=f"{book} {name}")
    assert set(SCENARIOS) == set(SCENARIO_NAMES)
