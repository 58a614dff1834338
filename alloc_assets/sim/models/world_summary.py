"""A world model in a few numbers, for the Dagster UI's metadata."""

from __future__ import annotations

import numpy as np

from alloc_assets.core.common.markdown import md_table
from alloc_assets.core.regime import REGIME_LABELS


def regime_summary_md(model) -> str:
    """Markdown: per regime, the stay probability and the mean stock log return and volatility (annualised)."""
    trans = np.asarray(model.transition)
    mu = np.asarray(model.means).mean(axis=1) * 252
    chol = np.asarray(model.chol)
    vol = np.sqrt(np.asarray([np.diag(c @ c.T).mean() for c in chol]) * 252)
    rows = [[REGIME_LABELS[k], f"{trans[k, k]:.4f}", f"{mu[k]:.2%}", f"{vol[k]:.2%}"] for k in range(len(REGIME_LABELS))]
    return md_table(["regime", "stay probability", "mean stock log return (ann.)", "mean stock vol (ann.)"], rows)
