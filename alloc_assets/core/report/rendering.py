"""The comparison report as text: its markdown file, the Dagster UI's metadata tables and the
console summaries (pure; no Dagster import). Reads the dict ``report.build_report`` returns."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from alloc_assets.core.common.markdown import md_table
from alloc_assets.core.report.metrics import METRIC_KEYS, Metric

_PERCENT_METRICS = {
    Metric.CAGR, Metric.ANN_VOL, Metric.MAX_DRAWDOWN, Metric.WORST_MONTH, Metric.WORST_QUARTER,
    Metric.VAR_95, Metric.CVAR_95, Metric.TURNOVER,
}
_LABELS = {
    Metric.CAGR: "CAGR",
    Metric.ANN_VOL: "Annual volatility",
    Metric.SHARPE: "Sharpe",
    Metric.SORTINO: "Sortino",
    Metric.MAX_DRAWDOWN: "Max drawdown",
    Metric.CALMAR: "Calmar",
    Metric.WORST_MONTH: "Worst month",
    Metric.WORST_QUARTER: "Worst quarter",
    Metric.VAR_95: "VaR 95 % (1 day)",
    Metric.CVAR_95: "CVaR 95 % (1 day)",
    Metric.TURNOVER: "Turnover (one-way, a year)",
}


def _fmt(key: str, value, delta: bool = False) -> str:
    if value is None:
        return "n/a"
    metric = Metric(key)
    if metric in _PERCENT_METRICS:
        return f"{100 * value:+.2f} pts" if delta else f"{100 * value:.2f} %"
    return f"{value:+.3f}" if delta else f"{value:.3f}"


def _columns(report: Mapping, with_others: bool = True) -> list[tuple[str, Mapping, bool]]:
    m = report["metrics"]
    cols = [("baseline", m["baseline"], False), ("scaled", m["scaled"], False), ("delta", m["delta"], True)]
    if with_others:
        cols += [(k, v["metrics"], False) for k, v in (report.get("controls") or {}).items()]
        if report.get("benchmark"):
            cols.append((report["benchmark"]["name"], report["benchmark"]["metrics"], False))
    return cols


def _comparison_rows(report: Mapping, with_others: bool = True) -> list[tuple[str, ...]]:
    cols = _columns(report, with_others)
    return [(_LABELS[Metric(k)], *[_fmt(k, c.get(k), delta=is_delta) for _, c, is_delta in cols]) for k in METRIC_KEYS]


def comparison_table(report: Mapping) -> str:
    """Aligned plain-text table ``metric | baseline | scaled | delta | controls... | benchmark``."""
    header = ("metric", *[name for name, _, _ in _columns(report)])
    rows = [header, *_comparison_rows(report)]
    n = len(header)
    widths = [max(len(r[i]) for r in rows) for i in range(n)]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(r[0].ljust(widths[0]) if i == 0 else r[i].rjust(widths[i]) for i in range(n)).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def episodes_table(report: Mapping) -> str:
    """Plain-text table of the drawdown episodes: depth of each book and when the governor de-risked."""
    eps = report.get("episodes") or []
    if not eps:
        return "no baseline drawdown deeper than 15 %"
    books = list(eps[0]["depth"])
    header = ("peak", "trough", "recovery", *books, "cut vs trough", "before trough")
    rows = [header]
    for e in eps:
        days = e["first_derisk_days_from_trough"]
        share = e["derisk_share_before_trough"]
        rows.append((e["peak"], e["trough"], e["recovery"] or "not yet",
                     *["n/a" if e["depth"].get(b) is None else f"{100 * e['depth'][b]:.1f} %" for b in books],
                     "never" if days is None else f"{days:+d} d", "n/a" if share is None else f"{100 * share:.0f} %"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(r[i]).rjust(widths[i]) if i >= 3 else str(r[i]).ljust(widths[i]) for i in range(len(header))).rstrip()
                     for r in rows)


def headline_line(report: Mapping) -> str:
    """``MaxDD gain x pts for a CAGR cost of y pts (Sharpe +z)``."""
    h = report.get("headline") or {}
    if h.get("maxdd_gain_pts") is None:
        return "headline: n/a"
    return (f"MaxDD {h['maxdd_gain_pts']:+.1f} pts (shallower if +) for a CAGR cost of {h['cagr_cost_pts']:.1f} pts, "
            f"Sharpe {h['sharpe_change']:+.3f}")


def today_line(report: Mapping) -> str:
    """The latest regime, its probabilities, the scalar in force and any early warning."""
    t = report.get("today")
    if not t:
        return "today: n/a"
    p = t["probabilities"]
    probs = " ".join(f"{k[0]}{100 * v:.0f}%" for k, v in p.items())
    warn = t["early_warning"] or "none"
    return f"today {t['date']}: {t['regime']} ({probs}), scalar in force {t['scalar_in_force']:.2f}; early warning: {warn}"


def format_or_na(x, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def report_markdown(report: Mapping, figures: Mapping[str, str] | None = None) -> str:
    """The ``.md`` beside the JSON: comparison table, usage, regimes, events, verdict, figures.

    ``figures`` maps a caption to an image path (relative to the markdown file) to embed.
    """
    w, a, u = report["window"], report["allocator"], report["allocator_usage"]
    v = report["verdict"]
    parts = [
        f"# Two-pass comparison: {report['profile']}",
        "",
        f"Window {w['start']} to {w['end']}. Allocator mode **{a['mode']}**.",
        "",
        f"**Verdict: {v['status'].upper()}**",
        "",
        *[f"- {r}" for r in v["reasons"]],
        "",
        "## Baseline vs scaled",
        "",
        md_table(("metric", *[c for c, _, _ in _columns(report)]), _comparison_rows(report)),
        "",
        headline_line(report),
        "",
        today_line(report),
        "",
        "## Allocator usage",
        "",
        md_table(
            ("rebalances", "scaled", "scaled share", "scalar mean", "scalar min", "scalar max"),
            [(
                u["rebalances"], u["scaled_rebalances"], format_or_na(None if u["scaled_fraction"] is None else 100 * u["scaled_fraction"], ".1f") + " %",
                format_or_na(u["scalar_mean"], ".3f"), format_or_na(u["scalar_min"], ".3f"), format_or_na(u["scalar_max"], ".3f"),
            )],
            align_right_from=0,
        ),
        "",
        "## Regimes",
        "",
        md_table(
            ("regime", "days", "share"),
            [(k, d["days"], f"{100 * d['fraction']:.1f} %") for k, d in report["regime_distribution"].items()],
        ),
        "",
    ]
    tr = report["regime_transitions"]
    names = list(tr["matrix"])
    parts += [
        f"{tr['count']} transitions ({tr['per_year']:.1f} a year). Day-to-day pairs (rows: from, columns: to):",
        "",
        md_table(("from \\ to", *names), [(a_, *[tr["matrix"][a_][b] for b in names]) for a_ in names]),
        "",
        "## Deepest de-risk events",
        "",
    ]
    events = report["top_derisk_events"]
    if events:
        parts.append(md_table(("date", "scalar", "regime"), [(e["date"], f"{e['scalar']:.3f}", e["regime"]) for e in events]))
    else:
        parts.append("No rebalance was de-risked.")
    parts.append("")
    parts += _audit_markdown(report)
    if a["config"]:
        parts += ["## Allocator settings", "", md_table(("setting", "value"), [(k, a["config"][k]) for k in a["config"]]), ""]
    if figures:
        parts += ["## Figures", ""]
        for caption, path in figures.items():
            parts += [f"![{caption}]({path})", ""]
    return "\n".join(parts)


def _audit_markdown(report: Mapping) -> list[str]:
    parts: list[str] = []
    if report.get("episodes") is not None:
        parts += ["## Drawdown episodes (baseline deeper than 15 %)", "", "```", episodes_table(report), "```", ""]
    sig = report.get("significance") or {}
    if sig:
        first = next(iter(sig.values()))
        parts += [f"## Is it real? ({first['method']}, {100 * first['level']:.0f} % intervals)", "",
                  md_table(("delta", "estimate", "interval", "P(> 0)"),
                            [(k, format_or_na(v["estimate"], "+.4f"), f"[{format_or_na(v['ci_low'], '+.4f')}, {format_or_na(v['ci_high'], '+.4f')}]",
                              format_or_na(v["p_positive"], ".2f")) for k, v in sig.items()]), ""]
    subs = report.get("subperiods") or []
    if subs:
        books = list(subs[0]["metrics"])
        parts += ["## Sub-periods (thirds of the window)", "",
                  md_table(("period", *[f"{b} Sharpe / MaxDD" for b in books]),
                            [(f"{r['start']} .. {r['end']}", *[f"{format_or_na(r['metrics'][b]['sharpe'], '.2f')} / "
                                                             f"{format_or_na(None if r['metrics'][b]['max_drawdown'] is None else 100 * r['metrics'][b]['max_drawdown'], '.1f')} %"
                                                             for b in books]) for r in subs]), ""]
    ex = report.get("exposure") or {}
    if ex.get("baseline"):
        parts += ["## Gross exposure", "",
                  md_table(("book", "mean", "min", "max", "days with > 1 % cash"),
                            [(b, format_or_na(ex[b]["mean"], ".3f"), format_or_na(ex[b]["min"], ".3f"), format_or_na(ex[b]["max"], ".3f"),
                              f"{100 * ex[b]['cash_over_1pct_share']:.0f} %") for b in ("baseline", "scaled") if b in ex]), ""]
        parts += [f"Caps: {note}" for note in ex.get("limits_rule") or []] + ([""] if ex.get("limits_rule") else [])
    return parts


def run_summary(report: Mapping, sources: Sequence[str] | None = None, top: int = 5) -> str:
    """Console block: mode, scalar sources, rebalances, scaled count and share, scalar mean/min/max,
    and the ``top`` deepest de-risk events with their regime.

    ``sources`` are the per-rebalance ``source`` values of ``applied_scalars`` (``computed``,
    ``override``, ``missing_default``), summarised as counts.
    """
    u = report["allocator_usage"]
    src = ", ".join(f"{k} {v}" for k, v in sorted(Counter(sources).items())) if sources is not None else "n/a"
    share = "n/a" if u["scaled_fraction"] is None else f"{100 * u['scaled_fraction']:.1f} %"
    lines = [
        f"allocator mode     {report['allocator']['mode']}",
        f"scalar source      {src}",
        f"rebalances         {u['rebalances']}",
        f"scaled rebalances  {u['scaled_rebalances']} ({share})",
        f"scalar mean/min/max {format_or_na(u['scalar_mean'], '.3f')} / {format_or_na(u['scalar_min'], '.3f')} / {format_or_na(u['scalar_max'], '.3f')}",
        f"verdict            {report['verdict']['status']}",
    ]
    events = report["top_derisk_events"][:top]
    if events:
        lines.append(f"deepest de-risk events (top {len(events)}):")
        lines += [f"  {e['date']}  {e['scalar']:.3f}  {e['regime']}" for e in events]
    else:
        lines.append("deepest de-risk events: none")
    return "\n".join(lines)


def episodes_md(report: dict) -> str:
    """The drawdown episodes as a markdown table (depth of each book, when the governor de-risked)."""
    eps = report.get("episodes") or []
    if not eps:
        return "_no baseline drawdown deeper than 15 %_"
    books = list(eps[0]["depth"])
    rows = ["| peak | trough | recovery | " + " | ".join(books) + " | de-risk vs trough (days) | share before trough |",
            "|---|---|---|" + "---:|" * (len(books) + 2)]
    for e in eps:
        depth = " | ".join("n/a" if e["depth"].get(b) is None else f"{100 * e['depth'][b]:.1f} %" for b in books)
        days = "never" if e["first_derisk_days_from_trough"] is None else f"{e['first_derisk_days_from_trough']:+d}"
        share = "n/a" if e["derisk_share_before_trough"] is None else f"{100 * e['derisk_share_before_trough']:.0f} %"
        rows.append(f"| {e['peak']} | {e['trough']} | {e['recovery'] or 'not yet'} | {depth} | {days} | {share} |")
    return "\n".join(rows)


def comparison_table_md(report: dict) -> str:
    """Baseline | scaled | delta | each control | the benchmark, as a markdown table."""
    m = report["metrics"]
    cols = [("baseline", m["baseline"]), ("scaled", m["scaled"]), ("delta", m["delta"])]
    cols += [(k, v["metrics"]) for k, v in (report.get("controls") or {}).items()]
    if report.get("benchmark"):
        cols.append((report["benchmark"]["name"], report["benchmark"]["metrics"]))
    rows = ["| metric | " + " | ".join(c for c, _ in cols) + " |", "|---|" + "---:|" * len(cols)]
    for key in m["baseline"]:
        rows.append(f"| {key} | " + " | ".join("n/a" if v.get(key) is None else f"{v[key]:.4f}" for _, v in cols) + " |")
    return "\n".join(rows)


def weights_md(symbols, weights) -> str:
    """``symbol | weight`` as a markdown table (weights to 4 decimals)."""
    return "| symbol | weight |\n|---|---:|\n" + "\n".join(f"| {s} | {w:.4f} |" for s, w in zip(symbols, weights))
