"""Simulation layer: ``scenario_models`` (calibrated world model) and ``stress_tests`` (one
partition per scenario, so scenarios run in parallel processes or pods).

The JAX engine lives in ``alloc_assets/sim`` (pure); these assets read the stored history, call it,
write the stress dashboard table (``stress_dashboard``), the shocks' month-by-month paths
(``stress_paths``) and the figures, and attach them to the UI.
"""

import base64
import dataclasses
from pathlib import Path

import dagster as dg
import numpy as np

from alloc_assets.core.regime import PROBABILITY_COLUMNS, REGIME_LABELS
from alloc_assets.defs.common import load_panel
from alloc_assets.store.readers import history_span
from alloc_assets.sim.models.labels import calibration_labels
from alloc_assets.sim.models.world_file import WorldFileError, load_world_file, save_world_file
from alloc_assets.sim.scenarios.base_cache import base_result_path, load_or_compute
from alloc_assets.sim.scenarios.catalogue import SCENARIO_NAMES
from alloc_assets.sim.scenarios.tables import dashboard_frame, dashboard_md, path_table_md, stress_path_frame
from resources.settings import alloc_home
from resources.simulation import SimulationSettings
from resources.warehouse import DuckDBWarehouse

GROUP = "sim"
scenario_partitions = dg.StaticPartitionsDefinition(list(SCENARIO_NAMES))


def load_world(path: Path) -> dict:
    """The saved world model; a missing, unreadable or outdated file fails the run without retries."""
    try:
        return load_world_file(path)
    except WorldFileError as exc:
        raise dg.Failure(allow_retries=False, description=str(exc)) from None


@dg.asset(
    deps=["regime_series", "market_prices"],
    group_name=GROUP,
    kinds={"jax", "numpy"},
    code_version="sim-model-2",
)
def scenario_models(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, simulation: SimulationSettings):
    """The regime-switching world model calibrated on the stored history: transition matrix and
    regime-conditional means and covariances of the stocks' daily **log** returns (the model's
    unit), on regime labels independent of the allocator by default (``calibration_labels``:
    causal realised-volatility quantiles of the equal-weight index; or the allocator's own
    ``regime_series`` labels), started from today's regime probabilities, and the allocator's state
    at the last stored day. The metadata says which labels were used."""
    from alloc_assets.sim.engine.allocator_state import start_from_panel
    from alloc_assets.sim.models.world_calibration import calibrate_world_model
    from alloc_assets.sim.models.world_summary import regime_summary_md

    with warehouse.session(read_only=True):  # a reader: never takes the writer's lock
        first, last = history_span(warehouse)
        if first is None:
            raise dg.Failure(allow_retries=False, description="market_prices is empty: run the refresh job first.")
        panel = load_panel(warehouse, first, last)
        reg = warehouse.query(f"SELECT date, regime, {', '.join(PROBABILITY_COLUMNS)} FROM regime_series "
                              "WHERE date BETWEEN ? AND ? ORDER BY date", [first, last])
    if reg.height != len(panel.dates):
        raise dg.Failure(allow_retries=False, description="regime_series does not cover every stored trading day; run the refresh job first.")
    pipeline_labels = np.array([REGIME_LABELS.index(r) for r in reg["regime"].to_list()])
    # daily log returns: the world model's unit (simple returns would raise every regime mean by
    # about half its variance)
    returns = np.diff(np.log(panel.close), axis=0)
    probs = reg.select(*PROBABILITY_COLUMNS).to_numpy()
    try:
        labels, p_today, label_text = calibration_labels(simulation.calibration_labels, returns, pipeline_labels[1:], probs)
    except ValueError as exc:
        raise dg.Failure(allow_retries=False, description=str(exc)) from None
    unlabelled = labels < 0  # warm-up days: dropped (with their transitions) as non-finite rows
    model = calibrate_world_model(np.where(unlabelled[:, None], np.nan, returns), np.where(unlabelled, 0, labels), p0=p_today)
    start = start_from_panel(panel)
    path = simulation.root() / "world_model.pkl"
    save_world_file(path, {"model": model, "start": start, "p_today": p_today, "last_date": str(panel.dates[-1]),
                           "calibration_labels": simulation.calibration_labels, "symbols": list(panel.symbols)})
    return dg.MaterializeResult(metadata={
        "model_file": dg.MetadataValue.path(str(path)),
        "calibrated_through": str(panel.dates[-1]),
        "calibration_labels": simulation.calibration_labels,
        "labels_used": label_text,
        "labelled_days": int((~unlabelled).sum()),
        "regimes": dg.MetadataValue.md(regime_summary_md(model)),
        "p_today": dg.MetadataValue.json({REGIME_LABELS[k]: round(float(p_today[k]), 4) for k in range(4)}),
    })


