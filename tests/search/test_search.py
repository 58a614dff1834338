"""Strategy search across simulated markets (``alloc_assets.sim.search``): the market hits its
targets, the JAX evaluation equals an independent NumPy one, parameters never recompile, the
search is reproducible, the sampler is a (sliced) Latin hypercube, closed-form limits, stopping."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from alloc_assets.sim.engine import metrics as sim_metrics
from alloc_assets.sim.search.markets import SEARCH_SCENARIOS, search_scenario, simulate_market, trace_count
from alloc_assets.sim.search.objectives import robustness_scores, spearman
from alloc_assets.sim.search.rule import (PARAMETERS, STRATEGY_METRICS, StrategyParams, equity_weight, evaluate_strategies,
                                          evaluator, strategy_params)
from alloc_assets.sim.search.run import SearchPlan, SearchResult, allocation_path, assemble_search, evaluate_unit, run_search
from alloc_assets.sim.search.space import SearchSpace, plateau_reached, sliced_latin_hypercube
from tests.search.reference_search_numpy import evaluate_strategy_numpy

WARM = 252  # default pre-history of the volatility estimate


# --------------------------------------------------------------------------------------------------
# the market


@pytest.mark.parametrize("scenario", SEARCH_SCENARIOS, ids=lambda s: s.name)
def test_scenario_hits_drift_and_volatility_targets(scenario):
    """Per-path annualised mean and variance of daily simple returns; the standard errors come from
    their spread across the (independent) paths, so they include the volatility clustering."""
    n_paths, n_days = 2000, 252 * 5
    p = simulate_market(scenario, n_paths, n_days, 11)
    assert p.equity.shape == (n_days, n_paths) and p.equity.dtype == np.float32
    re = np.asarray(p.equity, dtype=np.float64)
    rb = np.asarray(p.bond, dtype=np.float64)
    drift = re.mean(axis=0) * 252
    var = re.var(axis=0, ddof=1) * 252
    se_drift = drift.std(ddof=1) / np.sqrt(n_paths)
    se_var = var.std(ddof=1) / np.sqrt(n_paths)
    assert abs(drift.mean() - scenario.equity_drift) < 3 * se_drift, (drift.mean(), se_drift)
    assert abs(var.mean() - scenario.equity_vol**2) < 3 * se_var, (np.sqrt(var.mean()), se_var)
    # vol itself (delta method): the same test in volatility units
    assert abs(np.sqrt(var.mean()) - scenario.equity_vol) < 3 * se_var / (2 * scenario.equity_vol)
    # the bond leg earns the rate on average (y starts at the rate and mean-reverts to it)
    bond = rb.mean(axis=0) * 252
    assert abs(bond.mean() - scenario.rate) < 3 * bond.std(ddof=1) / np.sqrt(n_paths)
    assert 0.06 < np.sqrt(rb.var(axis=0, ddof=1).mean() * 252) < 0.08  # ~ duration x yield vol = 7 %


@pytest.mark.parametrize("name", ["base", "bear"])
def test_shock_correlations_are_the_documented_ones(name):
    """Recover W1 (equity), W2 (variance) and W3 (yield) from the simulated states: corr(W1, W2) is
    Heston's rho (-0.7) and corr(W1, W3) the scenario's equity-rates correlation."""
    sc = search_scenario(name)
    p = simulate_market(sc, 1000, 252, 5, return_states=True)
    dt = 1 / 252
    x = np.log1p(np.asarray(p.equity, dtype=np.float64))
    v = np.asarray(p.variance, dtype=np.float64)
    y = np.asarray(p.yields, dtype=np.float64)
    v_prev = np.vstack([np.full((1, v.shape[1]), sc.equity_vol**2), v[:-1]])
    y_prev = np.vstack([np.full((1, y.shape[1]), sc.rate), y[:-1]])
    vp = np.maximum(v_prev, 0.0)
    ok = vp > 1e-3 * sc.equity_vol**2
    sq = np.sqrt(vp * dt)
    w1 = (x - (sc.log_drift - vp / 2) * dt)[ok] / sq[ok]
    w2 = (v - v_prev - sc.kappa * (sc.equity_vol**2 - vp) * dt)[ok] / (sc.vol_of_var * sq[ok])
    w3 = ((y - y_prev - sc.yield_kappa * (sc.rate - y_prev) * dt) / (sc.yield_vol * np.sqrt(dt)))[ok]
    assert abs(np.std(w1) - 1) < 0.02 and abs(np.std(w3) - 1) < 0.02
    assert abs(np.corrcoef(w1, w2)[0, 1] - sc.rho) < 0.02
    assert abs(np.corrcoef(w1, w3)[0, 1] - sc.equity_rates_corr) < 0.02
    # the bond return is carry minus duration times the yield change
    rb = np.asarray(p.bond, dtype=np.float64)
    np.testing.assert_allclose(rb, y_prev * dt - sc.duration * (y - y_prev), atol=2e-6)


def test_common_random_numbers_across_scenarios():
    """The same key gives the same normals to every scenario: the yields of two scenarios with the
    same equity-rates correlation move by the same shocks (only the rate differs)."""
    base, low = search_scenario("base"), search_scenario("calm")
    a = simulate_market(base, 50, 60, 3, return_states=True)
    b = simulate_market(low, 50, 60, 3, return_states=True)
    np.testing.assert_array_equal(np.asarray(a.yields), np.asarray(b.yields))  # same rate, same corr, same shocks
    c = simulate_market(base, 50, 60, 4, return_states=True)
    assert not np.array_equal(np.asarray(a.yields), np.asarray(c.yields))


# --------------------------------------------------------------------------------------------------
# the strategy rule: JAX against NumPy, closed forms, compilation


@pytest.fixture(scope="module")
def small_paths():
    sc = search_scenario("turbulent")
    return sc, simulate_market(sc, 300, WARM + 21 * 24, 21)


CONFIGS = [  # (tau, window months, lambda, weight function, cost bp): every function, with costs
    (0.10, 12.0, 2.0, "vol_ratio", 10.0),
    (0.15, 6.5, 1.0, "vol_ratio_squared", 20.0),
    (0.08, 23.0, 0.7, "linear_taper", 5.0),
    (0.12, 9.3, 4.5, "logistic_taper", 15.0),
    (0.25, 18.0, 3.0, "linear_taper", 0.0),
]


def test_jax_evaluation_equals_numpy_reference(small_paths):
    """float32 JAX against the float64 NumPy loop on the same (float32) paths. The rounding of
    float32 (eps 6e-8) compounds over ~800 sequential daily updates (EWMA, drifting weights,
    wealth): at most ~1e-4 relative, ~1e-6 observed; every rule is continuous in sigma_hat, so no
    rounding flips a branch. Hence rtol 1e-4 and atol 1e-5 (returns and drawdowns ~1e-2)."""
    sc, p = small_paths
    params = strategy_params(*zip(*CONFIGS))
    got = evaluate_strategies(p, params, sc.rate, WARM, devices=1)
    eq, bd = np.asarray(p.equity), np.asarray(p.bond)
    for i, cfg in enumerate(CONFIGS):
        ref = evaluate_strategy_numpy(eq, bd, *cfg, rate=sc.rate, warmup_days=WARM)
        for k in STRATEGY_METRICS:
            np.testing.assert_allclose(got[k][i], ref[k], rtol=1e-4, atol=1e-5, err_msg=f"{cfg} {k}")
    assert np.all(got["cost_per_year"][0] > 0) and np.all(got["cost_per_year"][4] == 0)
    w = got["avg_equity_weight"]
    assert np.all((w >= 0) & (w <= 1)) and w.std() > 0


def test_constant_weight_limits_are_the_legs_exactly(small_paths):
    """tau huge: w = min(1, tau / sigma_hat) = 1 and the strategy IS the equity path; tau 0 under
    linear or the logistic taper: w = 0, the bond leg. A 0/1 book never drifts, so it never trades:
    even a 20 bp cost costs nothing."""
    sc, p = small_paths
    params = strategy_params([1e6, 1e6, 0.0, 0.0], 12.0, 2.0,
                               ["vol_ratio", "linear_taper", "linear_taper", "logistic_taper"], [0.0, 20.0, 20.0, 0.0])
    out = evaluate_strategies(p, params, sc.rate, WARM, devices=1, return_daily=True)
    equity, bond = np.asarray(p.equity)[WARM:], np.asarray(p.bond)[WARM:]
    for i in (0, 1):
        np.testing.assert_array_equal(out["returns"][i], equity)
        assert np.all(out["avg_equity_weight"][i] == 1.0)
    for i in (2, 3):
        np.testing.assert_array_equal(out["returns"][i], bond)
        assert np.all(out["avg_equity_weight"][i] == 0.0)
    assert np.all(out["cost_per_year"] == 0.0)
    # and the metrics of the equity leg are the project's per-path metrics of that path
    ref = {k: np.asarray(v) for k, v in jax.jit(sim_metrics.path_metrics)(equity, sc.rate / 252).items()}
    for k in ("annual_return", "annual_volatility", "sharpe", "max_drawdown", "var_95", "cvar_95"):
        np.testing.assert_allclose(out[k][0], ref[k], rtol=1e-4, atol=1e-6, err_msg=k)


def test_weight_functions():
    sig, tau = np.array([0.05, 0.10, 0.20, 0.40]), 0.10
    w = lambda fn, lam=2.0: np.asarray(equity_weight(sig, tau, lam, fn))  # noqa: E731
    np.testing.assert_allclose(w(0), [1.0, 1.0, 0.5, 0.25], rtol=1e-6)
    np.testing.assert_allclose(w(1), [1.0, 1.0, 0.25, 0.0625], rtol=1e-6)
    np.testing.assert_allclose(w(2), [1.0, 1.0, 0.5, 0.0], rtol=1e-6)  # 1 - (sig - tau) / (2 tau)
    np.testing.assert_allclose(w(3), 1 / (1 + np.exp(2.0 * (sig - tau) / tau)), rtol=1e-6)


def test_changing_any_parameter_does_not_recompile():
    """One compilation for every value of every strategy parameter (and every scenario's rate):
    counted both by the Python trace counter and by the jitted function's own cache."""
    sc = search_scenario("base")
    p = simulate_market(sc, 37, WARM + 63, 2)  # a shape no other test uses
    fn = evaluator(1)
    before = trace_count()
    base = dict(target_vol=0.10, window_months=12.0, risk_aversion=2.0, weight_fn=2, cost_bps=5.0)
    variants = [{}, {"cost_bps": 17.0}, {"target_vol": 0.06}, {"window_months": 22.5}, {"risk_aversion": 0.6},
                {"weight_fn": 3}, {"weight_fn": 0}, {"weight_fn": 1, "target_vol": 0.19, "cost_bps": 0.0}]
    results = []
    for i, change in enumerate(variants):
        kw = {**base, **change}
        params = strategy_params(*[[kw[k]] * 4 for k in ("target_vol", "window_months", "risk_aversion", "weight_fn", "cost_bps")])
        results.append(evaluate_strategies(p, params, sc.rate, WARM, devices=1)["sharpe"])
        if i == 0:
            assert trace_count() == before + 1
            cache = fn._cache_size()
    evaluate_strategies(p, params, 0.05, WARM, devices=1)  # another scenario's rate
    assert trace_count() == before + 1
    assert fn._cache_size() == cache
    assert all(not np.array_equal(results[0], r) for r in results[1:])  # each change did change something
    # simulating another scenario reuses the market kernel too
    n_sim = trace_count("simulate")
    for s in SEARCH_SCENARIOS:
        simulate_market(s, 37, WARM + 63, 9)
    assert trace_count("simulate") == n_sim


# --------------------------------------------------------------------------------------------------
# sampling, stopping, robustness


def test_sliced_latin_hypercube_one_point_per_stratum():
    n_slices, size, dims = 5, 20, 5
    u = sliced_latin_hypercube(n_slices, size, dims, np.random.default_rng(3))
    assert u.shape == (n_slices, size, dims) and np.all((u >= 0) & (u < 1))
    for d in range(dims):
        whole = np.sort(np.floor(u[..., d].ravel() * n_slices * size).astype(int))
        np.testing.assert_array_equal(whole, np.arange(n_slices * size))  # the budget: one per fine stratum
        for b in range(n_slices):
            part = np.sort(np.floor(u[b, :, d] * size).astype(int))
            np.testing.assert_array_equal(part, np.arange(size))  # each batch: one per coarse stratum
    space = SearchSpace()
    params = space.scale(u[0])
    for name in PARAMETERS[:4]:
        lo, hi = getattr(space, name)
        x = np.asarray(getattr(params, name), dtype=np.float64)
        strata = np.sort(np.floor((x - lo) / (hi - lo) * size).astype(int))
        np.testing.assert_array_equal(strata, np.arange(size))
    np.testing.assert_array_equal(np.bincount(params.weight_fn, minlength=4), [5, 5, 5, 5])  # stratified
    other = sliced_latin_hypercube(n_slices, size, dims, np.random.default_rng(4))
    assert not np.array_equal(u, other)


def test_stopping_rule_stops_on_a_plateau():
    # improves by 5 % every 20 configurations up to 60, then flat
    best = np.concatenate([np.linspace(1.0, 1.15, 60), np.full(60, 1.15)])
    rng = np.random.default_rng(0)
    seq = best - rng.uniform(0, 0.3, best.size) * (np.arange(best.size) % 3 != 0)  # noisy, running max = best
    stops = [n for n in range(20, 121, 20) if plateau_reached(seq[:n])]
    assert stops[0] == 80  # first batch boundary where the last 20 brought < 1 %
    assert not plateau_reached(seq[:20])  # nothing to compare with yet
    rising = np.linspace(0.5, 2.0, 120)
    assert not any(plateau_reached(rising[:n]) for n in range(20, 121, 20))
    # several scenarios: stop only when none of them improves
    two = np.stack([seq, np.concatenate([np.linspace(1, 1.1, 100), np.full(20, 1.1)])], axis=1)
    assert not plateau_reached(two[:80]) and plateau_reached(two[:120])
    # negative objectives and the absolute floor near 0
    assert plateau_reached(np.full(40, -0.5))
    assert not plateau_reached(np.r_[np.full(20, -0.5), np.full(20, -0.49)])  # +0.01 >= 1 % of 0.5
    assert plateau_reached(np.r_[np.full(20, 0.0), np.full(20, 0.00005)])  # < 1 % of the floor 0.01


def test_robustness_definition():
    obj = np.array([[1.0, -1.0, 0.0], [0.85, -1.15, 0.0], [0.7, -1.3, -0.1], [0.8, -1.2, 0.0]])
    # best: 1.0 (threshold 0.8), -1.0 (threshold -1.2), 0.0 (ties only)
    np.testing.assert_allclose(robustness_scores(obj), [1.0, 1.0, 0.0, 1.0])
    assert spearman(np.arange(10.0), np.arange(10.0) ** 3) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------------
# the search


SMALL = dict(n_paths=48, horizon_days=126, warmup_days=63, budget=40, batch_size=20, early_stopping=False)


def _same_table(a: SearchResult, b: SearchResult) -> bool:
    return a.table.keys() == b.table.keys() and all(np.array_equal(a.table[k], b.table[k]) for k in a.table)


def test_search_is_reproducible_and_seeded():
    a = run_search(seed=5, **SMALL)
    b = run_search(seed=5, **SMALL)
    c = run_search(seed=6, **SMALL)
    assert _same_table(a, b) and a.summary == b.summary and a.best_robust == b.best_robust
    assert not _same_table(a, c)
    assert not np.array_equal(a.table["base_objective"], c.table["base_objective"])
    # shape of the result
    assert a.n_evaluated == 40 and len(a.table["config"]) == 40 and not a.stopped_early
    for s in a.scenarios:
        i = a.best_per_scenario[s]["config"]
        assert a.table[f"{s}_objective"][i] == a.table[f"{s}_objective"].max()
    r = a.table["robustness"]
    assert np.all((r >= 0) & (r <= 1)) and a.best_robust["robustness"] == r.max()
    assert set(a.sensitivity) == {"target_vol", "window_months", "risk_aversion", "cost_bps"}
    assert all(set(v) == set(a.scenarios) | {"mean"} for v in a.sensitivity.values())
    assert "Most robust" in a.summary and "base:" in a.summary
    for s in a.scenarios:  # the penalised objective never exceeds the mean Sharpe
        assert np.all(a.table[f"{s}_objective"] <= a.table[f"{s}_sharpe"] + 1e-12)


def test_search_stops_early_when_the_objective_plateaus():
    res = run_search(seed=5, **{**SMALL, "budget": 100, "early_stopping": True, "stop_rel_tol": 10.0})
    assert res.stopped_early and res.n_evaluated == 40  # the first possible check


@pytest.mark.slow
def test_sharded_over_two_host_devices_gives_the_same_numbers():
    """The same evaluation split over two XLA host devices (shard_map) and on one (bitwise)."""
    code = textwrap.dedent("""
        import numpy as np
        from alloc_assets.sim.search.markets import search_scenario, simulate_market
        from alloc_assets.sim.search.rule import evaluate_strategies
        from alloc_assets.sim.search.space import SearchSpace, sliced_latin_hypercube
        import jax
        assert len(jax.devices()) == 2
        sc = search_scenario("bear")
        p = simulate_market(sc, 64, 252 + 126, 1)
        params = SearchSpace().scale(sliced_latin_hypercube(1, 8, 5, np.random.default_rng(0))[0])
        one = evaluate_strategies(p, params, sc.rate, devices=1)
        two = evaluate_strategies(p, params, sc.rate, devices=2)
        assert all(np.array_equal(one[k], two[k], equal_nan=True) for k in one), "differ"
        print("OK")
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0 and "OK" in out.stdout, out.stderr[-3000:]


# --------------------------------------------------------------------------------------------------
# allocation path of one configuration


def test_allocation_path_is_the_cross_path_summary_of_the_numpy_weights(small_paths):
    """The weight held each day (JAX, float32) against the independent NumPy loop's weights; the
    band is np.quantile of those over the paths, and the weights average to avg_equity_weight."""
    sc, p = small_paths
    cfg = CONFIGS[3]  # logistic_taper, 15 bp: rebalances move the weight, the book drifts in between
    band = allocation_path(p, strategy_params(*cfg), sc.rate, WARM)
    ref = evaluate_strategy_numpy(np.asarray(p.equity), np.asarray(p.bond), *cfg, rate=sc.rate, warmup_days=WARM,
                                    return_weights=True)
    w = ref["weights"]  # (horizon, paths)
    horizon = p.n_days - WARM
    assert w.shape == (horizon, p.n_paths) and set(band) == {"day", "p05", "p50", "p95", "mean"}
    np.testing.assert_array_equal(band["day"], np.arange(1, horizon + 1))
    for key, q in (("p05", 0.05), ("p50", 0.5), ("p95", 0.95)):
        np.testing.assert_allclose(band[key], np.quantile(w, q, axis=1), rtol=1e-4, atol=1e-5, err_msg=key)
    np.testing.assert_allclose(band["mean"], w.mean(axis=1), rtol=1e-4, atol=1e-5)
    assert np.all(band["p05"] <= band["p50"]) and np.all(band["p50"] <= band["p95"])
    assert np.all(band["p95"] - band["p05"] > 0)  # the paths disagree: a real band
    np.testing.assert_allclose(w.mean(axis=0), ref["avg_equity_weight"], rtol=1e-12)
    # within a month the weight only drifts, at a rebalance it jumps to the rule's target
    full = evaluate_strategies(p, strategy_params(*cfg), sc.rate, WARM, devices=1, return_weights=True)
    np.testing.assert_allclose(full["weights"][0].mean(axis=0), full["avg_equity_weight"][0], rtol=1e-5)


def test_allocation_path_limits(small_paths):
    """tau huge under vol_ratio: all in equities every day; tau 0 under linear_taper: none."""
    sc, p = small_paths
    ones = allocation_path(p, strategy_params(1e6, 12.0, 2.0, "vol_ratio", 5.0), sc.rate, WARM)
    zeros = allocation_path(p, strategy_params(0.0, 12.0, 2.0, "linear_taper", 5.0), sc.rate, WARM)
    for key in ("p05", "p50", "p95", "mean"):
        assert np.all(ones[key] == 1.0) and np.all(zeros[key] == 0.0), key
    with pytest.raises(ValueError):
        allocation_path(p, strategy_params([0.1, 0.2], 12.0, 2.0, 0, 5.0), sc.rate, WARM)


# --------------------------------------------------------------------------------------------------
# units of work: what a distributed run evaluates and assembles


def test_a_configurations_numbers_do_not_depend_on_its_batch_mates():
    """A distributed unit recomputes a batch in another process: each configuration's numbers must
    depend only on itself and the paths. Same-shape calls (the batch size) with other
    configurations around it, or at another position, give the same bits."""
    plan = SearchPlan(n_paths=48, horizon_days=126, warmup_days=63, budget=40, batch_size=20, seed=5)
    sc, p = plan.scenario("bear"), plan.simulate("bear")
    P, Q = plan.batch_params(0), plan.batch_params(1)
    ref = evaluate_strategies(p, P, sc.rate, 63)
    pos = np.arange(20)
    mixed = StrategyParams(*[np.where(pos == 3, getattr(P, f), getattr(Q, f))
                               for f in ("target_vol", "window_months", "risk_aversion", "weight_fn", "cost_bps")])
    other = evaluate_strategies(p, mixed, sc.rate, 63)
    moved = evaluate_strategies(p, P.take(np.roll(pos, 5)), sc.rate, 63)  # config 3 now at position 8
    for k in STRATEGY_METRICS:
        assert np.array_equal(ref[k][3], other[k][3]) and np.array_equal(ref[k][3], moved[k][8]), k
        assert not np.array_equal(ref[k][4], other[k][4]) or k == "cost_per_year", k  # the mates did change


def test_units_assemble_into_run_search_bit_for_bit():
    """Every (scenario, batch) unit evaluated on its own (simulating its scenario again), handed
    over in a shuffled order and for every batch (speculatively past the stop): the assembled
    result is run_search's, bit for bit, with the same early stop."""
    kw = dict(n_paths=48, horizon_days=126, warmup_days=63, budget=100, batch_size=20, seed=5, stop_rel_tol=10.0)
    direct = run_search(**kw)
    plan = SearchPlan(**kw)
    units = plan.units()
    assert len(units) == 5 * 5 and units[:5] == [(s.name, 0) for s in SEARCH_SCENARIOS]
    rng = np.random.default_rng(0)
    done = {units[i]: evaluate_unit(plan, *units[i]) for i in rng.permutation(len(units))}
    got = assemble_search(plan, done)
    assert direct.stopped_early and got.stopped_early and got.n_evaluated == direct.n_evaluated == 40
    assert got.table.keys() == direct.table.keys()
    for k, v in direct.table.items():
        assert got.table[k].dtype == v.dtype and np.array_equal(got.table[k], v), k
    assert got.summary == direct.summary and got.best_robust == direct.best_robust
    for s in plan.scenario_names:  # the band is recomputed on the re-simulated paths: the same
        for key, arr in direct.allocation_path[s].items():
            assert np.array_equal(got.allocation_path[s][key], arr), (s, key)
    # batches before the stop are required
    with pytest.raises(KeyError):
        assemble_search(plan, {u: r for u, r in done.items() if u != ("bull", 1)}, allocation_path=False)
    # without early stopping every batch counts
    full = assemble_search(SearchPlan(**{**kw, "early_stopping": False}), done, allocation_path=False)
    assert full.n_evaluated == 100 and not full.stopped_early
    np.testing.assert_array_equal(full.table["base_objective"][:40], direct.table["base_objective"])
