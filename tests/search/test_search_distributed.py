"""The strategy search fanned out as parallel Dagster steps, one per (scenario, batch) unit, and
collected into ``strategy_search``: in process, and on a real Dask cluster (a scheduler and two
worker processes on loopback), the stored table equals the single-process ``run_search`` bit for bit."""

from __future__ import annotations

import os

import dagster as dg
import pytest

from alloc_assets.defs.search.assets import FIGURES, search_fanout_job
from resources.simulation import SearchSettings
from resources.warehouse import DuckDBWarehouse

SCENARIOS = ("base", "bear")
SMALL = dict(n_paths=50, horizon_days=252, seed=3, budget=20, batch_size=10, early_stopping=True)
SHAPE = dict(scenarios=list(SCENARIOS), budget=SMALL["budget"], batch_size=SMALL["batch_size"])


def _reference():
    from alloc_assets.sim.search.markets import search_scenario
    from alloc_assets.sim.search.run import run_search

    return run_search(scenarios=tuple(search_scenario(s) for s in SCENARIOS), **SMALL)


def _assert_same_table(stored, direct) -> None:
    assert stored.height == direct.n_evaluated and stored.columns == list(direct.table)
    for col, values in direct.table.items():
        got = stored[col].to_numpy()
        if values.dtype.kind == "U":
            assert got.tolist() == values.tolist(), col
        else:
            assert got.dtype == values.dtype and got.tobytes() == values.tobytes(), col


def test_fanout_job_shape_and_in_process_run_equal_run_search(alloc_home):
    job = search_fanout_job(**SHAPE)
    names = {n.name for n in job.nodes}
    assert names == {f"search_unit__{s}__b{b}" for s in SCENARIOS for b in (0, 1)} | {"collect_strategy_search"}
    wh = DuckDBWarehouse()
    result = job.execute_in_process(resources={"warehouse": wh, "search": SearchSettings(**SMALL)})
    assert result.success
    direct = _reference()
    _assert_same_table(wh.query("SELECT * FROM strategy_search ORDER BY config"), direct)
    (mat,) = result.asset_materializations_for_node("collect_strategy_search")
    assert mat.asset_key == dg.AssetKey("strategy_search") and mat.metadata["n_units"].value == 4
    assert mat.metadata["best_robust_config"].value["config"] == direct.best_robust["config"]
    for kind, name in FIGURES.items():
        assert (alloc_home / "search" / name).read_bytes()[:4] == b"\x89PNG", kind

    # a resource that disagrees with the job's shape fails before evaluating anything
    wrong = job.execute_in_process(resources={"warehouse": wh, "search": SearchSettings(**{**SMALL, "batch_size": 5})},
                                   raise_on_error=False)
    assert not wrong.success


def test_registered_fanout_job_runs_in_parallel_processes_by_default():
    from alloc_assets.definitions import defs

    job = defs.resolve_job_def("strategy_search_fanout_job")
    assert job.executor_def is dg.multiprocess_executor  # the Definitions' default stays in_process
    assert defs.resolve_job_def("refresh_job").executor_def is dg.in_process_executor
    assert len(job.nodes) == 5 * 5 + 1  # 5 scenarios x 100 / 20 batches, and the collect step


def test_dask_job_can_pin_the_collect_step_to_the_warehouse_worker():
    """The collect step writes the DuckDB file: collect_resources becomes dagster-dask's resource
    requirement of that step only (Dask then runs it on a worker started with those resources)."""
    pytest.importorskip("dagster_dask")
    from dagster_dask.executor import get_dask_resource_requirements

    from alloc_assets.defs.search.assets import search_dask_job

    job = search_dask_job(collect_resources={"warehouse": 1}, **SHAPE)
    assert job.executor_def.name == "dask"
    assert get_dask_resource_requirements(job.graph.node_named("collect_strategy_search").tags) == {"warehouse": 1}
    assert get_dask_resource_requirements(job.graph.node_named("search_unit__base__b0").tags) == {}


@pytest.mark.timeout(420)
def test_fanout_on_a_dask_cluster_equals_run_search_bit_for_bit(alloc_home, tmp_path):
    """A real scheduler and two worker processes on 127.0.0.1; Dagster's Dask executor submits the
    four unit steps and the collect step to it; the run's storage is a filesystem instance that
    every process shares. The stored table is run_search's, bit for bit."""
    distributed = pytest.importorskip("distributed")
    pytest.importorskip("dagster_dask")

    job = dg.build_reconstructable_job("alloc_assets.defs.search.assets", "search_dask_job",
                                       reconstructable_kwargs={**SHAPE, "name": "search_dask_test", "standalone": True})
    with (
        distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                 dashboard_address="127.0.0.1:0", protocol="tcp") as cluster,
        distributed.Client(cluster) as client,
        dg.instance_for_test(temp_dir=str(tmp_path)) as instance,
    ):
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        worker_pids = set(client.run(os.getpid).values())
        assert len(worker_pids) == 2 and os.getpid() not in worker_pids
        run_config = {"execution": {"config": {"cluster": {"existing": {"address": cluster.scheduler_address}}}},
                      "resources": {"search": {"config": SMALL}}}
        with dg.execute_job(job, instance=instance, run_config=run_config) as result:
            assert result.success
            step_keys = {e.step_key for e in result.all_events if e.is_step_success}
        assert len(step_keys) == 5
        mat = instance.get_latest_materialization_event(dg.AssetKey("strategy_search")).asset_materialization
        by_worker = mat.metadata["units_by_worker"].value
        assert sum(by_worker.values()) == 4
        assert {int(w.rsplit(":", 1)[1]) for w in by_worker} == worker_pids  # the units ran on both workers

    direct = _reference()
    _assert_same_table(DuckDBWarehouse().query("SELECT * FROM strategy_search ORDER BY config"), direct)
    assert mat.metadata["n_evaluated"].value == direct.n_evaluated
    assert (alloc_home / "search" / FIGURES["allocation_path"]).read_bytes()[:4] == b"\x89PNG"
