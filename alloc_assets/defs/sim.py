"""Simulation layer: ``scenario_models`` (calibrated world model) and ``stress_tests`` (one
partition per scenario, so scenarios run in parallel processes or pods).

The JAX engine lives in ``alloc_assets/sim`` (pure); these assets read the stored history, call it,
write the stress dashboard table (``stress_dashboard``) and the figures, and attach them to the UI.
"""

import base64
import pickle
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from alloc_assets.defs.allocator import load_panel
from alloc_assets.defs.common import history_span
from alloc_assets.schemas import REGIME_LABELS
from resources.settings import alloc_home
from resources.warehouse import DuckDBWarehouse

GROUP = "sim"
SCENARIOS = ("base", "bull", "bear", "high_vol", "low_vol", "rates_up_200bp", "credit_spreads_400bp",
             "vol_spike", "combined_2008", "from_today")
scenario_partitions = dg.StaticPartitionsDefinition(list(SCENARIOS))
_BASE_CACHE: dict = {}  # the "base" scenario of the current world model (one entry)


class SimulationSettings(dg.ConfigurableResource):
    """Monte Carlo settings: paths, horizon, seed (the same seed for every scenario), precision."""

    n_paths: int = Field(default=10_000, description="Simulated futures per scenario")
    horizon_days: int = Field(default=1260, description="Trading days simulated (1,260 = 5 years)")
    seed: int = Field(default=0, description="PRNG seed, shared by all scenarios (common random numbers)")
    dtype: str = Field(default="float32", description="float32 | float64")
    output_dir: str = Field(default="", description="Model and figures; empty = $ALLOC_HOME/sim")

    def root(self) -> Path:
        path = Path(self.output_dir) if self.output_dir else alloc_home() / "sim"
        path.mkdir(parents=True, exist_ok=True)
        return path


@dg.asset(
    deps=["regime_series", "market_prices"],
    group_name=GROUP,
    kinds={"jax", "numpy"},
    code_version="sim-model-1",
)
def scenario_models(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, simulation: SimulationSettings):
    """The regime-switching world model calibrated on the stored history: transition matrix and
    regime-conditional daily means and covariances of the stocks (from ``regime_series`` labels),
    started from today's regime probabilities, and the allocator's state at the last stored day."""
    from alloc_assets.sim import calibrate_world_model, start_from_panel

    with warehouse.session(read_only=True):  # a reader: never takes the writer's lock
        first, last = history_span(warehouse)
        if first is None:
            raise dg.Failure(allow_retries=False, description="market_prices is empty: run the refresh job first.")
        panel = load_panel(warehouse, first, last)
        reg = warehouse.query("SELECT date, regime, p_normal, p_elevated, p_stress, p_crisis FROM regime_series "
                              "WHERE date BETWEEN ? AND ? ORDER BY date", [first, last])
    if reg.height != len(panel.dates):
        raise dg.Failure(allow_retries=False, description="regime_series does not cover every stored trading day; run the refresh job first.")
    labels = np.array([REGIME_LABELS.index(r) for r in reg["regime"].to_list()])
    returns = panel.returns()[1:]
    p_today = reg.select("p_normal", "p_elevated", "p_stress", "p_crisis").to_numpy()[-1]
    model = calibrate_world_model(returns, labels[1:], p0=p_today)
    start = start_from_panel(panel)
    path = simulation.root() / "world_model.pkl"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps({"model": model, "start": start, "p_today": p_today, "last_date": str(panel.dates[-1])}))
    tmp.replace(path)
    trans = np.asarray(model.transition)
    mu = np.asarray(model.means).mean(axis=1) * 252
    chol = np.asarray(model.chol)
    vol = np.sqrt(np.asarray([np.diag(c @ c.T).mean() for c in chol]) * 252)
    lines = ["| regime | stay probability | mean stock return (ann.) | mean stock vol (ann.) |", "|---|---:|---:|---:|"]
    lines += [f"| {REGIME_LABELS[k]} | {trans[k, k]:.4f} | {mu[k]:.2%} | {vol[k]:.2%} |" for k in range(len(REGIME_LABELS))]
    return dg.MaterializeResult(metadata={
        "model_file": dg.MetadataValue.path(str(path)),
        "calibrated_through": str(panel.dates[-1]),
        "regimes": dg.MetadataValue.md("\n".join(lines)),
        "p_today": dg.MetadataValue.json({REGIME_LABELS[k]: round(float(p_today[k]), 4) for k in range(4)}),
    })


