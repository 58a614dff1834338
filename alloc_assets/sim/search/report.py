"""A :class:`~alloc_assets.sim.search.run.SearchResult` as text: the stored frame, the markdown of
the Dagster UI and of ``best_strategies.md`` (numbers only from the result; no computation)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl

from alloc_assets.core.common.markdown import md_table, number_cell
from alloc_assets.sim.search.rule import PARAMETERS
from alloc_assets.sim.search.run import SearchResult


def search_frame(result: SearchResult) -> pl.DataFrame:
    """The result's table as stored: its columns, in order, with their dtypes."""
    return pl.DataFrame({k: np.asarray(v) for k, v in result.table.items()})


def best_robust_config(row: dict) -> dict:
    """The configuration of a table row as JSON-ready values (floats rounded to 6 digits, NaN None)."""
    keys = ("config", "weight_fn_name", *PARAMETERS[:4], "robustness", "mean_objective")

    def value(x):
        if isinstance(x, float):
            return round(x, 6) if math.isfinite(x) else None
        return x

    return {k: value(row[k]) for k in keys}


def describe(row: dict) -> str:
    """One line naming a configuration of the table: number, weight function and parameters."""
    return (f"#{row['config']} {row['weight_fn_name']}, target vol {number_cell(100 * row['target_vol'], '.1f')} %, window "
            f"{number_cell(row['window_months'], '.1f')} m, lambda {number_cell(row['risk_aversion'], '.2f')}, "
            f"cost {number_cell(row['cost_bps'], '.1f')} bp")


def summary_md(text: str) -> str:
    """The summary as markdown: indented lines become list items, the others paragraphs."""
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("  "):
            out.append(f"- {line.strip()}")
        else:
            out += ["", line, ""] if out and out[-1] != "" else [line, ""]
    return "\n".join(out).strip() + "\n"


def best_robust_md(result: SearchResult) -> str:
    """The best robust configuration in every scenario, beside that scenario's best objective."""
    r = result.best_robust
    rows = [[s, number_cell(r[f"{s}_objective"], ".3f"), number_cell(result.best_per_scenario[s][f"{s}_objective"], ".3f"),
             number_cell(r[f"{s}_sharpe"], ".3f"), number_cell(r[f"{s}_vol"], ".2%"), number_cell(r[f"{s}_max_drawdown"], ".2%")]
            for s in result.scenarios]
    head = (f"**{describe(r)}**: robustness {number_cell(r['robustness'], '.2f')}, "
            f"mean objective {number_cell(r['mean_objective'], '.3f')}")
    table = md_table(["scenario", "objective", "scenario's best", "Sharpe", "vol", "max drawdown"], rows)
    return head + "\n\n" + table


def best_per_scenario_md(result: SearchResult) -> str:
    """One row per scenario: its best configuration and its numbers in that scenario."""
    header = ["scenario", "config", "weight function", "target vol", "window (m)", "lambda", "cost (bp)", "objective",
              "Sharpe", "vol", "max drawdown"]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---|" + "---:|" * (len(header) - 3)]  # names left, numbers right
    for s in result.scenarios:
        r = result.best_per_scenario[s]
        cells = [s, r["config"], r["weight_fn_name"], number_cell(r["target_vol"], ".2%"),
                 number_cell(r["window_months"], ".1f"), number_cell(r["risk_aversion"], ".2f"),
                 number_cell(r["cost_bps"], ".1f"), number_cell(r[f"{s}_objective"], ".3f"),
                 number_cell(r[f"{s}_sharpe"], ".3f"), number_cell(r[f"{s}_vol"], ".2%"),
                 number_cell(r[f"{s}_max_drawdown"], ".2%")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def allocation_path_md(result: SearchResult) -> str:
    """The equity weight of the best robust configuration at the end of each year: median [5 %, 95 %]."""
    first = next(iter(result.allocation_path.values()))
    days = first["day"]
    marks = [int(d) for d in days if d % 252 == 0] or [int(days[-1])]
    rows = [[s, *(f"{number_cell(band['p50'][d - 1], '.0%')} [{number_cell(band['p05'][d - 1], '.0%')}, "
                  f"{number_cell(band['p95'][d - 1], '.0%')}]" for d in marks)]
            for s, band in result.allocation_path.items()]
    table = md_table(["scenario", *(f"day {d}" for d in marks)], rows)
    return "Equity weight of the best robust configuration, median [5 %, 95 %] over the paths:\n\n" + table


def best_strategies_md(result: SearchResult) -> str:
    """``best_strategies.md``: the summary, the best robust configuration and the best per scenario."""
    return "\n".join(["# Strategy search: best strategies", "", summary_md(result.summary),
                      "## Best robust configuration", "", best_robust_md(result), "",
                      "## Best configuration per scenario", "", best_per_scenario_md(result), "",
                      *(["## Allocation path of the best robust configuration", "", allocation_path_md(result), ""]
                        if result.allocation_path else [])])
