"""The strategy search: batches of configurations from :class:`SearchPlan`, scored in every
scenario until the plateau rule or the budget, assembled into a :class:`SearchResult`.

A unit of work is one batch scored in one scenario (:func:`evaluate_unit`). A configuration's
numbers do not depend on its batch mates (every compiled call has the batch's shape), so
:func:`assemble_search` rebuilds :func:`run_search`'s table bit for bit from units evaluated
anywhere, in any order (units after the stop are discarded). The allocation path summarises the
equity weight held each day by one configuration over the paths (5/50/95 % quantiles, mean).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import jax
import numpy as np

from alloc_assets.sim.engine.kernel import as_key
from alloc_assets.sim.search.markets import SEARCH_SCENARIOS, MarketPaths, MarketScenario, simulate_market
from alloc_assets.sim.search.objectives import InvestmentObjectives, robustness_scores, scenario_objective, spearman
from alloc_assets.sim.search.rule import (PARAMETERS, WEIGHT_FUNCTIONS, StrategyParams, evaluate_strategies,
                                          strategy_params)
from alloc_assets.sim.search.space import SearchSpace, plateau_reached, sliced_latin_hypercube


@dataclass
class SearchResult:
    """Outcome of :func:`run_search`.

    table : columns ``{name: (n,) array}``: ``config``, ``batch``, the parameters
        (:data:`PARAMETERS`, ``weight_fn`` an index; ``weight_fn_name``), per scenario
        ``<scenario>_objective|sharpe|vol|max_drawdown|var_95|cvar_95|cost_per_year|annual_return``,
        ``mean_objective`` and ``robustness``.
    best_per_scenario : ``{scenario: row}`` (row = ``{column: value}``), highest objective.
    best_robust : row of the highest robustness (ties: highest mean objective).
    sensitivity : ``{parameter: {scenario | "mean": Spearman(parameter, objective)}}`` for the
        four continuous parameters.
    weight_fn_objective : ``{weight function: {scenario | "mean": mean objective}}``.
    summary : a deterministic text made from these numbers.
    allocation_path : ``{scenario: allocation_path(...)}`` of the best robust configuration (its
        equity weight per day, 5/50/95 % quantiles and mean over the paths); empty if not computed.
    """

    table: dict[str, np.ndarray]
    scenarios: tuple[str, ...]
    best_per_scenario: dict[str, dict]
    best_robust: dict
    sensitivity: dict[str, dict[str, float]]
    weight_fn_objective: dict[str, dict[str, float]]
    n_evaluated: int
    stopped_early: bool
    settings: dict
    summary: str
    timings_s: dict = field(default_factory=dict)
    allocation_path: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def row(self, i: int) -> dict:
        """Row ``i`` of the table as plain Python values."""
        return {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in self.table.items()}


_SCENARIO_COLUMNS = ("objective", "sharpe", "vol", "max_drawdown", "var_95", "cvar_95", "cost_per_year", "annual_return")


@dataclass(frozen=True)
class SearchPlan:
    """Everything that decides a search's result (the arguments of :func:`run_search`).

    Frozen and picklable: a distributed run sends it to every unit. The configurations of batch
    ``b`` are :meth:`batch_params` (slice ``b`` of the sliced Latin hypercube drawn with
    ``numpy.random.default_rng(seed)``); scenario ``s`` is simulated by :meth:`simulate` (key
    ``seed``: the same shocks in every scenario, the same paths in every process).
    """

    scenarios: tuple[MarketScenario, ...] = SEARCH_SCENARIOS
    n_paths: int = 1000
    horizon_days: int = 1260
    seed: int = 0
    budget: int = 100
    batch_size: int = 20
    warmup_days: int = 252
    config_chunk: int | None = None
    devices: int | None = None
    space: SearchSpace = SearchSpace()
    objectives: InvestmentObjectives = InvestmentObjectives()
    early_stopping: bool = True
    stop_window: int = 20
    stop_rel_tol: float = 0.01
    robust_fraction: float = 0.8

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.budget < self.batch_size or self.budget % self.batch_size:
            raise ValueError(f"budget ({self.budget}) must be a positive multiple of batch_size ({self.batch_size})")
        names = [s.name for s in self.scenarios]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"need at least one scenario, with distinct names: {names}")

    @property
    def n_batches(self) -> int:
        return self.budget // self.batch_size

    @property
    def scenario_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.scenarios)

    def scenario(self, name: str) -> MarketScenario:
        for s in self.scenarios:
            if s.name == name:
                return s
        raise KeyError(f"scenario {name!r} is not in the plan {self.scenario_names}")

    def unit_cube(self) -> np.ndarray:
        """The sliced Latin hypercube in [0, 1): (n_batches, batch_size, len(PARAMETERS))."""
        return sliced_latin_hypercube(self.n_batches, self.batch_size, len(PARAMETERS), np.random.default_rng(self.seed))

    def batch_params(self, batch: int) -> StrategyParams:
        """The ``batch_size`` configurations of batch ``batch`` (0-based)."""
        if not 0 <= batch < self.n_batches:
            raise IndexError(f"batch {batch} outside 0..{self.n_batches - 1}")
        return self.space.scale(self.unit_cube()[batch])

    def units(self) -> list[tuple[str, int]]:
        """Every (scenario, batch) unit of work, in evaluation order (batch-major)."""
        return [(s.name, b) for b in range(self.n_batches) for s in self.scenarios]

    def simulate(self, scenario: str) -> MarketPaths:
        """The scenario's ``warmup_days + horizon_days`` days on ``n_paths`` paths (key ``seed``)."""
        return simulate_market(self.scenario(scenario), self.n_paths, self.warmup_days + self.horizon_days, as_key(self.seed))

    def settings(self) -> dict:
        return {"n_paths": self.n_paths, "horizon_days": self.horizon_days, "warmup_days": self.warmup_days, "seed": self.seed,
                "budget": self.budget, "batch_size": self.batch_size, "stop_window": self.stop_window,
                "stop_rel_tol": self.stop_rel_tol, "robust_fraction": self.robust_fraction,
                "objectives": dataclasses.asdict(self.objectives), "space": dataclasses.asdict(self.space),
                "backend": jax.default_backend()}


