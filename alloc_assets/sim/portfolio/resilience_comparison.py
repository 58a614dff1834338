"""The held-out comparison of the resilience optimum ``w*`` with the benchmark portfolios.

:func:`run_resilience` simulates training and held-out paths (independent keys), optimises on the
training paths, fits skfolio's mean-variance (maximum Sharpe), minimum variance and risk parity
(equal variance budgets) on the training paths' daily returns (all paths stacked), adds equal
weights, all with the same bounds, and evaluates every method with the exact objective on the
held-out paths, with the paired standard error of each difference to ``w*``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from alloc_assets.sim.engine.metrics import CLUSTER_WINDOW
from alloc_assets.sim.portfolio.resilience import (
    COMPONENTS,
    OptimiserResult,
    OptimiserSettings,
    ResilienceObjective,
    check_bounds,
    evaluate,
    optimise,
    project_bounded_simplex,
)

METHODS: tuple[str, ...] = ("resilience", "mean_variance", "min_variance", "risk_parity", "equal_weight")


def benchmark_weights(daily_returns: np.ndarray, lo, hi) -> dict[str, np.ndarray]:
    """The benchmark portfolios fitted by skfolio on daily simple returns ``(T, N)`` (rows = days
    of all training paths stacked), with the same bounds as ``w*``.

    ``mean_variance``: ``MeanRisk`` maximising the Sharpe ratio (variance, risk-free 0);
    ``min_variance``: ``MeanRisk`` minimising the variance; ``risk_parity``: ``RiskBudgeting`` on
    variance with equal budgets; ``equal_weight``: 1/N projected onto the bounds.
    """
    from skfolio import RiskMeasure
    from skfolio.optimization import MeanRisk, ObjectiveFunction, RiskBudgeting

    x = np.asarray(daily_returns, dtype=np.float64)
    n = x.shape[1]
    lo, hi = check_bounds(n, lo, hi)
    kw = dict(min_weights=lo, max_weights=hi)
    models = {
        "mean_variance": MeanRisk(objective_function=ObjectiveFunction.MAXIMIZE_RATIO, risk_measure=RiskMeasure.VARIANCE, **kw),
        "min_variance": MeanRisk(objective_function=ObjectiveFunction.MINIMIZE_RISK, risk_measure=RiskMeasure.VARIANCE, **kw),
        "risk_parity": RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, **kw),
    }
    fitted = {name: np.asarray(model.fit(x).weights_, dtype=np.float64) for name, model in models.items()}
    fitted["equal_weight"] = np.full(n, 1.0 / n)
    with jax.enable_x64(True):  # the solver's weights may leave the bounds by ~1e-10: project (in float64)
        return {name: np.asarray(project_bounded_simplex(jnp.asarray(w), jnp.asarray(lo), jnp.asarray(hi)))
                for name, w in fitted.items()}


def summarise(per_path: dict) -> dict:
    """Means over paths of the exact components; ``p_drawdown`` is P(DD > x); the objective's
    standard error."""
    out = {k: float(np.mean(per_path[k])) for k in COMPONENTS}
    out["objective_se"] = float(np.std(per_path["objective"], ddof=1) / math.sqrt(per_path["objective"].size))
    out["max_drawdown_mean"] = float(np.mean(per_path["max_drawdown"]))
    return out


@dataclass(frozen=True)
class ResilienceResult:
    """Weights per method (N,), exact components on the training and the held-out paths per method,
    and for every benchmark the paired difference ``J(w*) - J(method)`` on the held-out paths
    (``diff``, its standard error ``se`` over paths)."""

    weights: dict[str, np.ndarray]
    heldout: dict[str, dict]
    train: dict[str, dict]
    paired: dict[str, dict]
    optimiser: OptimiserResult
    settings: dict
    timings_s: dict = field(default_factory=dict)

    def table(self) -> dict[str, np.ndarray]:
        """The per-method comparison as columns (one row per method): exact components and objective on
        the held-out and the training paths, and the held-out paired gain of ``w*`` over the method."""
        rows = {"method": np.array(METHODS)}
        for split, res in (("heldout", self.heldout), ("train", self.train)):
            for k in (*COMPONENTS, "objective_se"):
                rows[f"{split}_{k}"] = np.array([res[m][k] for m in METHODS])
        rows["heldout_gain_of_resilience"] = np.array([self.paired[m]["diff"] for m in METHODS])
        rows["heldout_gain_se"] = np.array([self.paired[m]["se"] for m in METHODS])
        return rows

    def note(self) -> str:
        """One line per benchmark: by how much ``w*`` wins or loses on the held-out paths."""
        lines = []
        for m in METHODS[1:]:
            d, se = self.paired[m]["diff"], self.paired[m]["se"]
            verdict = "beats" if d > 0 else "does not beat"
            lines.append(f"w* {verdict} {m} on the held-out exact objective by {d:+.4f} (paired s.e. {se:.4f}, "
                         f"{self.heldout['resilience']['objective']:.4f} vs {self.heldout[m]['objective']:.4f})")
        return "\n".join(lines)


def simple_paths(world_model, n_paths: int, horizon: int, key, dtype: str = "float32") -> np.ndarray:
    """Simulated daily simple returns ``(H, N, P)`` of ``world_model`` (``expm1`` of the engine's log returns)."""
    from alloc_assets.sim.engine.kernel import SimSettings, simulate_log_returns

    logr = simulate_log_returns(world_model, n_paths, horizon, key, SimSettings(dtype=dtype))
    return np.expm1(np.asarray(logr))


def run_resilience(world_model, n_paths: int = 2000, n_heldout_paths: int = 2000, horizon: int = 252, seed: int = 0,
                   objective: ResilienceObjective = ResilienceObjective(), lo=0.0, hi=1.0,
                   optimiser: OptimiserSettings = OptimiserSettings(), dtype: str = "float32") -> ResilienceResult:
    """Simulate, optimise, fit the benchmarks and compare them on held-out paths.

    Keys: training paths ``fold_in(key(seed), 0)``, held-out paths ``fold_in(key(seed), 1)``
    (independent draws of the same world model).
    """
    lo, hi = check_bounds(world_model.n_assets, lo, hi)
    timings = {}
    t0 = time.perf_counter()
    root = jax.random.key(int(seed))
    train = simple_paths(world_model, n_paths, horizon, jax.random.fold_in(root, 0), dtype)
    held = simple_paths(world_model, n_heldout_paths, horizon, jax.random.fold_in(root, 1), dtype)
    timings["simulate_s"] = time.perf_counter() - t0
    n = train.shape[1]
    with jax.enable_x64(dtype == "float64"):
        t0 = time.perf_counter()
        opt = optimise(train, objective, lo, hi, settings=optimiser)
        timings["optimise_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        weights = {"resilience": opt.weights, **benchmark_weights(np.moveaxis(train, 2, 1).reshape(-1, n), lo, hi)}
        timings["benchmarks_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        held_paths = {m: evaluate(weights[m], held, objective) for m in METHODS}
        train_paths = {m: evaluate(weights[m], train, objective) for m in METHODS}
        timings["evaluate_s"] = time.perf_counter() - t0
    heldout = {m: summarise(v) for m, v in held_paths.items()}
    train_sum = {m: summarise(v) for m, v in train_paths.items()}
    paired = {}
    for m in METHODS:
        d = held_paths["resilience"]["objective"] - held_paths[m]["objective"]
        paired[m] = {"diff": float(d.mean()), "se": float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")}
    settings = {"n_paths": n_paths, "n_heldout_paths": n_heldout_paths, "horizon_days": horizon, "seed": seed,
                "train_key": f"fold_in(key({seed}), 0)", "heldout_key": f"fold_in(key({seed}), 1)", "dtype": dtype,
                "rebalancing": "daily, back to the fixed weights", "min_weight": lo.tolist(), "max_weight": hi.tolist(),
                "objective": objective.as_dict(), "optimiser": asdict(optimiser), "cluster_window": CLUSTER_WINDOW,
                "recovery_censoring": "unrecovered paths count horizon - trough days"}
    return ResilienceResult(weights, heldout, train_sum, paired, opt, settings, {k: round(v, 3) for k, v in timings.items()})
