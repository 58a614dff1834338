"""Figures of a :class:`~alloc_assets.sim.search.run.SearchResult`, as PNG bytes (matplotlib's Agg
canvas, imported when a figure is drawn): convergence, risk and return, sensitivity, the best robust
configuration against each scenario's best, and its allocation path."""

from __future__ import annotations

import numpy as np

from alloc_assets.core.common.markdown import number_cell
from alloc_assets.core.common.png import new_figure, png_bytes
from alloc_assets.sim.search.report import describe
from alloc_assets.sim.search.run import SearchResult


def search_figures(result: SearchResult) -> dict[str, bytes]:
    """Every figure of the result by kind (``allocation_path`` only when the result has one)."""
    pngs = {"convergence": convergence_png(result), "risk_return": risk_return_png(result),
            "sensitivity": sensitivity_png(result), "robust_vs_best": robust_vs_best_png(result),
            "scenario_comparison": scenario_comparison_png(result)}
    if result.allocation_path:
        pngs["allocation_path"] = allocation_path_png(result)
    return pngs


def _colours(names) -> dict[str, str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {s: cmap(i % 10) for i, s in enumerate(names)}


def convergence_png(result: SearchResult) -> bytes:
    """Best objective so far per scenario against the number of configurations evaluated."""
    fig = new_figure((9.0, 4.2))
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
    return png_bytes(fig)


def risk_return_png(result: SearchResult) -> bytes:
    """Mean volatility against mean annual return of every configuration, one colour per scenario;
    the best robust configuration ringed."""
    fig = new_figure((9.0, 5.0))
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
    return png_bytes(fig)


def sensitivity_png(result: SearchResult) -> bytes:
    """Spearman correlation of each continuous parameter with the objective, per scenario and mean."""
    cols = [*result.scenarios, "mean"]
    rows = list(result.sensitivity)
    grid = np.array([[result.sensitivity[p][c] for c in cols] for p in rows], dtype=np.float64)
    fig = new_figure((1.6 + 1.1 * len(cols), 1.2 + 0.6 * len(rows)))
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, number_cell(grid[i, j], "+.2f"), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title("Sensitivity: Spearman(parameter, objective)")
    fig.colorbar(im, ax=ax, shrink=0.8)
    return png_bytes(fig)


def robust_vs_best_png(result: SearchResult) -> bytes:
    """Objective of the best robust configuration in each scenario beside each scenario's best."""
    fig = new_figure((9.0, 4.2))
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
    ax.set_title(f"Best robust configuration across scenarios (robustness {number_cell(r['robustness'], '.0%')})")
    ax.legend(loc="best", fontsize=8)
    return png_bytes(fig)


_COMPARED = (("objective", "objective (mean Sharpe - penalties)", 1.0), ("sharpe", "Sharpe (mean over paths)", 1.0),
             ("vol", "volatility (%)", 100.0), ("max_drawdown", "max drawdown (%)", 100.0))


def scenario_comparison_png(result: SearchResult) -> bytes:
    """Scenario comparison: objective, Sharpe, volatility and max drawdown (path means) of the best
    robust configuration beside each scenario's own best, grouped by scenario."""
    fig = new_figure((11.0, 6.4))
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
    return png_bytes(fig)


def allocation_path_png(result: SearchResult) -> bytes:
    """Allocation path of the best robust configuration: its equity weight over the horizon, median
    and 5-95 % band across the simulated paths, one panel per scenario."""
    names = list(result.allocation_path)
    fig = new_figure((3.0 * len(names), 3.4))
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
    fig.suptitle(f"Allocation path of the best robust configuration ({describe(r)})", fontsize=10)
    return png_bytes(fig)
