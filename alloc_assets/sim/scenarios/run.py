"""Running a scenario: both books on every path, the per-book summary, the monthly path of a shock
and the stress dashboard (scenario x book). Every scenario is run with the same key (common random
numbers), so differences between scenarios are not sampling noise of different draws.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from alloc_assets.sim.engine import allocator_state as alloc_state
from alloc_assets.sim.engine import books as strat
from alloc_assets.sim.engine.kernel import BOOKS, SimSettings, StrategyRun, run_strategies
from alloc_assets.sim.models.calendar import DAYS_PER_MONTH, SimCalendar, regular_calendar
from alloc_assets.sim.models.world import WorldModel
from alloc_assets.sim.scenarios.catalogue import QUANTILES, SCENARIO_NAMES, ScenarioSpec, get_scenario
from alloc_assets.sim.scenarios.scenario_world import scenario_cash_rate, scenario_world_model



@dataclass(frozen=True)
class ScenarioResult:
    """One scenario run: per-path metrics of both books, summaries, wealth fan and provenance.

    metrics : ``{"baseline" | "allocator": {PathMetric value: (n_paths,)}}``.
    summary : ``{"baseline" | "allocator": {measure: float}}`` (see :func:`summarise`).
    wealth_days : (S,) simulated days of the wealth snapshots.
    wealth_quantiles : ``{book: (len(QUANTILES), S)}`` wealth quantiles across paths.
    """

    name: str
    spec: ScenarioSpec
    n_paths: int
    horizon_days: int
    metrics: dict
    summary: dict
    wealth_days: np.ndarray
    wealth_quantiles: dict
    quantiles: tuple[float, ...]
    provenance: dict
    elapsed_s: float
    settings: dict = field(default_factory=dict)
    monthly: dict = field(default_factory=dict)

    def path_rows(self) -> list[dict]:
        """The shock's path month by month, per book (table ``stress_paths``): ``month`` (1..),
        ``vol_annual`` = the cross-path standard deviation of the month's return x sqrt(12),
        ``drawdown_median`` = the median across paths of the drawdown at the month's end (from the
        monthly wealth snapshots), ``wealth_median``."""
        rows = []
        for book in BOOKS:
            m = self.monthly[book]
            for i in range(len(m["vol_annual"])):
                rows.append({"scenario": self.name, "book": book, "month": i + 1, "vol_annual": float(m["vol_annual"][i]),
                             "drawdown_median": float(m["drawdown_median"][i]), "wealth_median": float(m["wealth_median"][i])})
        return rows

    def dashboard_rows(self, base: "ScenarioResult | None" = None) -> list[dict]:
        """This scenario's rows of the stress dashboard (see :func:`stress_dashboard`)."""
        return stress_dashboard({self.name: self} if base is None else {base.name: base, self.name: self},
                                base=base.name if base is not None else self.name, names=[self.name])

    def fan_chart_png(self) -> bytes:
        from alloc_assets.sim.scenarios.figures import fan_chart_png

        return fan_chart_png(self)

    def drawdown_png(self) -> bytes:
        from alloc_assets.sim.scenarios.figures import drawdown_distribution_png

        return drawdown_distribution_png(self)


def summarise(metrics: Mapping[str, np.ndarray], terminal_wealth: np.ndarray | None = None) -> dict:
    """Cross-path summary of one book: means, medians, tail probabilities (plain floats, JSON-safe).

    ``median_recovery_months`` counts a path that has not recovered by the horizon as never
    recovering (+inf); it is None when more than half of the paths have not recovered.
    """
    mdd = metrics["max_drawdown"]
    rec = metrics["recovery_days"]
    rec_inf = np.where(np.isnan(rec), np.inf, rec)
    med = float(np.median(rec_inf))
    out = {
        "sharpe_mean": float(np.nanmean(metrics["sharpe"])),
        "sharpe_median": float(np.nanmedian(metrics["sharpe"])),
        "annual_return_mean": float(np.nanmean(metrics["annual_return"])),
        "annual_return_median": float(np.nanmedian(metrics["annual_return"])),
        "annual_volatility_mean": float(np.nanmean(metrics["annual_volatility"])),
        "max_drawdown_median": float(np.median(mdd)),
        "p_drawdown_20": float(np.mean(mdd < -0.20)),
        "p_drawdown_30": float(np.mean(mdd < -0.30)),
        "median_recovery_months": med / DAYS_PER_MONTH if np.isfinite(med) else None,
        "share_unrecovered": float(np.mean(np.isnan(rec))),
        "var_95_mean": float(np.mean(metrics["var_95"])),
        "cvar_95_mean": float(np.mean(metrics["cvar_95"])),
        "worst_day_mean": float(np.mean(metrics["worst_day"])),
        "vol_cluster_share_mean": float(np.nanmean(metrics["vol_cluster_share"])),
    }
    if terminal_wealth is not None:
        total = np.sort(terminal_wealth - 1.0)
        k = max(1, int(np.floor(0.05 * total.size)))
        out["horizon_cvar_95"] = float(np.mean(total[:k]))
    return out


