"""Which regime labels the world model is calibrated on (``SimulationSettings.calibration_labels``).

``realised_vol`` (the default) labels do not come from the allocator, so the simulated world does
not switch exactly where the allocator looks; ``allocator`` uses the pipeline's own
``regime_series`` labels, which flatters the allocator.
"""

from __future__ import annotations

import numpy as np

from alloc_assets.core.regime import REGIME_LABELS

CALIBRATION_LABELS = ("realised_vol", "allocator")


def calibration_labels(kind: str, log_returns: np.ndarray, regime_labels: np.ndarray, regime_probs: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, str]:
    """The regime labels (T,) to calibrate on (-1: unlabelled day), today's regime probabilities
    (4,) and a description, for ``kind`` in ``CALIBRATION_LABELS``; ``ValueError`` otherwise or
    when the history is too short.

    ``realised_vol``: ``world_calibration.realised_vol_labels`` (21-day realised volatility of the equal-weight
    index against its expanding-window 50/80/95 % quantiles); today's probabilities are one-hot on
    today's label. ``allocator``: the pipeline's labels and probabilities (``regime_series``)."""
    from alloc_assets.sim.models.world_calibration import realised_vol_labels

    if kind == "allocator":
        return np.asarray(regime_labels), np.asarray(regime_probs[-1], dtype=np.float64), \
            "the allocator's own regime_series labels (flatter the allocator)"
    if kind == "realised_vol":
        labels = realised_vol_labels(log_returns)
        if not (labels >= 0).any():
            raise ValueError("too little history for realised-volatility labels (needs 21 + 252 days)")
        return labels, np.eye(len(REGIME_LABELS))[labels[labels >= 0][-1]], \
            "realised-volatility quantiles of the equal-weight index (21 days; expanding 50/80/95 % quantiles; causal)"
    raise ValueError(f"calibration_labels must be one of {CALIBRATION_LABELS}, not {kind!r}")

