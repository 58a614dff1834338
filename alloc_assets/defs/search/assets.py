"""The strategy search across simulated markets as Dagster: the ``strategy_search`` asset (group
``sim``) and the same search fanned out as parallel steps (:func:`search_fanout_job`).

The search is ``alloc_assets.sim.search`` (pure JAX: it simulates its own five two-asset markets);
its figures and markdown are ``alloc_assets.sim.search.figures`` and ``.report``. This module runs
it, validates and stores the table ``strategy_search``, writes the figures and
``best_strategies.md``, and attaches the summary to the UI.
"""

import base64
import json
import os
import socket
import time

import dagster as dg

from alloc_assets.core.common.png import write_png
from alloc_assets.defs.common import column_schema, require_schema
from alloc_assets.schemas.search import StrategySearchTable
from resources.settings import alloc_home
from resources.simulation import SearchSettings
from resources.warehouse import DuckDBWarehouse

GROUP = "sim"
TABLE = "strategy_search"
FIGURES = {
    "convergence": "search_convergence.png",
    "risk_return": "search_risk_return.png",
    "sensitivity": "search_sensitivity.png",
    "robust_vs_best": "search_robust_vs_best.png",
    "scenario_comparison": "search_scenario_comparison.png",
    "allocation_path": "search_allocation_path.png",
}
BEST_TABLE = "best_strategies.md"


@dg.asset(
    group_name=GROUP,
    kinds={"jax", "numpy"},
    code_version="sim-search-2",
    metadata={"dagster/column_schema": column_schema(StrategySearchTable), "dagster/table_name": TABLE},
)
def strategy_search(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, search: SearchSettings):
    """Latin-hypercube search of a volatility-targeted equity/bond rule (target vol, EWMA window,
    risk aversion, weight function, cost) scored on five simulated markets (base, bull, bear,
    turbulent, calm; Heston equity, Vasicek bond, the same shocks in every scenario). No upstream
    asset: it simulates its own markets and reads nothing from the warehouse. Writes the whole
    table ``strategy_search`` (one row per configuration: parameters, per-scenario objective,
    Sharpe, vol, max drawdown, ..., robustness), the figures and ``best_strategies.md``."""
    from alloc_assets.sim.search.run import run_search

    result = run_search(**search.search_kwargs())
    context.log.info(f"strategy search: {result.n_evaluated} configurations, {result.timings_s.get('total_s', 0):.1f} s")
    return dg.MaterializeResult(metadata=store_search(result, warehouse, search))


def store_search(result, warehouse: DuckDBWarehouse, search: SearchSettings) -> dict:
    """Validate and store the result's table (``strategy_search``), write the figures and
    ``best_strategies.md``; returns the materialization metadata. Shared by the asset and the
    fan-out job's collect step, so both store a search the same way."""
    from alloc_assets.sim.search import report
    from alloc_assets.sim.search.figures import search_figures

    frame = report.search_frame(result)
    require_schema(StrategySearchTable, frame, TABLE)
    t0 = time.perf_counter()
    pngs = search_figures(result)
    figures_s = time.perf_counter() - t0
    warehouse.replace_table(TABLE, frame)  # one transaction: the whole table, as computed
    root = search.root()
    paths = {kind: write_png(png, root / FIGURES[kind]) for kind, png in pngs.items()}
    paths["best_strategies"] = root / BEST_TABLE
    paths["best_strategies"].write_text(report.best_strategies_md(result))

    def inline(kind: str, title: str) -> dg.MetadataValue:
        return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(pngs[kind]).decode()})")

    timings = {k: round(float(v), 3) for k, v in result.timings_s.items()} | {"figures_s": round(figures_s, 3)}
    metadata = {
        "summary": dg.MetadataValue.md(report.summary_md(result.summary)),
        "best_robust": dg.MetadataValue.md(report.best_robust_md(result)),
        "best_per_scenario": dg.MetadataValue.md(report.best_per_scenario_md(result)),
        "best_robust_config": dg.MetadataValue.json(report.best_robust_config(result.best_robust)),
        "robust_vs_best": inline("robust_vs_best", "robust vs best"),
        "scenario_comparison": inline("scenario_comparison", "scenario comparison"),
        "n_evaluated": result.n_evaluated,
        "stopped_early": result.stopped_early,
        "timings_s": dg.MetadataValue.json(timings),
        "figures": dg.MetadataValue.json({k: str(v) for k, v in paths.items()}),
        "settings": dg.MetadataValue.json(json.loads(json.dumps(result.settings, default=str))),
        "dagster/row_count": frame.height,
    }
    if result.allocation_path:
        metadata["allocation_path"] = inline("allocation_path", "allocation path")
        metadata["allocation_path_summary"] = dg.MetadataValue.md(report.allocation_path_md(result))
    return metadata