def run_scenario(
    name: str | ScenarioSpec,
    world_model: WorldModel,
    n_paths: int,
    horizon_days: int,
    key,
    start: alloc_state.AllocatorStart | None = None,
    p0_today: np.ndarray | None = None,
    strategy: strat.StrategyConfig = strat.StrategyConfig(),
    allocator: alloc_state.AllocatorConfig | None = None,
    calendar: SimCalendar | None = None,
    settings: SimSettings = SimSettings(),
    devices: int | None = None,
) -> ScenarioResult:
    """Simulate one scenario and run the baseline and the allocator book on every path.

    Parameters
    ----------
    name : a key of ``SCENARIOS`` (or a ``ScenarioSpec``).
    world_model : the calibrated model (``calibrate_world_model``) over the equities.
    n_paths, horizon_days : paths and trading days simulated.
    key : PRNG key or int seed (use the same one for every scenario: common random numbers).
    start : allocator start (``allocator.start_from_panel`` on the history for today's state;
        default a fresh history with the pipeline's priors). Its encoder sees the equities only.
    p0_today : today's regime probabilities (``from_today``; default ``world_model.p0``).
    strategy, allocator : settings of the books and of the allocator (``feature_assets`` is set
        to the number of equities).
    calendar : default: rebalance every 21 days, thresholds refreshed every 63.
    settings : engine settings (block size, chunk size, dtype).
    devices : use at most this many JAX devices (default all; results do not depend on it).

    Returns
    -------
    ``ScenarioResult``; ``.dashboard_rows(base_result)``, ``.fan_chart_png()``, ``.drawdown_png()``.
    """
    spec = name if isinstance(name, ScenarioSpec) else get_scenario(name)
    n_eq = world_model.n_assets
    model = scenario_world_model(spec, world_model, p0_today)
    cfg = dataclasses.replace(allocator or alloc_state.AllocatorConfig(), feature_assets=n_eq)
    if start is None:
        start = alloc_state.fresh_state(np.ones(n_eq + 1), cfg)
    cal = calendar or regular_calendar(horizon_days)
    if cal.horizon != horizon_days:
        raise ValueError(f"the calendar covers {cal.horizon} days, not horizon_days={horizon_days}")
    t0 = time.perf_counter()
    run = run_strategies(model, n_paths, cal, key, start=start, allocator=cfg, strategy=strategy,
                         cash_rate_annual=scenario_cash_rate(spec), settings=settings, devices=devices)
    elapsed = time.perf_counter() - t0
    return _result(spec, run, elapsed, settings)


def _result(spec: ScenarioSpec, run: StrategyRun, elapsed: float, settings: SimSettings) -> ScenarioResult:
    summary = {book: summarise(run.metrics[book], run.wealth[book][-1]) for book in BOOKS}
    fan = {book: np.quantile(run.wealth[book], QUANTILES, axis=1) for book in BOOKS}
    monthly = {book: monthly_path(run.wealth[book]) for book in BOOKS}
    return ScenarioResult(
        name=spec.name, spec=spec, n_paths=run.n_paths, horizon_days=run.horizon, metrics=run.metrics, summary=summary,
        wealth_days=run.wealth_days, wealth_quantiles=fan, quantiles=QUANTILES, provenance=run.provenance,
        elapsed_s=elapsed, settings=dataclasses.asdict(settings), monthly=monthly,
    )


def monthly_path(wealth: np.ndarray) -> dict:
    """From wealth snapshots (S, P) taken every month (day 0 first): per month 1..S-1 the
    cross-path volatility of the month's return (annualised, x sqrt(12)), the median drawdown at
    the month's end and the median wealth."""
    w = np.asarray(wealth, dtype=np.float64)
    month = w[1:] / w[:-1] - 1.0
    drawdown = w / np.maximum.accumulate(w, axis=0) - 1.0
    return {"vol_annual": month.std(axis=1, ddof=1) * np.sqrt(12.0), "drawdown_median": np.median(drawdown[1:], axis=1),
            "wealth_median": np.median(w[1:], axis=1)}


def stress_dashboard(results: Mapping[str, ScenarioResult], base: str = "base", names: Sequence[str] | None = None) -> list[dict]:
    """Rows scenario x book: ``scenario, book, baseline_sharpe`` (the book's mean Sharpe in the
    ``base`` scenario), ``stressed_sharpe`` (in this scenario), ``p_drawdown_20``,
    ``p_drawdown_30``, ``median_recovery_months`` (None: most paths not recovered by the horizon),
    ``cvar_95`` (mean per-path daily CVaR 95 %), ``horizon_cvar_95`` (mean of the worst 5 % of
    horizon returns), ``annual_return_median``, ``max_drawdown_median``, ``n_paths``, ``horizon_days``.
    """
    if base not in results:
        raise ValueError(f"the base scenario {base!r} is not among the results {sorted(results)}")
    rows = []
    for name in names or list(results):
        res = results[name]
        for book in BOOKS:
            s = res.summary[book]
            rows.append({
                "scenario": name,
                "book": book,
                "baseline_sharpe": results[base].summary[book]["sharpe_mean"],
                "stressed_sharpe": s["sharpe_mean"],
                "p_drawdown_20": s["p_drawdown_20"],
                "p_drawdown_30": s["p_drawdown_30"],
                "median_recovery_months": s["median_recovery_months"],
                "cvar_95": s["cvar_95_mean"],
                "horizon_cvar_95": s.get("horizon_cvar_95"),
                "annual_return_median": s["annual_return_median"],
                "max_drawdown_median": s["max_drawdown_median"],
                "n_paths": res.n_paths,
                "horizon_days": res.horizon_days,
            })
    return rows


def run_all_scenarios(world_model: WorldModel, n_paths: int, horizon_days: int, key, names: Sequence[str] = SCENARIO_NAMES,
                      **kwargs) -> tuple[dict[str, ScenarioResult], list[dict]]:
    """Every named scenario with the same key, and the dashboard rows (``base`` first if absent)."""
    names = list(names)
    if "base" not in names:
        names = ["base"] + names
    results = {n: run_scenario(n, world_model, n_paths, horizon_days, key, **kwargs) for n in names}
    return results, stress_dashboard(results, "base")
