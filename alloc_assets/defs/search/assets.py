"""Strategy search across simulated markets: ``strategy_search`` (group ``sim``).

The search itself lives in ``alloc_assets/sim/search.py`` (pure JAX): it simulates its own five
two-asset markets and scores a Latin hypercube of volatility-targeting configurations on them. This
asset only calls :func:`~alloc_assets.sim.search.search.run_search`, stores its table in the warehouse
(``strategy_search``), draws the figures and attaches the summary to the UI.
"""

import base64
import json
import math
import os
import socket
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandera.polars as pa
import polars as pl
from pydantic import Field

from alloc_assets.defs.common import column_schema, require_schema
from resources.settings import alloc_home
from resources.warehouse import DuckDBWarehouse
from resources.simulation import SearchSettings

GROUP = "sim"
TABLE = "strategy_search"
_WEIGHT_FUNCTIONS = ("inverse_vol", "inverse_vol_squared", "linear_decay", "sigmoid")  # = sim.search.WEIGHT_FUNCTIONS
_PARAMETERS = ("target_vol", "window_months", "risk_aversion", "cost_bps")  # the continuous ones
FIGURES = {
    "convergence": "search_convergence.png",
    "risk_return": "search_risk_return.png",
    "sensitivity": "search_sensitivity.png",
    "robust_vs_best": "search_robust_vs_best.png",
    "scenario_comparison": "search_scenario_comparison.png",
    "allocation_path": "search_allocation_path.png",
}
BEST_TABLE = "best_strategies.md"


class StrategySearchTable(pa.DataFrameModel):
    """``strategy_search``: one row per configuration evaluated, its parameters, and per scenario
    ``<scenario>_objective|sharpe|vol|max_drawdown|var_95|cvar_95|cost_per_year|annual_return``
    (path means), ``mean_objective`` and ``robustness``."""

    config: int = pa.Field(unique=True, ge=0, description="Configuration number, in evaluation order.")
    batch: int = pa.Field(ge=0, description="Batch (slice of the Latin hypercube) the configuration was evaluated in.")
    target_vol: pl.Float32 = pa.Field(ge=0, description="Target volatility tau (annual, decimal).")
    window_months: pl.Float32 = pa.Field(gt=0, description="EWMA volatility window (months; half-life 21 x window / 2 days).")
    risk_aversion: pl.Float32 = pa.Field(gt=0, description="lambda of the linear_decay and sigmoid weight functions.")
    weight_fn: pl.Int32 = pa.Field(isin=list(range(len(_WEIGHT_FUNCTIONS))), description="Index of the weight function.")
    cost_bps: pl.Float32 = pa.Field(ge=0, description="Cost per unit of turnover (basis points).")
    weight_fn_name: str = pa.Field(isin=list(_WEIGHT_FUNCTIONS), description="Name of the weight function.")
    mean_objective: float = pa.Field(nullable=True, description="Mean of the per-scenario objectives.")
    robustness: float = pa.Field(ge=0, le=1, description="Share of scenarios where the objective is within 20 % of that scenario's best.")

    class Config:
        strict = False  # plus the per-scenario columns


@dg.asset(
    group_name=GROUP,
    kinds={"jax", "numpy"},
    code_version="sim-search-2",
    metadata={"dagster/column_schema": column_schema(StrategySearchTable), "dagster/table_name": TABLE},
)
def strategy_search(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, search: SearchSettings):
    """Latin-hypercube search of a volatility-targeted equity/bond rule (target vol, EWMA window,
    risk aversion, weight function, cost) scored on five simulated markets (base, bull, bear,
    high_vol, low_vol; Heston equity, Vasicek bond, the same shocks in every scenario). No upstream
    asset: it simulates its own markets and reads nothing from the warehouse. Writes the whole
    table ``strategy_search`` (one row per configuration: parameters, per-scenario objective,
    Sharpe, vol, max drawdown, ..., robustness), the figures and ``best_strategies.md``."""
    from alloc_assets.sim.search.search import run_search

    result = run_search(**search.search_kwargs())
    context.log.info(f"strategy search: {result.n_evaluated} configurations, {result.timings_s.get('total_s', 0):.1f} s")
    return dg.MaterializeResult(metadata=store_search(result, warehouse, search))