@dg.asset(
    deps=["scenario_models"],
    partitions_def=scenario_partitions,
    group_name=GROUP,
    kinds={"jax", "duckdb", "matplotlib"},
    code_version="sim-stress-3",
)
def stress_tests(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, simulation: SimulationSettings):
    """One scenario simulated (``n_paths`` futures over ``horizon_days``) with the baseline and the
    allocator-scaled strategy evaluated on every path: the scenario's rows of the stress dashboard
    (table ``stress_dashboard``: baseline Sharpe, stressed Sharpe, P(drawdown > 20 %), P(drawdown >
    30 %), median recovery months, CVaR 95 %, per book), the shock's path month by month against
    base (table ``stress_paths``: volatility and median drawdown of each book, shocked vs base, and
    a figure), a wealth fan chart and the drawdown distribution. The same random numbers for every
    scenario, so differences are not sampling noise; ``base`` is simulated once per (model file, settings,
    sim code) and kept under the simulation root (``base_cache/``) for every partition process."""
    from alloc_assets.sim.engine.kernel import SimSettings, enable_compilation_cache
    from alloc_assets.sim.scenarios.run import run_scenario
    from alloc_assets.sim.scenarios.figures import shock_path_png

    enable_compilation_cache(alloc_home() / "jax-cache")  # a new process loads the compiled kernel
    name = context.partition_key
    model_file = simulation.root() / "world_model.pkl"
    saved = load_world(model_file)
    settings = SimSettings(dtype=simulation.dtype)
    kwargs = dict(world_model=saved["model"], n_paths=simulation.n_paths, horizon_days=simulation.horizon_days,
                  key=simulation.seed, start=saved["start"], settings=settings, devices=simulation.devices)
    result = run_scenario(name, **kwargs)
    # every scenario is compared with "base" under the same seed: simulated once per (model file,
    # settings) and kept under the simulation root, so partition processes share it
    base_file = base_result_path(simulation.root(), model_file.read_bytes(), {
        "n_paths": simulation.n_paths, "horizon_days": simulation.horizon_days, "seed": simulation.seed,
        "settings": dataclasses.asdict(settings)})
    base, base_reused = load_or_compute(base_file, lambda: result if name == "base" else run_scenario("base", **kwargs))
    rows = result.dashboard_rows(base)
    frame = dashboard_frame(rows, saved["last_date"])
    # computed above without the warehouse; the writer's lock is held only for this short write
    warehouse.append_rows("stress_dashboard", frame, "scenario = ?", [name])
    paths = stress_path_frame(result, base)
    warehouse.append_rows("stress_paths", paths, "scenario = ?", [name])  # one transaction: the scenario's rows replaced
    figures = {}
    for kind, png in (("fan", result.fan_chart_png()), ("drawdowns", result.drawdown_png()),
                      ("shock_path", shock_path_png(result, base))):
        path = simulation.root() / f"{name}_{kind}.png"
        path.write_bytes(png)
        figures[kind] = path
    return dg.MaterializeResult(metadata={
        "scenario": name,
        "dashboard": dg.MetadataValue.md(dashboard_md(rows)),
        "wealth_fan": dg.MetadataValue.md(f"![fan](data:image/png;base64,{base64.b64encode(figures['fan'].read_bytes()).decode()})"),
        "shock_path": dg.MetadataValue.md(path_table_md(paths) + "\n\n![shock path](data:image/png;base64,"
                                          f"{base64.b64encode(figures['shock_path'].read_bytes()).decode()})"),
        "figures": dg.MetadataValue.json({k: str(v) for k, v in figures.items()}),
        "provenance": dg.MetadataValue.json(result.provenance),
        "base_result": dg.MetadataValue.json({"file": str(base_file), "reused": base_reused}),
        "n_paths": simulation.n_paths,
        "horizon_days": simulation.horizon_days,
    })


SIM_ASSETS = [scenario_models, stress_tests]
