"""Figures of a scenario run (PNG bytes): the wealth fan, the drawdown distribution and a shock's
month-by-month path against the base scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from alloc_assets.core.common.png import new_figure, png_bytes
from alloc_assets.sim.engine.kernel import BOOKS
from alloc_assets.sim.models.calendar import DAYS_PER_MONTH

if TYPE_CHECKING:
    from alloc_assets.sim.scenarios.run import ScenarioResult

FIGSIZE = (9.0, 4.2)

_COLOURS = {"baseline": "#3c4a5a", "allocator": "#1f77b4"}


def fan_chart_png(result: ScenarioResult) -> bytes:
    """Wealth fan: median and 5-95 % / 25-75 % bands across paths for both books, in months."""
    fig = new_figure(FIGSIZE)
    ax = fig.add_subplot()
    x = result.wealth_days / DAYS_PER_MONTH
    q = list(result.quantiles)
    for book in BOOKS:
        band = result.wealth_quantiles[book]
        c = _COLOURS[book]
        ax.fill_between(x, band[q.index(0.05)], band[q.index(0.95)], color=c, alpha=0.12, linewidth=0)
        ax.fill_between(x, band[q.index(0.25)], band[q.index(0.75)], color=c, alpha=0.25, linewidth=0)
        ax.plot(x, band[q.index(0.5)], color=c, linewidth=1.8, label=f"{book} (median, 25-75 %, 5-95 %)")
    ax.axhline(1.0, color="#999999", linewidth=0.8)
    ax.set_xlabel("months")
    ax.set_ylabel("wealth (start = 1)")
    ax.set_title(f"{result.name}: wealth of {result.n_paths:,} simulated paths")
    ax.legend(loc="upper left", fontsize=8)
    return png_bytes(fig)


def drawdown_distribution_png(result: ScenarioResult) -> bytes:
    """Histogram of the maximum drawdown of every path, both books, with the 20 % and 30 % lines."""
    fig = new_figure(FIGSIZE)
    ax = fig.add_subplot()
    lo = min(float(np.min(result.metrics[b]["max_drawdown"])) for b in BOOKS)
    bins = np.linspace(min(lo, -0.35), 0.0, 50)
    for book in BOOKS:
        mdd = result.metrics[book]["max_drawdown"]
        ax.hist(mdd, bins=bins, color=_COLOURS[book], alpha=0.5,
                label=f"{book}: P(DD > 20 %) = {np.mean(mdd < -0.2):.0%}, median {np.median(mdd):.1%}")
    for level in (-0.2, -0.3):
        ax.axvline(level, color="#c0392b", linewidth=0.8, linestyle="--")
    ax.set_xlabel("maximum drawdown over the horizon")
    ax.set_ylabel("paths")
    ax.set_title(f"{result.name}: drawdown distribution")
    ax.legend(loc="upper left", fontsize=8)
    return png_bytes(fig)


def shock_path_png(result: ScenarioResult, base: ScenarioResult) -> bytes:
    """The shock's path against the base scenario (same random numbers), both books: volatility of
    each month's return across paths (annualised) and the median drawdown at each month's end."""
    fig = new_figure((9.0, 5.6))
    ax_vol, ax_dd = fig.subplots(2, 1, sharex=True)
    for book in BOOKS:
        c = _COLOURS[book]
        for res, style, tag in ((result, "-", result.name), (base, "--", base.name)):
            m = res.monthly[book]
            x = np.arange(1, len(m["vol_annual"]) + 1)
            ax_vol.plot(x, m["vol_annual"], style, color=c, linewidth=1.5, label=f"{book}, {tag}")
            ax_dd.plot(x, m["drawdown_median"], style, color=c, linewidth=1.5)
    ax_vol.set_ylabel("volatility (ann.)")
    ax_dd.set_ylabel("median drawdown")
    ax_dd.set_xlabel("months")
    ax_vol.set_title(f"{result.name}: volatility and drawdown month by month (dashed: {base.name})")
    ax_vol.legend(loc="upper right", fontsize=8)
    return png_bytes(fig)
