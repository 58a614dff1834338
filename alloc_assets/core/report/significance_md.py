"""Markdown tables of the bootstrap deltas and the sub-periods (pure). CAGR and max drawdown
in percent (deltas in percentage points), ratios to 3 decimals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alloc_assets.core.common.markdown import md_table
from alloc_assets.core.report.bootstrap import DELTA_METRICS
from alloc_assets.core.report.rendering import format_or_na
from alloc_assets.core.report.subperiods import BASELINE, SUBPERIOD_METRICS


_METRIC_LABELS = {
    "cagr": "CAGR",
    "sharpe": "Sharpe",
    "max_drawdown": "Max drawdown",
    "calmar": "Calmar",
}



def _fmt_metric(metric: str, x: float | None, signed: bool) -> str:
    """Percent for CAGR and max drawdown, 3 decimals for ratios."""
    if x is None:
        return "n/a"
    sign = "+" if signed else ""
    if metric in ("cagr", "max_drawdown"):
        return format(100.0 * x, sign + ".2f") + " %"
    return format(x, sign + ".3f")



def significance_table_md(result: Mapping[str, Any]) -> str:
    """Markdown table of a :func:`bootstrap_deltas` result: one row per pair and measure.

    Columns: pair, measure, point delta, bootstrap mean, standard error, percentile CI at the
    result's level, share of draws with a positive delta, valid draws. Max-drawdown deltas are in
    percentage points. A caption line states the method, draws, block length and seed.

    Parameters
    ----------
    result : the dict returned by :func:`bootstrap_deltas`.

    Returns
    -------
    str (no trailing newline).
    """
    pct = 100.0 * float(result["level"])
    pct_s = f"{pct:.0f}" if float(pct).is_integer() else f"{pct:g}"
    caption = (
        f"Stationary block bootstrap ({result['index_generator']}): {result['n_draws']} draws of "
        f"{result['n_obs']} days, mean block length {result['block_length']} days "
        f"({result['block_length_rule']}), seed {result['seed']}; percentile intervals at {pct_s} %. "
        "Deltas are a - b; a positive delta favours a (max drawdown: a shallower drawdown)."
    )
    rows = []
    for p in result["pairs"]:
        for k in DELTA_METRICS:
            s = p["deltas"][k]
            ci = f"[{_fmt_metric(k, s['ci_lower'], True)}, {_fmt_metric(k, s['ci_upper'], True)}]"
            rows.append((
                p["label"], _METRIC_LABELS[k], _fmt_metric(k, s["point"], True), _fmt_metric(k, s["mean"], True),
                _fmt_metric(k, s["std_error"], False), ci, format_or_na(s["p_positive"], ".3f"), s["n_valid"],
            ))
    table = md_table(
        ("pair", "measure", "point", "boot mean", "std error", f"{pct_s} % CI", "P(delta > 0)", "draws"),
        rows,
        align_right_from=2,
    )
    return caption + "\n\n" + table



def subperiods_table_md(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`subperiod_table` rows: one line per piece and book, then its deltas.

    CAGR and max drawdown are in percent (deltas in percentage points), ratios to 3 decimals; a
    delta line reads ``book - baseline``.

    Parameters
    ----------
    rows : the list returned by :func:`subperiod_table`.

    Returns
    -------
    str (no trailing newline).
    """
    out = []
    for row in rows:
        period = f"{row['part']}: {row['start']} to {row['end']}"
        for name, v in row["books"].items():
            out.append((period, row["n_days"], name, *(_fmt_metric(k, v[k], False) for k in SUBPERIOD_METRICS)))
        for name, v in row["delta_vs_baseline"].items():
            out.append((period, row["n_days"], f"{name} - {BASELINE}", *(_fmt_metric(k, v[k], True) for k in SUBPERIOD_METRICS)))
    return md_table(("period", "days", "book", *(_METRIC_LABELS[k] for k in SUBPERIOD_METRICS)), out, align_right_from=3)
