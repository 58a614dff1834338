"""Simulation layer: ``scenario_models`` (calibrated world model) and ``stress_tests`` (one
partition per scenario, so scenarios run in parallel processes or pods).

The JAX engine lives in ``alloc_assets/sim`` (pure); these assets read the stored history, call it,
write the stress dashboard table (``stress_dashboard``), the shocks' month-by-month paths
(``stress_paths``) and the figures, and attach them to the UI.
"""

import base64
import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
from pydantic import Field

from alloc_assets import sim as sim_package
from alloc_assets.defs.common import load_panel
from alloc_assets.store.readers import history_span
from alloc_assets.core.regime import PROBABILITY_COLUMNS, REGIME_LABELS
from resources.settings import alloc_home
from resources.simulation import SimulationSettings
from resources.warehouse import DuckDBWarehouse

GROUP = "sim"
SCENARIOS = ("base", "bull", "bear", "high_vol", "low_vol", "rates_up_200bp", "credit_spreads_400bp",
             "vol_spike", "combined_2008", "from_today")
scenario_partitions = dg.StaticPartitionsDefinition(list(SCENARIOS))


def base_result_path(root: Path, model_bytes: bytes, settings: dict) -> Path:
    """Where the ``base`` scenario's result for this world model file and these settings is kept:
    ``<root>/base_cache/base-<sha256>.pkl``, the hash over the model file's contents, the settings
    (JSON, sorted keys) and the simulation code (``alloc_assets/sim`` sources), so a changed model,
    setting or engine never reads a stale result."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(model_bytes).digest())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    sim_dir = Path(sim_package.__file__).resolve().parent
    for source in sorted(sim_dir.rglob("*.py")):
        h.update(source.relative_to(sim_dir).as_posix().encode())
        h.update(source.read_bytes())
    return root / "base_cache" / f"base-{h.hexdigest()[:32]}.pkl"


def load_or_compute(path: Path, compute):
    """``(value, True)`` from the pickle at ``path`` if it is there and readable, else
    ``(compute(), False)`` after writing it atomically (a temporary file in the same directory,
    then ``os.replace``): every partition process reads the one result the first one wrote; two
    that start together may both compute it and write the same content."""
    try:
        return pickle.loads(path.read_bytes()), True
    except (FileNotFoundError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        pass
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pickle.dumps(value))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return value, False


def load_world_file(path: Path) -> dict:
    """The saved world model (``scenario_models``' file), or a clear failure: missing, unreadable,
    or written by an older version of the model (re-materialize ``scenario_models``)."""
    import dataclasses as dc

    from alloc_assets.sim.models.world import WorldModel

    if not path.exists():
        raise dg.Failure(allow_retries=False, description=f"{path} does not exist: materialize scenario_models first.")
    try:
        saved = pickle.loads(path.read_bytes())
        model = saved["model"]
        missing = [f.name for f in dc.fields(WorldModel) if f.name not in vars(model)]
    except Exception as exc:  # truncated or foreign file
        raise dg.Failure(allow_retries=False, description=f"{path} cannot be read ({exc}): materialize scenario_models again.") from None
    if missing:
        raise dg.Failure(allow_retries=False, description=f"{path} was written by an older version of the world model "
                                                          f"(no {', '.join(missing)}): materialize scenario_models again.")
    return saved


CALIBRATION_LABELS = ("realised_vol", "allocator")


def calibration_labels(kind: str, log_returns: np.ndarray, regime_labels: np.ndarray, regime_probs: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, str]:
    """The regime labels (T,) to calibrate on (-1: unlabelled day), today's regime probabilities
    (4,) and a description, for ``kind`` in ``CALIBRATION_LABELS`` (see ``SimulationSettings``).

    ``realised_vol`` labels do not come from the allocator (``models.realised_vol_labels``: 21-day
    realised volatility of the equal-weight index against its expanding-window 50/80/95 %
    quantiles), so the simulated world does not switch exactly where the allocator looks; today's
    probabilities are then one-hot on today's label. ``allocator``: the pipeline's labels and
    probabilities (``regime_series``)."""
    from alloc_assets.sim.models.world import realised_vol_labels

    if kind == "allocator":
        return np.asarray(regime_labels), np.asarray(regime_probs[-1], dtype=np.float64), \
            "the allocator's own regime_series labels (flatter the allocator)"
    if kind == "realised_vol":
        labels = realised_vol_labels(log_returns)
        if not (labels >= 0).any():
            raise dg.Failure(allow_retries=False, description="too little history for realised-volatility labels (needs 21 + 252 days)")
        return labels, np.eye(4)[labels[labels >= 0][-1]], \
            "realised-volatility quantiles of the equal-weight index (21 days; expanding 50/80/95 % quantiles; causal)"
    raise dg.Failure(allow_retries=False, description=f"calibration_labels must be one of {CALIBRATION_LABELS}, not {kind!r}")


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
    from alloc_assets.sim.engine.allocator import start_from_panel
    from alloc_assets.sim.models.world import calibrate_world_model

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
    # about half its variance: the review's M1)
    returns = np.diff(np.log(panel.close), axis=0)
    probs = reg.select(*PROBABILITY_COLUMNS).to_numpy()
    labels, p_today, label_text = calibration_labels(simulation.calibration_labels, returns, pipeline_labels[1:], probs)
    unlabelled = labels < 0  # warm-up days: dropped (with their transitions) as non-finite rows
    model = calibrate_world_model(np.where(unlabelled[:, None], np.nan, returns), np.where(unlabelled, 0, labels), p0=p_today)
    start = start_from_panel(panel)
    path = simulation.root() / "world_model.pkl"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps({"model": model, "start": start, "p_today": p_today, "last_date": str(panel.dates[-1]),
                                  "calibration_labels": simulation.calibration_labels, "symbols": list(panel.symbols)}))
    tmp.replace(path)
    trans = np.asarray(model.transition)
    mu = np.asarray(model.means).mean(axis=1) * 252
    chol = np.asarray(model.chol)
    vol = np.sqrt(np.asarray([np.diag(c @ c.T).mean() for c in chol]) * 252)
    lines = ["| regime | stay probability | mean stock log return (ann.) | mean stock vol (ann.) |", "|---|---:|---:|---:|"]
    lines += [f"| {REGIME_LABELS[k]} | {trans[k, k]:.4f} | {mu[k]:.2%} | {vol[k]:.2%} |" for k in range(len(REGIME_LABELS))]
    return dg.MaterializeResult(metadata={
        "model_file": dg.MetadataValue.path(str(path)),
        "calibrated_through": str(panel.dates[-1]),
        "calibration_labels": simulation.calibration_labels,
        "labels_used": label_text,
        "labelled_days": int((~unlabelled).sum()),
        "regimes": dg.MetadataValue.md("\n".join(lines)),
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
    a figure), a wealth fan chart and the drawdown distribution. The same seed for every scenario,
    so differences are not sampling noise; ``base`` is simulated once per (model file, settings,
    sim code) and kept under the simulation root (``base_cache/``) for every partition process."""
    from alloc_assets.sim.engine.kernel import SimSettings, enable_compilation_cache
    from alloc_assets.sim.scenarios.scenarios import run_scenario
    from alloc_assets.sim.scenarios.scenarios import shock_path_png

    enable_compilation_cache(alloc_home() / "jax-cache")  # a new process loads the compiled kernel
    name = context.partition_key
    model_file = simulation.root() / "world_model.pkl"
    saved = load_world_file(model_file)
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
    frame = pl.DataFrame(rows, infer_schema_length=None).with_columns(pl.lit(saved["last_date"]).alias("calibrated_through"))
    # a column that is None in every row (e.g. no path recovered) is still a number column
    frame = frame.with_columns([pl.col(c).cast(pl.Float64) for c, t in frame.schema.items() if t == pl.Null])
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
    cols = ["book", "baseline_sharpe", "stressed_sharpe", "p_drawdown_20", "p_drawdown_30", "median_recovery_months", "cvar_95"]
    table = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        table.append("| " + " | ".join("n/a" if r[c] is None else (f"{r[c]:.4f}" if isinstance(r[c], float) else str(r[c]))
                                       for c in cols) + " |")
    return dg.MaterializeResult(metadata={
        "scenario": name,
        "dashboard": dg.MetadataValue.md("\n".join(table)),
        "wealth_fan": dg.MetadataValue.md(f"![fan](data:image/png;base64,{base64.b64encode(figures['fan'].read_bytes()).decode()})"),
        "shock_path": dg.MetadataValue.md(_path_table(paths) + "\n\n![shock path](data:image/png;base64,"
                                          f"{base64.b64encode(figures['shock_path'].read_bytes()).decode()})"),
        "figures": dg.MetadataValue.json({k: str(v) for k, v in figures.items()}),
        "provenance": dg.MetadataValue.json(result.provenance),
        "base_result": dg.MetadataValue.json({"file": str(base_file), "reused": base_reused}),
        "n_paths": simulation.n_paths,
        "horizon_days": simulation.horizon_days,
    })


def stress_path_frame(result, base) -> pl.DataFrame:
    """The scenario's month-by-month path against ``base`` on the same random numbers (table
    ``stress_paths``): per book and month, ``vol_annual`` (cross-path volatility of the month's
    return, annualised) and ``drawdown_median`` (median drawdown at the month's end), with the base
    scenario's values beside them (``*_base``)."""
    own = pl.DataFrame(result.path_rows(), infer_schema_length=None)
    ref = pl.DataFrame(base.path_rows(), infer_schema_length=None).select(
        "book", "month", pl.col("vol_annual").alias("vol_annual_base"), pl.col("drawdown_median").alias("drawdown_median_base"))
    return own.join(ref, on=["book", "month"], how="left").sort("book", "month")


def _path_table(paths: pl.DataFrame, months: int = 12) -> str:
    """Markdown: the first ``months`` months of both books, shocked vs base."""
    lines = ["| month | book | vol (ann.) | vol base | median drawdown | drawdown base |", "|---:|---|---:|---:|---:|---:|"]
    for r in paths.filter(pl.col("month") <= months).sort("month", "book").iter_rows(named=True):
        lines.append(f"| {r['month']} | {r['book']} | {r['vol_annual']:.1%} | {r['vol_annual_base']:.1%} | "
                     f"{r['drawdown_median']:.1%} | {r['drawdown_median_base']:.1%} |")
    return "\n".join(lines)


SIM_ASSETS = [scenario_models, stress_tests]