def evaluate_unit(plan: SearchPlan, scenario: str, batch: int, paths: MarketPaths | None = None) -> dict[str, np.ndarray]:
    """One unit of a search: batch ``batch``'s configurations scored in one scenario.

    ``paths``: the scenario's simulated paths when the caller holds them (else simulated here, the
    same numbers). Returns ``{"<scenario>_<column>": (batch_size,) float64}`` for the per-scenario
    columns of the table. A configuration's numbers depend only on the plan, the scenario and the
    batch (the compiled call has the same shape in every process), so units evaluated anywhere, in
    any order, assemble (:func:`assemble_search`) into exactly :func:`run_search`'s table.
    """
    s = plan.scenario(scenario)
    pth = plan.simulate(scenario) if paths is None else paths
    agg = scenario_objective(evaluate_strategies(pth, plan.batch_params(batch), s.rate, plan.warmup_days,
                                                 plan.config_chunk, plan.devices), plan.objectives)
    return {f"{s.name}_{col}": agg[col] for col in _SCENARIO_COLUMNS}


def _stops_after(plan: SearchPlan, blocks: list[dict[str, np.ndarray]]) -> bool:
    """The stopping rule after ``len(blocks)`` batches (never after the last one)."""
    if not plan.early_stopping or len(blocks) >= plan.n_batches:
        return False
    obj = np.concatenate([np.stack([r[f"{n}_objective"] for n in plan.scenario_names], axis=1) for r in blocks])
    return plateau_reached(obj, plan.stop_window, plan.stop_rel_tol)


