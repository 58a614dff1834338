"""The strategy search through Dagster: ``strategy_search`` stores exactly what ``run_search`` computes."""

from __future__ import annotations

import dagster as dg
import numpy as np

from alloc_assets.defs.search.assets import FIGURES, strategy_search
from resources.simulation import SearchSettings
from resources.warehouse import DuckDBWarehouse

SMALL = dict(n_paths=64, horizon_days=252, seed=3, budget=20, batch_size=10, early_stopping=True)


def test_strategy_search_stores_the_search_its_figures_and_metadata(alloc_home):
    from alloc_assets.sim.search.run import run_search

    wh = DuckDBWarehouse()
    result = dg.materialize([strategy_search], instance=dg.DagsterInstance.ephemeral(),
                            resources={"warehouse": wh, "search": SearchSettings(**SMALL)})
    assert result.success
    meta = result.asset_materializations_for_node("strategy_search")[0].metadata

    direct = run_search(**SMALL)
    stored = wh.query("SELECT * FROM strategy_search ORDER BY config")
    assert stored.height == direct.n_evaluated == meta["n_evaluated"].value == 20
    assert stored.columns == list(direct.table)
    expected = {"config", "batch", "target_vol", "window_months", "risk_aversion", "cost_bps", "weight_fn",
                "weight_fn_name", "mean_objective", "robustness"}
    expected |= {f"{s}_{c}" for s in direct.scenarios for c in ("objective", "sharpe", "vol", "max_drawdown")}
    assert expected <= set(stored.columns) and len(direct.scenarios) == 5
    # bit-identical: same dtype, same bytes (the asset adds nothing)
    for col, values in direct.table.items():
        got = stored[col].to_numpy()
        if values.dtype.kind == "U":
            assert got.tolist() == values.tolist(), col
        else:
            assert got.dtype == values.dtype and got.tobytes() == values.tobytes(), col

    assert meta["stopped_early"].value == direct.stopped_early
    summary = meta["summary"].value
    assert all(line.strip() in summary for line in direct.summary.splitlines())
    robust = direct.best_robust
    assert meta["best_robust_config"].value["config"] == robust["config"]
    assert meta["best_robust_config"].value["weight_fn_name"] == robust["weight_fn_name"]
    assert f"#{robust['config']} {robust['weight_fn_name']}" in meta["best_robust"].value
    for s, row in direct.best_per_scenario.items():
        assert f"| {s} | {row['config']} | {row['weight_fn_name']} |" in meta["best_per_scenario"].value
    assert meta["robust_vs_best"].value.startswith("![robust vs best](data:image/png;base64,")
    assert {"simulate_s", "evaluate_s", "total_s", "figures_s", "allocation_path_s"} <= set(meta["timings_s"].value)
    assert meta["scenario_comparison"].value.startswith("![scenario comparison](data:image/png;base64,")
    assert meta["allocation_path"].value.startswith("![allocation path](data:image/png;base64,")
    # the allocation path: the best robust configuration's equity weight at day 252 (one year), per
    # scenario, median [5 %, 95 %] over the paths, recomputed here from the NumPy reference
    from alloc_assets.sim.search.run import SearchPlan
    from tests.search.reference_search_numpy import evaluate_strategy_numpy

    plan = SearchPlan(**{k: v for k, v in SMALL.items()})
    r = direct.best_robust
    table = meta["allocation_path_summary"].value
    assert "| scenario | day 252 |" in table
    for s in direct.scenarios:
        p = plan.simulate(s)
        w = evaluate_strategy_numpy(np.asarray(p.equity), np.asarray(p.bond), r["target_vol"], r["window_months"],
                                      r["risk_aversion"], r["weight_fn_name"], r["cost_bps"], plan.scenario(s).rate,
                                      plan.warmup_days, return_weights=True)["weights"][-1]
        q05, q50, q95 = np.quantile(w, [0.05, 0.5, 0.95])
        assert f"| {s} | {q50:.0%} [{q05:.0%}, {q95:.0%}] |" in table, (s, q05, q50, q95, table)

    figures = meta["figures"].value
    for kind, name in FIGURES.items():
        path = alloc_home / "search" / name
        assert figures[kind] == str(path) and path.read_bytes()[:4] == b"\x89PNG", kind
    best = (alloc_home / "search" / "best_strategies.md").read_text()
    assert figures["best_strategies"] == str(alloc_home / "search" / "best_strategies.md")
    assert "## Best robust configuration" in best and direct.summary.splitlines()[0] in best
    assert "## Allocation path of the best robust configuration" in best and table in best


def test_strategy_search_is_standalone_and_outside_refresh_job():
    from alloc_assets.definitions import defs
    from alloc_assets.defs.resources import RESOURCES

    key = dg.AssetKey("strategy_search")
    node = defs.resolve_assets_def("strategy_search")
    assert node.group_names_by_key[key] == "sim" and node.partitions_def is None
    assert not node.asset_deps[key]  # simulates its own markets: no upstream asset
    assert key not in defs.resolve_job_def("refresh_job").asset_layer.executable_asset_keys
    assert key not in defs.resolve_job_def("derive_job").asset_layer.executable_asset_keys
    assert isinstance(RESOURCES["search"], SearchSettings)