@dg.asset(
    deps=["scenario_models"],
    partitions_def=scenario_partitions,
    group_name=GROUP,
    kinds={"jax", "duckdb", "matplotlib"},
    code_version="sim-stress-2",
)
def stress_tests(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, simulation: SimulationSettings):
    """One scenario simulated (``n_paths`` futures over ``horizon_days``) with the baseline and the
    allocator-scaled strategy evaluated on every path: the scenario's rows of the stress dashboard
    (table ``stress_dashboard``: baseline Sharpe, stressed Sharpe, P(drawdown > 20 %), P(drawdown >
    30 %), median recovery months, CVaR 95 %, per book), a wealth fan chart and the drawdown
    distribution. The same seed for every scenario, so differences are not sampling noise."""
    from alloc_assets.sim import SimSettings, run_scenario

    name = context.partition_key
    model_file = simulation.root() / "world_model.pkl"
    saved = pickle.loads(model_file.read_bytes())
    settings = SimSettings(dtype=simulation.dtype)
    kwargs = dict(world_model=saved["model"], n_paths=simulation.n_paths, horizon_days=simulation.horizon_days,
                  key=simulation.seed, start=saved["start"], settings=settings)
    result = run_scenario(name, **kwargs)
    # every scenario is compared with "base" under the same seed: simulate it once per process
    base_key = (str(model_file), model_file.stat().st_mtime_ns, simulation.n_paths, simulation.horizon_days,
                simulation.seed, simulation.dtype)
    if name == "base":
        base = result
    elif _BASE_CACHE.get("key") == base_key:
        base = _BASE_CACHE["result"]
    else:
        base = run_scenario("base", **kwargs)
    _BASE_CACHE.clear()
    _BASE_CACHE.update(key=base_key, result=base)
    rows = result.dashboard_rows(base)
    frame = pl.DataFrame(rows, infer_schema_length=None).with_columns(pl.lit(saved["last_date"]).alias("calibrated_through"))
    # a column that is None in every row (e.g. no path recovered) is still a number column
    frame = frame.with_columns([pl.col(c).cast(pl.Float64) for c, t in frame.schema.items() if t == pl.Null])
    # computed above without the warehouse; the writer's lock is held only for this short write
    warehouse.append_rows("stress_dashboard", frame, "scenario = ?", [name])
    figures = {}
    for kind, png in (("fan", result.fan_chart_png()), ("drawdowns", result.drawdown_png())):
        path = simulation.root() / f"{name}_{kind}.png"
        path.write_bytes(png)
        figures[kind] = path
    cols = ["book", "baseline_sharpe", "stressed_sharpe", "p_drawdown_20", "p_drawdown_30", "median_recovery_months", "cvar_95"]
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        table.append("| " + " | ".join("n/a" if r[c] is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]))
                                       for c in cols) + " |")
    return dg.MaterializeResult(metadata={
        "scenario": name,
        "dashboard": dg.MetadataValue.md("\n".join(table)),
        "wealth_fan": dg.MetadataValue.md(f"![fan](data:image/png;base64,{base64.b64encode(figures['fan'].read_bytes()).decode()})"),
        "figures": dg.MetadataValue.json({k: str(v) for k, v in figures.items()}),
        "provenance": dg.MetadataValue.json(result.provenance),
        "n_paths": simulation.n_paths,
        "horizon_days": simulation.horizon_days,
    })


SIM_ASSETS = [scenario_models, stress_tests]
