"""Report figures as PNG bytes (pure; matplotlib's Agg canvas, no global backend switch, no pyplot).

Every function takes plain arrays and returns PNG bytes; :func:`write_report_figures` writes the set
beside a report. Regime shading colours the background of each day by its regime label (NORMAL is
left white), so a crisis shows as a red band behind the curves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from alloc_assets.core.common.png import new_figure, png_bytes, write_png
from alloc_assets.core.regime import REGIME_LABELS
from alloc_assets.core.report.metrics import drawdown_series

if TYPE_CHECKING:  # matplotlib is imported when a figure is drawn (a slow import)
    from matplotlib.patches import Patch

REGIME_ORDER: tuple[str, ...] = REGIME_LABELS
REGIME_COLOURS: dict[str, str] = {
    "NORMAL": "#d9ead3",
    "ELEVATED": "#ffe599",
    "STRESS": "#f6b26b",
    "CRISIS": "#e06666",
}
_SHADE_ALPHA = 0.45
BASELINE_COLOUR = "#3c4a5a"
SCALED_COLOUR = "#1f77b4"
FIGSIZE = (11.0, 4.2)


def _dates(dates) -> np.ndarray:
    return np.asarray(dates, dtype="datetime64[D]")


def shade_regimes(ax, dates, labels: Sequence[str], skip: Sequence[str] = ("NORMAL",)) -> list[Patch]:
    """Colour the background of ``ax`` per regime label; returns legend handles for the shown regimes."""
    d = _dates(dates)
    lab = np.asarray([str(x) for x in labels], dtype=object)
    if lab.size != d.size:
        raise ValueError(f"regime labels ({lab.size}) and dates ({d.size}) differ in length")
    # extend each day to the next day so one-day regimes are visible and spans touch
    edges = np.append(d, d[-1] + np.timedelta64(1, "D")) if d.size else d
    handles = []
    for name in REGIME_ORDER + tuple(sorted(set(lab.tolist()) - set(REGIME_ORDER))):
        if name in skip:
            continue
        mask = lab == name
        if not mask.any():
            continue
        colour = REGIME_COLOURS.get(name, "#cccccc")
        ax.fill_between(
            edges, 0, 1, where=np.append(mask, False), step="post", color=colour, alpha=_SHADE_ALPHA,
            linewidth=0, transform=ax.get_xaxis_transform(), zorder=0,
        )
        from matplotlib.patches import Patch as _Patch

        handles.append(_Patch(facecolor=colour, alpha=_SHADE_ALPHA, label=name.lower()))
    return handles


OTHER_COLOURS = ("#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#7f7f7f")


def equity_figure(dates, baseline_equity, scaled_equity, regime_labels: Sequence[str] | None = None, title: str | None = None,
                  others: Mapping[str, np.ndarray] | None = None) -> bytes:
    """Equity of both passes (log scale) over regime shading, with any other books (controls, the
    benchmark) as thinner lines."""
    d = _dates(dates)
    fig = new_figure(FIGSIZE)
    ax = fig.add_subplot()
    handles = shade_regimes(ax, d, regime_labels) if regime_labels is not None else []
    extra = []
    for k, (name, eq) in enumerate((others or {}).items()):
        (lo,) = ax.plot(d, eq, color=OTHER_COLOURS[k % len(OTHER_COLOURS)], lw=0.8, alpha=0.85, label=name)
        extra.append(lo)
    (lb,) = ax.plot(d, baseline_equity, color=BASELINE_COLOUR, lw=1.1, label="baseline")
    (ls,) = ax.plot(d, scaled_equity, color=SCALED_COLOUR, lw=1.1, label="scaled")
    ax.set_yscale("log")
    ax.set_ylabel("wealth (start = 1, log scale)")
    ax.set_xlim(d[0], d[-1])
    ax.grid(True, which="major", alpha=0.3)
    ax.set_title(title or "Equity: baseline vs scaled" + (" vs controls" if others else ""))
    ax.legend(handles=[lb, ls, *extra, *handles], loc="upper left", ncols=3, fontsize=8, framealpha=0.9)
    return png_bytes(fig)


def exposure_figure(dates, exposure: Mapping[str, np.ndarray], title: str | None = None) -> bytes:
    """Gross exposure (sum of asset weights) of each book; below 1 the rest is cash."""
    d = _dates(dates)
    fig = new_figure((FIGSIZE[0], 3.2))
    ax = fig.add_subplot()
    colours = {"baseline": BASELINE_COLOUR, "scaled": SCALED_COLOUR}
    for k, (name, g) in enumerate(exposure.items()):
        ax.plot(d, g, color=colours.get(name, OTHER_COLOURS[k % len(OTHER_COLOURS)]), lw=0.9, label=name)
    ax.set_ylim(0, 1.05)
    ax.set_xlim(d[0], d[-1])
    ax.set_ylabel("gross exposure")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "Gross exposure (the rest is cash)")
    ax.legend(loc="lower left", fontsize=9, framealpha=0.9)
    return png_bytes(fig)


def episodes_figure(episodes: Sequence[Mapping]) -> bytes:
    """Depth of each book in every baseline drawdown deeper than 15 % (grouped bars, percent)."""
    fig = new_figure((FIGSIZE[0], 3.6))
    ax = fig.add_subplot()
    if not episodes:
        ax.text(0.5, 0.5, "no baseline drawdown deeper than 15 %", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return png_bytes(fig)
    books = list(episodes[0]["depth"])
    width = 0.8 / len(books)
    x = np.arange(len(episodes))
    colours = {"baseline": BASELINE_COLOUR, "scaled": SCALED_COLOUR}
    for j, b in enumerate(books):
        vals = [100 * (e["depth"].get(b) or 0.0) for e in episodes]
        ax.bar(x + (j - (len(books) - 1) / 2) * width, vals, width, label=b,
               color=colours.get(b, OTHER_COLOURS[j % len(OTHER_COLOURS)]))
    ax.set_xticks(x, [f"{e['peak'][:7]}\n{e['trough'][:7]}" for e in episodes], fontsize=8)
    ax.set_ylabel("depth (%)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title("Baseline drawdowns deeper than 15 % (peak / trough): depth of each book")
    ax.legend(loc="lower left", ncols=len(books), fontsize=8, framealpha=0.9)
    return png_bytes(fig)


def drawdown_figure(dates, baseline_equity, scaled_equity, regime_labels: Sequence[str] | None = None, title: str | None = None) -> bytes:
    """Drawdowns of both passes (percent below the running peak)."""
    d = _dates(dates)
    fig = new_figure(FIGSIZE)
    ax = fig.add_subplot()
    handles = shade_regimes(ax, d, regime_labels) if regime_labels is not None else []
    dd_b = 100 * drawdown_series(baseline_equity, is_wealth=True)
    dd_s = 100 * drawdown_series(scaled_equity, is_wealth=True)
    ax.fill_between(d, dd_b, 0, color=BASELINE_COLOUR, alpha=0.18, linewidth=0)
    (lb,) = ax.plot(d, dd_b, color=BASELINE_COLOUR, lw=0.9, label=f"baseline (max {dd_b.min():.1f} %)")
    (ls,) = ax.plot(d, dd_s, color=SCALED_COLOUR, lw=0.9, label=f"scaled (max {dd_s.min():.1f} %)")
    ax.set_ylabel("drawdown (%)")
    ax.set_xlim(d[0], d[-1])
    ax.set_ylim(min(dd_b.min(), dd_s.min()) * 1.08, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "Drawdown: baseline vs scaled")
    ax.legend(handles=[lb, ls, *handles], loc="lower left", ncols=2, fontsize=9, framealpha=0.9)
    return png_bytes(fig)


def scalar_figure(
    scalar_dates, scalars, dates=None, regime_labels: Sequence[str] | None = None, floor: float | None = None, title: str | None = None
) -> bytes:
    """The applied risk scalar as a step plot (each value holds until the next rebalance)."""
    sd = _dates(scalar_dates)
    s = np.asarray(scalars, dtype=np.float64)
    fig = new_figure((FIGSIZE[0], 3.5))
    ax = fig.add_subplot()
    handles = []
    if dates is not None and regime_labels is not None:
        handles = shade_regimes(ax, dates, regime_labels)
    end = _dates(dates)[-1] if dates is not None else sd[-1]
    x = np.append(sd, end)
    (line,) = ax.step(x, np.append(s, s[-1]), where="post", color=SCALED_COLOUR, lw=1.2, label="applied scalar")
    lo = min(float(s.min()), floor if floor is not None else 1.0)
    if floor is not None:
        ax.axhline(floor, color="#999999", lw=0.8, ls="--")
    ax.set_ylim(lo - 0.05, 1.05)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylabel("risk scalar")
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "Applied risk scalar (at rebalance dates)")
    ax.legend(handles=[line, *handles], loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=4, fontsize=9, frameon=False)
    return png_bytes(fig)


def regime_probability_figure(dates, probabilities, names: Sequence[str] = REGIME_ORDER, title: str | None = None) -> bytes:
    """Regime probabilities as a stacked area (rows sum to 1)."""
    d = _dates(dates)
    p = np.asarray(probabilities, dtype=np.float64)
    if p.shape != (d.size, len(names)):
        raise ValueError(f"probabilities shape {p.shape} != ({d.size}, {len(names)})")
    fig = new_figure((FIGSIZE[0], 3.2))
    ax = fig.add_subplot()
    ax.stackplot(d, p.T, labels=[n.lower() for n in names], colors=[REGIME_COLOURS.get(n, "#cccccc") for n in names], linewidth=0)
    ax.set_ylim(0, 1)
    ax.set_xlim(d[0], d[-1])
    ax.set_ylabel("probability")
    ax.set_title(title or "Regime probabilities (filtered, data through each day)")
    ax.legend(loc="upper left", ncols=len(names), fontsize=9, framealpha=0.9)
    return png_bytes(fig)


def write_report_figures(
    out_dir: str | Path,
    dates,
    baseline_equity,
    scaled_equity,
    scalar_dates,
    scalars,
    regime_labels: Sequence[str],
    probabilities=None,
    floor: float | None = None,
    others: Mapping[str, np.ndarray] | None = None,
    exposure: Mapping[str, np.ndarray] | None = None,
    episodes: Sequence[Mapping] | None = None,
) -> dict[str, Path]:
    """Write ``equity.png`` (with ``others``: controls, benchmark), ``drawdown.png``, ``scalar.png``
    and, when given, ``regime_probabilities.png``, ``exposure.png`` and ``episodes.png`` into
    ``out_dir``; returns ``{name: path}``."""
    out = Path(out_dir)
    paths: Mapping[str, bytes] = {
        "equity": equity_figure(dates, baseline_equity, scaled_equity, regime_labels, others=others),
        "drawdown": drawdown_figure(dates, baseline_equity, scaled_equity, regime_labels),
        "scalar": scalar_figure(scalar_dates, scalars, dates, regime_labels, floor),
    }
    if probabilities is not None:
        paths = {**paths, "regime_probabilities": regime_probability_figure(dates, probabilities)}
    if exposure is not None:
        paths = {**paths, "exposure": exposure_figure(dates, exposure)}
    if episodes is not None:
        paths = {**paths, "episodes": episodes_figure(episodes)}
    return {name: write_png(data, out / f"{name}.png") for name, data in paths.items()}