# --------------------------------------------------------------------------------------------------
# the same search as parallel steps: one op per (scenario, batch) unit, one collect op


FANOUT_JOB = "strategy_search_fanout_job"


def search_fanout_job(name: str = FANOUT_JOB, scenarios: tuple[str, ...] | None = None, budget: int = 100,
                      batch_size: int = 20, executor_def: dg.ExecutorDefinition | None = None,
                      resource_defs: dict | None = None, standalone: bool = False,
                      collect_tags: dict[str, str] | None = None) -> dg.JobDefinition:
    """The strategy search as ``len(scenarios) x budget / batch_size`` parallel steps plus a collect step.

    Step ``search_unit__<scenario>__b<batch>`` evaluates that batch's configurations in that scenario
    (:func:`~alloc_assets.sim.search.run.evaluate_unit`, simulating its scenario itself: the same
    paths in every process); ``collect_strategy_search`` assembles the units in batch order with the
    stopping rule (:func:`~alloc_assets.sim.search.run.assemble_search`), so the table is bit-identical
    to the asset's ``run_search``, and stores it exactly as the asset does (:func:`store_search`),
    recording a materialization of ``strategy_search``. The fan-out is static (the graph is known
    before the run: Dagster's Dask executor does not run dynamic outputs), so the job's shape
    (scenarios, ``budget``, ``batch_size``) is fixed here and the ``search`` resource must agree;
    paths, horizon, seed and stopping come from the resource. With early stopping every batch is
    evaluated (speculatively, in parallel) and those after the stop are discarded.

    ``executor_def``: default the multiprocess executor (one process per step, in parallel);
    :func:`search_dask_job` gives the Dask one. ``resource_defs``: bound resources (default: those
    of the Definitions); ``standalone`` binds ``warehouse`` and ``search`` configured at launch (run
    config ``resources: {search: {config: {...}}}``), for a job loaded outside the Definitions (e.g.
    with ``dg.build_reconstructable_job``). ``collect_tags``: extra tags of the collect step (e.g.
    the executor's placement: see :func:`search_dask_job`).
    """
    from alloc_assets.sim.search.markets import SEARCH_SCENARIOS
    from alloc_assets.sim.search.run import SearchPlan

    names = tuple(scenarios) if scenarios is not None else tuple(s.name for s in SEARCH_SCENARIOS)
    plan_scenarios = tuple(next(s for s in SEARCH_SCENARIOS if s.name == n) for n in names)
    shape = SearchPlan(scenarios=plan_scenarios, budget=budget, batch_size=batch_size)  # validates the shape

    def plan_of(search: SearchSettings):
        if (search.budget, search.batch_size) != (budget, batch_size):
            raise dg.Failure(allow_retries=False, description=(
                f"{name} is built for budget {budget} and batch_size {batch_size}; the search resource says "
                f"{search.budget} and {search.batch_size}: build the job with search_fanout_job(budget=..., batch_size=...)"))
        return SearchPlan(scenarios=plan_scenarios, **search.search_kwargs())

    def unit_op(scenario: str, batch: int):
        @dg.op(name=f"search_unit__{scenario}__b{batch}", tags={"kind": "jax"},
               description=f"Batch {batch}'s configurations scored in the {scenario} scenario.")
        def search_unit(context: dg.OpExecutionContext, search: SearchSettings) -> dict:
            from alloc_assets.sim.engine.kernel import enable_compilation_cache
            from alloc_assets.sim.search.run import evaluate_unit

            # every step process compiles the same kernel: the first one on a machine stores it
            enable_compilation_cache(alloc_home() / "jax-cache")
            t0 = time.perf_counter()
            columns = evaluate_unit(plan_of(search), scenario, batch)
            worker = f"{socket.gethostname()}:{os.getpid()}"
            context.log.info(f"unit ({scenario}, batch {batch}) on {worker}: {time.perf_counter() - t0:.2f} s")
            return {"scenario": scenario, "batch": batch, "columns": columns, "seconds": time.perf_counter() - t0,
                    "worker": worker}

        return search_unit

    def unit_input(scenario: str, batch: int) -> str:
        return f"unit__{scenario}__b{batch}"

    unit_keys = [(s, b) for b in range(shape.n_batches) for s in names]
    units = {unit_input(s, b): unit_op(s, b) for s, b in unit_keys}

    # One named input per unit, not a fan-in list: under dagster-dask a fan-in input arrives EMPTY
    # (the executor hands each step the known state of submission time, in which no upstream output
    # is ready yet, and a fan-in silently drops the sources it cannot load); named inputs are loaded
    # from the IO manager unconditionally.
    @dg.op(name="collect_strategy_search", tags={"kind": "jax", **(collect_tags or {})}, ins={k: dg.In(dict) for k in units},
           required_resource_keys={"warehouse", "search"},
           description="Assemble the units (stopping rule in batch order) and store strategy_search as the asset does.")
    def collect(context: dg.OpExecutionContext, **inputs):
        from alloc_assets.sim.engine.kernel import enable_compilation_cache
        from alloc_assets.sim.search.run import assemble_search

        enable_compilation_cache(alloc_home() / "jax-cache")
        warehouse, search = context.resources.warehouse, context.resources.search
        plan = plan_of(search)
        done = [inputs[unit_input(s, b)] for s, b in unit_keys]
        result = assemble_search(plan, {(u["scenario"], u["batch"]): u["columns"] for u in done})
        result.timings_s["units_s"] = float(sum(u["seconds"] for u in done))
        context.log.info(f"strategy search (fan-out, {len(done)} units): {result.n_evaluated} configurations")
        metadata = store_search(result, warehouse, search)
        metadata["n_units"] = len(done)
        workers: dict[str, int] = {}
        for u in done:
            workers[u["worker"]] = workers.get(u["worker"], 0) + 1
        metadata["units_by_worker"] = dg.MetadataValue.json(dict(sorted(workers.items())))
        yield dg.AssetMaterialization(asset_key=dg.AssetKey(TABLE), description="strategy search (fan-out job)",
                                      metadata=metadata)
        yield dg.Output(result.n_evaluated)

    if standalone and resource_defs is None:
        resource_defs = {"warehouse": DuckDBWarehouse.configure_at_launch(), "search": SearchSettings.configure_at_launch()}

    @dg.job(name=name, executor_def=executor_def or dg.multiprocess_executor, resource_defs=resource_defs,
            description=f"strategy_search as {len(units)} parallel (scenario, batch) steps and a collect step.",
            tags={"search/units": str(len(units))})
    def fanout():
        collect(**{k: op() for k, op in units.items()})

    return fanout


def search_dask_job(name: str = f"{FANOUT_JOB}_dask", collect_resources: dict[str, float] | None = None,
                    **kwargs) -> dg.JobDefinition:
    """:func:`search_fanout_job` on Dagster's Dask executor (``pip install regime-allocator[dask]``);
    run config ``execution: {config: {cluster: {existing: {address: "tcp://host:8786"}}}}``, or
    ``local``/``kube``/``slurm``/... as dagster-dask documents.

    ``collect_resources``: Dask worker resources the collect step needs (dagster-dask's
    ``dagster-dask/resource_requirements`` tag), e.g. ``{"warehouse": 1}`` to run it only on the
    worker started with ``dask worker ... --resources warehouse=1``, the machine that holds the
    DuckDB file (without such a worker the step waits forever)."""
    from dagster_dask import dask_executor

    tags = dict(kwargs.pop("collect_tags", None) or {})
    if collect_resources:
        tags["dagster-dask/resource_requirements"] = json.dumps(collect_resources, sort_keys=True)
    return search_fanout_job(name, executor_def=dask_executor, collect_tags=tags, **kwargs)


strategy_search_fanout_job = search_fanout_job()