def run_search(
    scenarios: tuple[MarketScenario, ...] = SEARCH_SCENARIOS,
    n_paths: int = 1000,
    horizon_days: int = 1260,
    seed: int = 0,
    budget: int = 100,
    batch_size: int = 20,
    warmup_days: int = 252,
    config_chunk: int | None = None,
    devices: int | None = None,
    space: SearchSpace = SearchSpace(),
    objectives: InvestmentObjectives = InvestmentObjectives(),
    early_stopping: bool = True,
    stop_window: int = 20,
    stop_rel_tol: float = 0.01,
    robust_fraction: float = 0.8,
    allocation_path: bool = True,
) -> SearchResult:
    """Latin-hypercube search of the volatility-targeting rule across simulated markets.

    Each scenario is simulated once (``warmup_days + horizon_days`` days, ``n_paths`` paths, key
    ``seed``: the same shocks in every scenario); then batches of ``batch_size`` configurations
    (slices of one sliced Latin hypercube drawn with ``numpy.random.default_rng(seed)``) are
    evaluated on every scenario's paths until :func:`plateau_reached` on the per-scenario
    objectives (``stop_window``, ``stop_rel_tol``; if ``early_stopping``) or ``budget``.
    With ``allocation_path``, the best robust configuration's equity weight path is summarised on
    the same paths (:func:`search_allocation_paths`). The same arguments give a bit-identical table.
    """
    plan = SearchPlan(scenarios, n_paths, horizon_days, seed, budget, batch_size, warmup_days, config_chunk, devices,
                      space, objectives, early_stopping, stop_window, stop_rel_tol, robust_fraction)
    timings = {"simulate_s": 0.0, "evaluate_s": 0.0}
    t0 = time.perf_counter()
    paths = {s: plan.simulate(s) for s in plan.scenario_names}
    jax.block_until_ready([(p.equity, p.bond) for p in paths.values()])
    timings["simulate_s"] = time.perf_counter() - t0

    blocks: list[dict[str, np.ndarray]] = []  # per batch: {scenario column: (batch,)}
    stopped_early = False
    t1 = time.perf_counter()
    for b in range(plan.n_batches):
        block = {}
        for s in plan.scenario_names:
            block.update(evaluate_unit(plan, s, b, paths[s]))
        blocks.append(block)
        if _stops_after(plan, blocks):
            stopped_early = True
            break
    timings["evaluate_s"] = time.perf_counter() - t1
    result = _result(plan, blocks, stopped_early, timings)
    if allocation_path:
        t2 = time.perf_counter()
        result.allocation_path = search_allocation_paths(plan, result.best_robust, paths)
        timings["allocation_path_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    return result


def assemble_search(plan: SearchPlan, units: dict[tuple[str, int], dict[str, np.ndarray]],
                    allocation_path: bool = True) -> SearchResult:
    """The search result from its units (:func:`evaluate_unit`), as :func:`run_search` makes it.

    ``units[(scenario, batch)]``: one unit's columns. Batches are taken in order and the stopping
    rule applied after each, exactly as :func:`run_search` does, so the table is bit-identical to
    its own; units of batches after the stop are ignored (a distributed run may evaluate them
    speculatively), missing units before it are an error. With ``allocation_path`` the scenarios
    are simulated again (the same paths) for :func:`search_allocation_paths`.
    """
    t0 = time.perf_counter()
    blocks: list[dict[str, np.ndarray]] = []
    stopped_early = False
    for b in range(plan.n_batches):
        missing = [s for s in plan.scenario_names if (s, b) not in units]
        if missing:
            raise KeyError(f"batch {b}: no unit for scenarios {missing} (units given: {sorted(units)})")
        block = {}
        for s in plan.scenario_names:
            block.update(units[(s, b)])
        blocks.append(block)
        if _stops_after(plan, blocks):
            stopped_early = True
            break
    timings = {"assemble_s": time.perf_counter() - t0}
    result = _result(plan, blocks, stopped_early, timings)
    if allocation_path:
        t1 = time.perf_counter()
        result.allocation_path = search_allocation_paths(plan, result.best_robust)
        timings["allocation_path_s"] = time.perf_counter() - t1
    timings["total_s"] = time.perf_counter() - t0
    return result


def _result(plan: SearchPlan, blocks: list[dict[str, np.ndarray]], stopped_early: bool, timings: dict) -> SearchResult:
    """The table, the bests, the sensitivities and the summary of the evaluated batches."""
    names = plan.scenario_names
    params = [plan.batch_params(b) for b in range(len(blocks))]
    n = sum(p.n_configs for p in params)
    table: dict[str, np.ndarray] = {
        "config": np.arange(n),
        "batch": np.concatenate([np.full(p.n_configs, i) for i, p in enumerate(params)]),
    }
    for name in PARAMETERS:
        table[name] = np.concatenate([np.asarray(getattr(p, name)) for p in params])
    table["weight_fn_name"] = np.array([WEIGHT_FUNCTIONS[i] for i in table["weight_fn"]])
    for col in blocks[0]:
        table[col] = np.concatenate([r[col] for r in blocks])
    obj = np.stack([table[f"{s}_objective"] for s in names], axis=1)
    table["mean_objective"] = obj.mean(axis=1)
    table["robustness"] = robustness_scores(obj, plan.robust_fraction)

    best = {s: int(np.argmax(table[f"{s}_objective"])) for s in names}
    order = np.lexsort((np.arange(n), -table["mean_objective"], -table["robustness"]))
    robust = int(order[0])
    sens = {}
    for name in PARAMETERS[:4]:
        sens[name] = {s: spearman(table[name], table[f"{s}_objective"]) for s in names}
        sens[name]["mean"] = spearman(table[name], table["mean_objective"])
    wf_obj = {}
    for i, fn in enumerate(WEIGHT_FUNCTIONS):
        sel = table["weight_fn"] == i
        wf_obj[fn] = {s: float(table[f"{s}_objective"][sel].mean()) if sel.any() else float("nan") for s in names}
        wf_obj[fn]["mean"] = float(table["mean_objective"][sel].mean()) if sel.any() else float("nan")
    result = SearchResult(table, names, {}, {}, sens, wf_obj, n, stopped_early, plan.settings(), "", timings)
    result.best_per_scenario = {s: result.row(i) for s, i in best.items()}
    result.best_robust = result.row(robust)
    result.summary = summarize(result)
    return result


ALLOCATION_QUANTILES: tuple[float, ...] = (0.05, 0.5, 0.95)


def allocation_path(paths: MarketPaths, params: StrategyParams, rate: float, warmup_days: int = 252,
                    quantiles: tuple[float, ...] = ALLOCATION_QUANTILES) -> dict[str, np.ndarray]:
    """Cross-path summary of ONE configuration's equity weight over the horizon.

    Returns ``{"day": 1..horizon, "p05"/"p50"/"p95" (one key per quantile, ``p`` + percent):
    np.quantile over the paths (linear interpolation), "mean": the path mean}``, each (horizon,)
    float64; the weight of day t is the one held during day t (:func:`evaluate_strategies`).
    """
    if params.n_configs != 1:
        raise ValueError(f"allocation_path takes one configuration, got {params.n_configs}")
    w = evaluate_strategies(paths, params, rate, warmup_days, config_chunk=1, devices=1, return_weights=True)["weights"][0]
    w = np.asarray(w, dtype=np.float64)
    q = np.quantile(w, quantiles, axis=1)
    out = {"day": np.arange(1, w.shape[0] + 1)}
    out.update({f"p{round(100 * x):02d}": q[i] for i, x in enumerate(quantiles)})
    out["mean"] = w.mean(axis=1)
    return out


def params_of_row(row: dict) -> StrategyParams:
    """The one configuration of a table row (``row`` as :meth:`SearchResult.row` gives it)."""
    return strategy_params(row["target_vol"], row["window_months"], row["risk_aversion"], int(row["weight_fn"]), row["cost_bps"])


def search_allocation_paths(plan: SearchPlan, row: dict, paths: dict[str, MarketPaths] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """:func:`allocation_path` of the configuration ``row`` in every scenario of the plan, on the
    plan's paths (``paths[scenario]`` when given, else simulated again: the same numbers)."""
    params = params_of_row(row)
    out = {}
    for s in plan.scenarios:
        pth = paths[s.name] if paths is not None else plan.simulate(s.name)
        out[s.name] = allocation_path(pth, params, s.rate, plan.warmup_days)
    return out


def _describe(row: dict) -> str:
    return (f"#{row['config']} {row['weight_fn_name']}, tau {100 * row['target_vol']:.1f} %, window "
            f"{row['window_months']:.1f} m, lambda {row['risk_aversion']:.2f}, cost {row['cost_bps']:.1f} bp")


def summarize(result: SearchResult) -> str:
    """A deterministic written summary of a :class:`SearchResult` (numbers only from the result)."""
    st = result.settings
    lines = [
        f"Strategy search over {len(result.scenarios)} simulated markets ({st['n_paths']:,} paths x "
        f"{st['horizon_days']:,} days, seed {st['seed']}): {result.n_evaluated} of {st['budget']} configurations "
        + ("evaluated; stopped early (no scenario's best objective improved by "
           f"{100 * st['stop_rel_tol']:g} % over the last {st['stop_window']})." if result.stopped_early
           else "evaluated (the whole budget)."),
        "Best configuration per scenario (objective = mean Sharpe minus the penalties):",
    ]
    for s in result.scenarios:
        r = result.best_per_scenario[s]
        lines.append(f"  {s}: {_describe(r)} -> objective {r[f'{s}_objective']:.3f}, Sharpe {r[f'{s}_sharpe']:.3f}, "
                     f"vol {100 * r[f'{s}_vol']:.1f} %, max drawdown {100 * r[f'{s}_max_drawdown']:.1f} %.")
    r = result.best_robust
    n_s = len(result.scenarios)
    lines.append(f"Most robust: {_describe(r)}: within {100 * (1 - st['robust_fraction']):g} % of the best in "
                 f"{round(r['robustness'] * n_s)} of {n_s} scenarios, mean objective {r['mean_objective']:.3f}.")
    sens = {k: v["mean"] for k, v in result.sensitivity.items()}
    ranked = sorted(sens, key=lambda k: (-abs(sens[k]) if np.isfinite(sens[k]) else 0.0, k))
    lines.append("Sensitivity of the mean objective (Spearman): "
                 + ", ".join(f"{k} {sens[k]:+.2f}" for k in ranked) + f"; strongest: {ranked[0]}.")
    wf = {k: v["mean"] for k, v in result.weight_fn_objective.items()}
    best_fn = max((k for k in wf if np.isfinite(wf[k])), key=lambda k: (wf[k], k))
    lines.append("Mean objective by weight function: " + ", ".join(f"{k} {v:.3f}" for k, v in wf.items())
                 + f"; best on average: {best_fn}.")
    return "\n".join(lines)
