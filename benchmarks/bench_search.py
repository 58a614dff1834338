"""Speed of the strategy search across simulated markets (``alloc_assets.sim.search``).

``bench_strategy_search``: the whole search, :func:`alloc_assets.sim.search.run.run_search` with 100
configurations (5 Latin-hypercube batches of 20, early stopping off so that all 100 run) x 5
scenarios x 1,000 paths x 1,260 days (5 years; plus the 252-day pre-history of the volatility
estimate), monthly rebalancing, every per-path metric and the objective. ``first_call_s`` is the
process's first search (compilation of the market and strategy kernels included), ``median_s``
the median of 3 more (steady state), ``compile_s`` their difference. Target: 30 s.

NumPy reference: :func:`tests.search.reference_search_numpy.evaluate_strategy_numpy`, ONE configuration on one
scenario's 1,000 paths (median of 3), and the implied speed ratio against JAX's evaluation of all
100 x 5 (``speedup_vs_numpy``: the whole search, simulation included; ``speedup_vs_numpy_evaluation``:
the evaluation part only). Peak memory (``peak_mb``) is added by ``benchmarks/run.py``.

CPU layout as in ``bench_sim``: before JAX is imported, ``XLA_FLAGS=--xla_force_host_platform_device_count=<cores>``
gives one device per core and each chunk of configurations is split over them with ``shard_map``.
On a GPU nothing changes (one device, 100 configurations a chunk).
"""

from __future__ import annotations

import os
import statistics
import time

N_PATHS = 1_000
HORIZON_DAYS = 1_260
BUDGET = 100
BATCH = 20
SEED = 2024
TARGET_S = 30.0


def _configure_host_devices() -> None:
    """One XLA host device per core (must run before JAX is imported)."""
    flag = f"--xla_force_host_platform_device_count={os.cpu_count() or 1}"
    current = os.environ.get("XLA_FLAGS", "")
    if "xla_force_host_platform_device_count" not in current:
        os.environ["XLA_FLAGS"] = f"{current} {flag}".strip()


def bench_strategy_search() -> dict:
    """100 configurations x 5 scenarios x 1,000 paths x 1,260 days; JAX vs one NumPy configuration."""
    _configure_host_devices()
    import jax
    import numpy as np

    from alloc_assets.sim.search.markets import search_scenario, simulate_market
    from alloc_assets.sim.search.rule import STRATEGY_METRICS, evaluate_strategies, strategy_params
    from alloc_assets.sim.search.run import run_search
    from alloc_assets.sim.search.space import plateau_reached
    from tests.search.reference_search_numpy import evaluate_strategy_numpy

    def search():
        return run_search(n_paths=N_PATHS, horizon_days=HORIZON_DAYS, seed=SEED, budget=BUDGET, batch_size=BATCH,
                            early_stopping=False)

    t0 = time.perf_counter()
    first = search()
    first_s = time.perf_counter() - t0
    times, evals, sims = [], [], []
    for _ in range(3):
        t0 = time.perf_counter()
        res = search()
        times.append(time.perf_counter() - t0)
        evals.append(res.timings_s["evaluate_s"])
        sims.append(res.timings_s["simulate_s"])
    median = statistics.median(times)
    assert all(np.array_equal(first.table[k], res.table[k]) for k in first.table), "the search is not reproducible"

    # NumPy: one configuration (the most robust one) on the base scenario's paths (the search's own)
    base = search_scenario("base")
    warm = first.settings["warmup_days"]
    paths = simulate_market(base, N_PATHS, warm + HORIZON_DAYS, SEED)
    eq, bd = np.asarray(paths.equity), np.asarray(paths.bond)
    r = first.best_robust
    cfg = (r["target_vol"], r["window_months"], r["risk_aversion"], int(r["weight_fn"]), r["cost_bps"])
    np_times = []
    for _ in range(3):
        t0 = time.perf_counter()
        ref = evaluate_strategy_numpy(eq, bd, *cfg, rate=base.rate, warmup_days=warm)
        np_times.append(time.perf_counter() - t0)
    np_one = statistics.median(np_times)
    got = evaluate_strategies(paths, strategy_params(*cfg), base.rate, warm)
    max_diff = max(float(np.max(np.abs(got[k][0] - ref[k]))) for k in STRATEGY_METRICS)
    n_evals = BUDGET * len(first.scenarios)
    obj = np.stack([first.table[f"{s}_objective"] for s in first.scenarios], axis=1)
    would_stop = next((n for n in range(2 * BATCH, BUDGET + 1, BATCH) if plateau_reached(obj[:n])), None)
    config_path_days = n_evals * N_PATHS * HORIZON_DAYS
    return {
        "median_s": median,
        "times_s": times,
        "target_s": TARGET_S,
        "meets_target": bool(median < TARGET_S),
        "first_call_s": first_s,
        "compile_s": max(first_s - median, 0.0),
        "meets_target_first_call": bool(first_s < TARGET_S),
        "simulate_s": statistics.median(sims),
        "evaluate_s": statistics.median(evals),
        "config_path_days_per_s": config_path_days / statistics.median(evals),
        "numpy_one_config_s": np_one,
        "numpy_one_config_times_s": np_times,
        "numpy_implied_search_s": np_one * n_evals,
        "speedup_vs_numpy": np_one * n_evals / median,
        "speedup_vs_numpy_evaluation": np_one * n_evals / statistics.median(evals),
        "numpy_max_abs_diff": max_diff,
        "configurations": BUDGET,
        "scenarios": len(first.scenarios),
        "n_paths": N_PATHS,
        "horizon_days": HORIZON_DAYS,
        "warmup_days": warm,
        "early_stop_would_trigger_at": would_stop,
        "best_robust": {k: (v if isinstance(v, (str, int)) else round(float(v), 4)) for k, v in r.items()
                        if k in ("config", "weight_fn_name", "target_vol", "window_months", "risk_aversion", "cost_bps",
                                 "robustness", "mean_objective")},
        "summary": first.summary,
        "device_count": len(jax.local_devices()),
        "backend": jax.default_backend(),
        "note": "median_s: the whole search (simulate 5 scenarios x 1,000 paths x 1,512 days, then 100 configurations "
                "in 5 batches of 20 on each, per-path metrics, objectives, robustness, sensitivity, summary), early "
                "stopping off, 3 repeats after a first call that includes compilation (first_call_s). numpy_one_config_s: "
                "evaluate_strategy_numpy (float64, loop over days) of one configuration on one scenario's 1,000 paths; "
                "speedup_vs_numpy = 500 x that / median_s.",
    }