def store_search(result, warehouse: DuckDBWarehouse, search: SearchSettings) -> dict:
    """Validate and store the result's table (``strategy_search``), write the figures and
    ``best_strategies.md``; returns the materialization metadata. Shared by the asset and the
    fan-out job's collect step, so both store a search the same way."""
    frame = search_frame(result)
    require_schema(StrategySearchTable, frame, TABLE)
    t0 = time.perf_counter()
    pngs = {"convergence": convergence_png(result), "risk_return": risk_return_png(result),
            "sensitivity": sensitivity_png(result), "robust_vs_best": robust_vs_best_png(result),
            "scenario_comparison": scenario_comparison_png(result)}
    if result.allocation_path:
        pngs["allocation_path"] = allocation_path_png(result)
    figures_s = time.perf_counter() - t0
    warehouse.replace_table(TABLE, frame)  # one transaction: the whole table, as computed
    root = search.root()
    paths = {}
    for kind, png in pngs.items():
        paths[kind] = root / FIGURES[kind]
        paths[kind].write_bytes(png)
    paths["best_strategies"] = root / BEST_TABLE
    paths["best_strategies"].write_text(best_strategies_md(result))

    def inline(kind: str, title: str) -> dg.MetadataValue:
        return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{base64.b64encode(pngs[kind]).decode()})")

    timings = {k: round(float(v), 3) for k, v in result.timings_s.items()} | {"figures_s": round(figures_s, 3)}
    metadata = {
        "summary": dg.MetadataValue.md(summary_md(result.summary)),
        "best_robust": dg.MetadataValue.md(best_robust_md(result)),
        "best_per_scenario": dg.MetadataValue.md(best_per_scenario_md(result)),
        "best_robust_config": dg.MetadataValue.json(_config(result.best_robust)),
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
        metadata["allocation_path_summary"] = dg.MetadataValue.md(allocation_path_md(result))
    return metadata


# --------------------------------------------------------------------------------------------------
# presentation of a SearchResult (no computation beyond what a figure draws)


def search_frame(result) -> pl.DataFrame:
    """The result's table as stored: its columns, in order, with their dtypes."""
    return pl.DataFrame({k: np.asarray(v) for k, v in result.table.items()})


def _fmt(x, spec: str = ".3f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _config(row: dict) -> dict:
    keys = ("config", "weight_fn_name", *_PARAMETERS, "robustness", "mean_objective")
    def value(x):
        if isinstance(x, float):
            return round(x, 6) if math.isfinite(x) else None
        return x

    return {k: value(row[k]) for k in keys}


def _describe(row: dict) -> str:
    return (f"#{row['config']} {row['weight_fn_name']}, target vol {_fmt(100 * row['target_vol'], '.1f')} %, window "
            f"{_fmt(row['window_months'], '.1f')} m, lambda {_fmt(row['risk_aversion'], '.2f')}, cost {_fmt(row['cost_bps'], '.1f')} bp")


def summary_md(text: str) -> str:
    """The summary as markdown: indented lines become list items, the others paragraphs."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("  "):
            out.append(f"- {line.strip()}")
        else:
            out += ["", line, ""] if out and out[-1] != "" else [line, ""]
    return "\n".join(out).strip() + "\n"


def best_robust_md(result) -> str:
    """The best robust configuration in every scenario, beside that scenario's best objective."""
    r = result.best_robust
    lines = [f"**{_describe(r)}**: robustness {_fmt(r['robustness'], '.2f')}, mean objective {_fmt(r['mean_objective'])}", "",
             "| scenario | objective | scenario's best | Sharpe | vol | max drawdown |", "|---|---:|---:|---:|---:|---:|"]
    for s in result.scenarios:
        best = result.best_per_scenario[s][f"{s}_objective"]
        lines.append(f"| {s} | {_fmt(r[f'{s}_objective'])} | {_fmt(best)} | {_fmt(r[f'{s}_sharpe'])} | "
                     f"{_fmt(r[f'{s}_vol'], '.2%')} | {_fmt(r[f'{s}_max_drawdown'], '.2%')} |")
    return "\n".join(lines)


def best_per_scenario_md(result) -> str:
    """One row per scenario: its best configuration and its numbers in that scenario."""
    lines = ["| scenario | config | weight function | target vol | window (m) | lambda | cost (bp) | objective | Sharpe | vol | max drawdown |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in result.scenarios:
        r = result.best_per_scenario[s]
        lines.append(f"| {s} | {r['config']} | {r['weight_fn_name']} | {_fmt(r['target_vol'], '.2%')} | "
                     f"{_fmt(r['window_months'], '.1f')} | {_fmt(r['risk_aversion'], '.2f')} | {_fmt(r['cost_bps'], '.1f')} | "
                     f"{_fmt(r[f'{s}_objective'])} | {_fmt(r[f'{s}_sharpe'])} | {_fmt(r[f'{s}_vol'], '.2%')} | "
                     f"{_fmt(r[f'{s}_max_drawdown'], '.2%')} |")
    return "\n".join(lines)


def best_strategies_md(result) -> str:
    """``best_strategies.md``: the summary, the best robust configuration and the best per scenario."""
    return "\n".join(["# Strategy search: best strategies", "", summary_md(result.summary),
                      "## Best robust configuration", "", best_robust_md(result), "",
                      "## Best configuration per scenario", "", best_per_scenario_md(result), "",
                      *(["## Allocation path of the best robust configuration", "", allocation_path_md(result), ""]
                        if result.allocation_path else [])])


def _figure(figsize=(9.0, 4.2)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported when used (slow import)
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    from alloc_assets.core.common.png import png_bytes as png

    return png(fig)


def _colours(names) -> dict[str, str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(names)}


def convergence_png(result) -> bytes:
    """Best objective so far per scenario against the number of configurations evaluated."""
    fig = _figure()
    ax = fig.add_subplot()
    colours = _colours(result.scenarios)
    x = np.arange(1, result.n_evaluated + 1)
    for s in result.scenarios:
        ax.step(x, np.maximum.accumulate(result.table[f"{s}_objective"]), where="post", color=colours[s], label=s)
    for b in range(1, int(result.table["batch"].max()) + 1):
        ax.axvline(result.settings["batch_size"] * b + 0.5, color="#bbbbbb", linewidth=0.7, linestyle=":")
    ax.set_xlabel("configurations evaluated")
    ax.set_ylabel("best objective so far")
    ax.set_title("Strategy search: convergence" + (" (stopped early)" if result.stopped_early else ""))
    ax.legend(loc="lower right", fontsize=8)
    return _png(fig)


def risk_return_png(result) -> bytes:
    """Mean volatility against mean annual return of every configuration, one colour per scenario;
    the best robust configuration ringed."""
    fig = _figure((9.0, 5.0))
    ax = fig.add_subplot()
    colours = _colours(result.scenarios)
    robust = result.best_robust["config"]
    for s in result.scenarios:
        vol, ret = result.table[f"{s}_vol"], result.table[f"{s}_annual_return"]
        ax.scatter(vol, ret, s=14, color=colours[s], alpha=0.6, linewidth=0, label=s)
        ax.scatter(vol[robust], ret[robust], s=90, facecolor="none", edgecolor="black", linewidth=1.2)
    ax.axvline(result.settings["objectives"]["max_vol"], color="#c0392b", linewidth=0.8, linestyle="--")
    ax.scatter([], [], s=90, facecolor="none", edgecolor="black", label=f"best robust (#{robust})")
    ax.set_xlabel("annual volatility (mean over paths)")
    ax.set_ylabel("annual return (mean over paths)")
    ax.set_title("Strategy search: risk and return of every configuration (dashed: volatility objective)")
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


def sensitivity_png(result) -> bytes:
    """Spearman correlation of each continuous parameter with the objective, per scenario and mean."""
    cols = [*result.scenarios, "mean"]
    rows = list(result.sensitivity)
    grid = np.array([[result.sensitivity[p][c] for c in cols] for p in rows], dtype=np.float64)
    fig = _figure((1.6 + 1.1 * len(cols), 1.2 + 0.6 * len(rows)))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, _fmt(grid[i, j], "+.2f"), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title("Sensitivity: Spearman(parameter, objective)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def robust_vs_best_png(result) -> bytes:
    """Objective of the best robust configuration in each scenario beside each scenario's best."""
    fig = _figure()
    ax = fig.add_subplot()
    x = np.arange(len(result.scenarios))
    r = result.best_robust
    mine = [r[f"{s}_objective"] for s in result.scenarios]
    best = [result.best_per_scenario[s][f"{s}_objective"] for s in result.scenarios]
    ax.bar(x - 0.2, mine, 0.4, color="#1f77b4", label=f"best robust (#{r['config']}, {r['weight_fn_name']})")
    ax.bar(x + 0.2, best, 0.4, color="#3c4a5a", alpha=0.6, label="best in the scenario")
    ax.axhline(0.0, color="#999999", linewidth=0.8)
    ax.set_xticks(x, list(result.scenarios))
    ax.set_ylabel("objective (mean Sharpe - penalties)")
    ax.set_title(f"Best robust configuration across scenarios (robustness {_fmt(r['robustness'], '.0%')})")
    ax.legend(loc="best", fontsize=8)
    return _png(fig)


_COMPARED = (("objective", "objective (mean Sharpe - penalties)", 1.0), ("sharpe", "Sharpe (mean over paths)", 1.0),
             ("vol", "volatility (%)", 100.0), ("max_drawdown", "max drawdown (%)", 100.0))


def scenario_comparison_png(result) -> bytes:
    """Scenario comparison: objective, Sharpe, volatility and max drawdown (path means) of the best
    robust configuration beside each scenario's own best, grouped by scenario."""
    fig = _figure((11.0, 6.4))
    axes = fig.subplots(2, 2)
    x = np.arange(len(result.scenarios))
    r = result.best_robust
    for ax, (col, label, scale) in zip(axes.ravel(), _COMPARED):
        mine = [scale * r[f"{s}_{col}"] for s in result.scenarios]
        best = [scale * result.best_per_scenario[s][f"{s}_{col}"] for s in result.scenarios]
        ax.bar(x - 0.2, mine, 0.4, color="#1f77b4", label=f"best robust (#{r['config']})")
        ax.bar(x + 0.2, best, 0.4, color="#3c4a5a", alpha=0.6, label="the scenario's best (by objective)")
        ax.axhline(0.0, color="#999999", linewidth=0.8)
        ax.set_xticks(x, list(result.scenarios), fontsize=8)
        ax.set_ylabel(label, fontsize=8)
    lim = result.settings["objectives"]
    axes[1, 0].axhline(100 * lim["max_vol"], color="#c0392b", linewidth=0.8, linestyle="--")
    axes[1, 1].axhline(100 * lim["max_drawdown"], color="#c0392b", linewidth=0.8, linestyle="--")
    axes[0, 0].legend(loc="best", fontsize=7)
    fig.suptitle(f"Scenario comparison: best robust #{r['config']} ({r['weight_fn_name']}) against each scenario's "
                 "best (dashed: objective limits)", fontsize=10)
    return _png(fig)


def allocation_path_png(result) -> bytes:
    """Allocation path of the best robust configuration: its equity weight over the horizon, median
    and 5-95 % band across the simulated paths, one panel per scenario."""
    names = list(result.allocation_path)
    fig = _figure((3.0 * len(names), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True))
    colours = _colours(result.scenarios)
    r = result.best_robust
    for ax, s in zip(axes, names):
        band = result.allocation_path[s]
        years = band["day"] / 252.0
        ax.fill_between(years, 100 * band["p05"], 100 * band["p95"], color=colours[s], alpha=0.25, linewidth=0,
                        label="5-95 % of paths")
        ax.plot(years, 100 * band["p50"], color=colours[s], linewidth=1.2, label="median")
        ax.set_title(s, fontsize=9)
        ax.set_xlabel("years")
        ax.set_ylim(-2, 102)
    axes[0].set_ylabel("equity weight (%)")
    axes[0].legend(loc="lower left", fontsize=7)
    fig.suptitle(f"Allocation path of the best robust configuration ({_describe(r)})", fontsize=10)
    return _png(fig)


def allocation_path_md(result) -> str:
    """The equity weight of the best robust configuration at the end of each year: median [5 %, 95 %]."""
    first = next(iter(result.allocation_path.values()))
    days = first["day"]
    marks = [int(d) for d in days if d % 252 == 0] or [int(days[-1])]
    lines = ["| scenario | " + " | ".join(f"day {d}" for d in marks) + " |", "|---|" + "---:|" * len(marks)]
    for s, band in result.allocation_path.items():
        cells = [f"{_fmt(band['p50'][d - 1], '.0%')} [{_fmt(band['p05'][d - 1], '.0%')}, {_fmt(band['p95'][d - 1], '.0%')}]"
                 for d in marks]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return "Equity weight of the best robust configuration, median [5 %, 95 %] over the paths:\n\n" + "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# the same search as parallel steps: one op per (scenario, batch) unit, one collect op


FANOUT_JOB = "strategy_search_fanout_job"


def search_fanout_job(name: str = FANOUT_JOB, scenarios: tuple[str, ...] | None = None, budget: int = 100,
                      batch_size: int = 20, executor_def: dg.ExecutorDefinition | None = None,
                      resource_defs: dict | None = None, standalone: bool = False,
                      collect_tags: dict[str, str] | None = None) -> dg.JobDefinition:
    """The strategy search as ``len(scenarios) x budget / batch_size`` parallel steps plus a collect step.

    Step ``search_unit__<scenario>__b<batch>`` evaluates that batch's configurations in that scenario
    (:func:`~alloc_assets.sim.search.search.evaluate_unit`, simulating its scenario itself: the same
    paths in every process); ``collect_strategy_search`` assembles the units in batch order with the
    stopping rule (:func:`~alloc_assets.sim.search.search.assemble_search`), so the table is bit-identical
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
    from alloc_assets.sim.search.search import SEARCH_SCENARIOS, SearchPlan

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
            from alloc_assets.sim.search.search import evaluate_unit

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
        from alloc_assets.sim.search.search import assemble_search

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

SEARCH_ASSETS = [strategy_search]
SEARCH_JOBS = [strategy_search_fanout_job]
