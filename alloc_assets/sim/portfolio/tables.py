"""The stored tables of the resilience optimiser and of the regime-aware allocation as polars frames,
and their markdown for the Dagster UI (floats to 4 decimals, non-finite as ``n/a``)."""

from __future__ import annotations

import numpy as np
import polars as pl

from alloc_assets.core.common.markdown import md_table, number_cell
from alloc_assets.core.regime import REGIME_KEYS, REGIME_LABELS
from alloc_assets.sim.portfolio.resilience_comparison import METHODS


def _md(header: list[str], rows: list[list]) -> str:
    return md_table(header, [[number_cell(x, ".4f") for x in r] for r in rows])


def resilience_frames(result, symbols: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The two stored tables of a ``ResilienceResult``: weights per symbol, comparison per method."""
    weights = pl.DataFrame({"symbol": symbols} | {f"weight_{m}": np.asarray(result.weights[m], dtype=np.float64)
                                                   for m in METHODS})
    comparison = pl.DataFrame({k: (v if k == "method" else np.asarray(v, dtype=np.float64)) for k, v in result.table().items()})
    return weights, comparison


def resilience_markdown(result, symbols: list[str]) -> dict[str, str]:
    """``weights`` (per symbol and method) and ``comparison`` (per method: held-out objective and
    components, training objective, paired gain of w*) as markdown tables."""
    w_rows = [[s] + [float(result.weights[m][i]) for m in METHODS] for i, s in enumerate(symbols)]
    h = result.heldout
    c_rows = [[m, h[m]["objective"], h[m]["objective_se"], h[m]["annual_return"], h[m]["p_drawdown"], h[m]["recovery_days"],
               h[m]["vol_cluster_share"], result.train[m]["objective"], result.paired[m]["diff"], result.paired[m]["se"]]
              for m in METHODS]
    return {
        "weights": _md(["symbol", *METHODS], w_rows),
        "comparison": _md(["method", "held-out objective", "s.e.", "CAGR", "P(DD > x)", "recovery days", "cluster share",
                           "train objective", "gain of w*", "gain s.e."], c_rows),
    }


def heldout_summary(result) -> dict:
    """Per method: the held-out means and the paired gain of w* (and its s.e.), rounded to 6 decimals."""
    h = result.heldout
    return {m: {k: round(v, 6) for k, v in h[m].items()} | {"gain_of_resilience": round(result.paired[m]["diff"], 6),
                                                           "gain_se": round(result.paired[m]["se"], 6)} for m in METHODS}


def regime_frame(alloc, symbols: list[str]) -> pl.DataFrame:
    """The stored table of a ``RegimeAllocation``."""
    cols = {"symbol": symbols} | {k: np.asarray(v, dtype=np.float64) for k, v in alloc.portfolios().items()}
    for k, r in enumerate(REGIME_KEYS):
        cols[f"vol_{r}"] = np.sqrt(np.diag(alloc.covs[k]))
    cols["vol_sigma_t"] = np.sqrt(np.diag(alloc.sigma_mixture))
    return pl.DataFrame(cols)


def regime_markdown(alloc, symbols: list[str]) -> dict[str, str]:
    """``weights`` (per symbol and portfolio) and ``portfolio_vols`` (per portfolio, its volatility
    under each regime's covariance and under Sigma_t) as markdown tables."""
    names = list(alloc.portfolios())
    w_rows = [[s] + [float(alloc.portfolios()[n][i]) for n in names] for i, s in enumerate(symbols)]
    vols = alloc.volatilities()
    v_rows = [[n] + [vols[n][c] for c in (*REGIME_LABELS, "sigma_t")] for n in names]
    return {"weights": _md(["symbol", *names], w_rows), "portfolio_vols": _md(["portfolio", *REGIME_LABELS, "Sigma_t"], v_rows)}
