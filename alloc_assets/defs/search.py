"""Strategy search across simulated markets: ``strategy_search`` (group ``sim``).

The search itself lives in ``alloc_assets/sim/search.py`` (pure JAX): it simulates its own five
two-asset markets and scores a Latin hypercube of volatility-targeting configurations on them. This
asset only calls :func:`~alloc_assets.sim.search.run_search`, stores its table in the warehouse
(``strategy_search``), draws the figures and attaches the summary to the UI.
"""

import base64
import json
import math
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandera.polars as pa
import polars as pl
from pydantic import Field

from alloc_assets.defs.common import column_schema
from resources.settings import alloc_home
from resources.warehouse import DuckDBWarehouse

GROUP = "sim"
TABLE = "strategy_search"
_WEIGHT_FUNCTIONS = ("inverse_vol", "inverse_vol_squared", "linear_decay", "sigmoid")  # = sim.search.WEIGHT_FUNCTIONS
_PARAMETERS = ("target_vol", "window_months", "risk_aversion", "cost_bps")  # the continuous ones
FIGURES = {
    "convergence": "search_convergence.png",
    "risk_return": "search_risk_return.png",
    "sensitivity": "search_sensitivity.png",
    "robust_vs_best": "search_robust_vs_best.png",
}
BEST_TABLE = "best_strategies.md"


class SearchSettings(dg.ConfigurableResource):
    """Strategy search settings: simulated paths and horizon, seed, evaluation budget, stopping rule."""

    n_paths: int = Field(default=1000, description="Simulated paths per market scenario (the same shocks in every scenario)")
    horizon_days: int = Field(default=1260, description="Trading days evaluated (1,260 = 5 years; a multiple of 21)")
    seed: int = Field(default=0, description="Seed of the simulated markets and of the Latin hypercube of configurations")
    budget: int = Field(default=100, description="Most configurations evaluated (a multiple of batch_size)")
    batch_size: int = Field(default=20, description="Configurations per batch; the stopping rule is checked after each batch")
    early_stopping: bool = Field(default=True, description="Stop before the budget when no scenario's best objective "
                                 "improved by 1 % over the last 20 configurations")
    output_dir: str = Field(default="", description="Figures and the best-strategy table; empty = $ALLOC_HOME/search")

    def root(self) -> Path:
        path = Path(self.output_dir) if self.output_dir else alloc_home() / "search"
        path.mkdir(parents=True, exist_ok=True)
        return path


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
    code_version="sim-search-1",
    metadata={"dagster/column_schema": column_schema(StrategySearchTable), "dagster/table_name": TABLE},
)
def strategy_search(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, search: SearchSettings):
    """Latin-hypercube search of a volatility-targeted equity/bond rule (target vol, EWMA window,
    risk aversion, weight function, cost) scored on five simulated markets (base, bull, bear,
    high_vol, low_vol; Heston equity, Vasicek bond, the same shocks in every scenario). No upstream
    asset: it simulates its own markets and reads nothing from the warehouse. Writes the whole
    table ``strategy_search`` (one row per configuration: parameters, per-scenario objective,
    Sharpe, vol, max drawdown, ..., robustness), the figures and ``best_strategies.md``."""
    from alloc_assets.sim.search import run_search

    result = run_search(n_paths=search.n_paths, horizon_days=search.horizon_days, seed=search.seed,
                        budget=search.budget, batch_size=search.batch_size, early_stopping=search.early_stopping)
    context.log.info(f"strategy search: {result.n_evaluated} configurations, {result.timings_s.get('total_s', 0):.1f} s")
    frame = search_frame(result)
    try:
        StrategySearchTable.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise dg.Failure(allow_retries=False, description=f"{TABLE}: the search table failed its schema, nothing stored.\n"
                         f"{exc.failure_cases.head(10)}") from None
    t0 = time.perf_counter()
    pngs = {"convergence": convergence_png(result), "risk_return": risk_return_png(result),
            "sensitivity": sensitivity_png(result), "robust_vs_best": robust_vs_best_png(result)}
    figures_s = time.perf_counter() - t0
    warehouse.replace_table(TABLE, frame)  # one transaction: the whole table, as computed
    root = search.root()
    paths = {}
    for kind, png in pngs.items():
        paths[kind] = root / FIGURES[kind]
        paths[kind].write_bytes(png)
    paths["best_strategies"] = root / BEST_TABLE
    paths["best_strategies"].write_text(best_strategies_md(result))

    main = base64.b64encode(pngs["robust_vs_best"]).decode()
    timings = {k: round(float(v), 3) for k, v in result.timings_s.items()} | {"figures_s": round(figures_s, 3)}
    return dg.MaterializeResult(metadata={
        "summary": dg.MetadataValue.md(summary_md(result.summary)),
        "best_robust": dg.MetadataValue.md(best_robust_md(result)),
        "best_per_scenario": dg.MetadataValue.md(best_per_scenario_md(result)),
        "best_robust_config": dg.MetadataValue.json(_config(result.best_robust)),
        "robust_vs_best": dg.MetadataValue.md(f"![robust vs best](data:image/png;base64,{main})"),
        "n_evaluated": result.n_evaluated,
        "stopped_early": result.stopped_early,
        "timings_s": dg.MetadataValue.json(timings),
        "figures": dg.MetadataValue.json({k: str(v) for k, v in paths.items()}),
        "settings": dg.MetadataValue.json(json.loads(json.dumps(result.settings, default=str))),
        "dagster/row_count": frame.height,
    })


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
                      "## Best configuration per scenario", "", best_per_scenario_md(result), ""])


def _figure(figsize=(9.0, 4.2)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # imported when used (slow import)
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    from alloc_assets.core.figures import _png as png

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


SEARCH_ASSETS = [strategy_search]
