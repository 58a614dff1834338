"""The stress score: weighted, standardised latent-state features and their quantile thresholds.

Each term is (optionally log-) transformed and standardised with its mean and sd over the warm days
*before* t (expanding, or exponentially weighted with ``standardise_half_life``), started from a
prior worth ``prior_days`` days; z is clipped to +/-``z_clip``; ``s_t = sum_i w_i z_i,t`` and
``w_i z_i,t`` is stored as the contribution of term i (a missing value contributes 0). At the first
date of each ``refresh`` period the thresholds become the ``quantiles`` (70/90/98 %) of all warm
scores before that date, read from a histogram of ``histogram_bin`` bins (a small carry); before
``min_history_days`` warm scores, the prior ``prior_score_sd * Phi^-1(quantiles)``. Probabilities
are an ordered logit: ``P(regime >= k) = expit((s - tau_k) / width)``,
``width = prob_width * (tau_2 - tau_1)``. Every function continues from a JSON carry, so pieces
and one call give identical numbers.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from alloc_assets.core.allocator.feature_config import StateFrame
from alloc_assets.core.allocator.regime_config import StressScoreConfig, Transform, refresh_mask



def _transformed(state: StateFrame, feature: str, transform: Transform) -> np.ndarray:
    x = state.column(feature)
    if Transform(transform) is Transform.LOG:
        if (x <= 0).any():
            raise ValueError(f"feature {feature!r} has values <= 0 and cannot be log-transformed")
        return np.log(x)
    return x


def hist_layout(cfg: StressScoreConfig) -> tuple[float, int]:
    """Lower edge and number of bins of the score histogram (the score is bounded by the z clip)."""
    bound = cfg.z_clip * sum(abs(t.weight) for t in cfg.terms)
    nbins = int(math.ceil(2.0 * bound / cfg.histogram_bin)) + 1
    return -bound, nbins


def prior_thresholds(cfg: StressScoreConfig) -> np.ndarray:
    """Thresholds before enough history: ``prior_score_sd * Phi^-1(quantiles)``."""
    return np.array([cfg.prior_score_sd * NormalDist().inv_cdf(q) for q in cfg.quantiles])


def histogram_thresholds(hist: np.ndarray, cfg: StressScoreConfig) -> np.ndarray:
    """Quantiles of the histogrammed past scores: the centre of the bin holding the ceil(q n)-th score."""
    lo, _ = hist_layout(cfg)
    cum = np.cumsum(hist)
    n = cum[-1]
    out = np.empty(3)
    for k, q in enumerate(cfg.quantiles):
        rank = max(1, int(math.ceil(q * n)))
        out[k] = lo + (int(np.searchsorted(cum, rank, side="left")) + 0.5) * cfg.histogram_bin
    for k in (1, 2):  # keep them strictly increasing (ties when the distribution is very narrow)
        out[k] = max(out[k], out[k - 1] + cfg.histogram_bin)
    return out


def score_probabilities(score: np.ndarray, thresholds: np.ndarray, prob_width: float) -> np.ndarray:
    """Ordered-logit probabilities (T, 4) from scores (T,) and thresholds (T, 3).

    ``P(regime >= k) = expit((s - tau_k) / width)`` with ``width = prob_width * (tau_2 - tau_1)``.
    """
    width = prob_width * (thresholds[:, 1] - thresholds[:, 0])
    # the logistic function as 0.5 * (1 + tanh(x / 2)): exact, overflow-free, and no scipy import
    # (scipy.special costs more than a second in a fresh run process, a daily run's largest import)
    q = 0.5 * (1.0 + np.tanh(0.5 * (score[:, None] - thresholds) / width[:, None]))  # (T, 3), decreasing in k
    return np.column_stack([1.0 - q[:, 0], q[:, 0] - q[:, 1], q[:, 1] - q[:, 2], q[:, 2]])


def initial_score_carry(cfg: StressScoreConfig) -> dict:
    s0 = cfg.prior_days
    _, nbins = hist_layout(cfg)
    return {
        "s0": [0.0 if t.learn_days else s0 for t in cfg.terms],
        "s1": [0.0 if t.learn_days else s0 * t.prior_mean for t in cfg.terms],
        "s2": [0.0 if t.learn_days else s0 * (t.prior_sd**2 + t.prior_mean**2) for t in cfg.terms],
        "hist": [0] * nbins,
        "thresholds": prior_thresholds(cfg).tolist(),
    }


def _accumulate(decay: float, x: np.ndarray, prev: list[float]) -> np.ndarray:
    """``S_t = decay * S_{t-1} + x_t`` along the last axis, seeded with ``prev`` (bit-identical in pieces)."""
    zi = (decay * np.asarray(prev, dtype=np.float64))[:, None]
    from alloc_assets.core.allocator.features import SHORT_SERIES, _first_order_loop

    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] <= SHORT_SERIES:
        return _first_order_loop(1.0, decay, x, zi[:, 0])
    from scipy.signal import lfilter

    y, _ = lfilter([1.0], [1.0, -decay], x, axis=-1, zi=zi)
    return y


def _score_rows(state: StateFrame, rows: slice, cfg: StressScoreConfig, carry: dict, previous_date) -> dict:
    """Stress score, contributions, thresholds and probabilities of ``state`` rows ``rows``."""
    sub = state.slice(rows.start, rows.stop)
    m = len(sub)
    raw = np.vstack([_transformed(sub, t.feature, t.transform) for t in cfg.terms])  # (J, m)
    # a missing value (an exogenous input before its first observation) contributes 0 and is not learnt from
    seen = np.isfinite(raw)
    x = np.where(seen, raw, 0.0)
    w = sub.warm[None, :] & seen
    decay = 1.0 if cfg.standardise_half_life is None else 0.5 ** (1.0 / cfg.standardise_half_life)
    s0 = _accumulate(decay, w.astype(np.float64), carry["s0"])
    s1 = _accumulate(decay, np.where(w, x, 0.0), carry["s1"])
    s2 = _accumulate(decay, np.where(w, x * x, 0.0), carry["s2"])
    # statistics known before each date: the carry's, then the previous row's
    p0 = np.column_stack([carry["s0"], s0[:, :-1]])
    p1 = np.column_stack([carry["s1"], s1[:, :-1]])
    p2 = np.column_stack([carry["s2"], s2[:, :-1]])
    learn = np.array([float(t.learn_days) for t in cfg.terms])[:, None]
    ready = seen & (p0 >= learn)  # a term without a prior waits for learn_days values (else always ready)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = p1 / p0
        sd = np.sqrt(np.maximum(p2 / p0 - mean * mean, 1e-12))
        z = np.where(ready, np.clip((x - mean) / sd, -cfg.z_clip, cfg.z_clip), 0.0)
    weights = np.array([t.weight for t in cfg.terms])
    contrib = np.ascontiguousarray((weights[:, None] * z).T)  # (m, J)
    score = np.add.reduce(contrib, axis=1)

    lo, nbins = hist_layout(cfg)
    bins = np.clip(np.floor((score - lo) / cfg.histogram_bin).astype(np.int64), 0, nbins - 1)
    hist = np.asarray(carry["hist"], dtype=np.int64)
    if len(hist) != nbins:
        raise ValueError("the regime carry was built with another StressScoreConfig (histogram layout)")
    refresh = refresh_mask(sub.dates, cfg.refresh, previous_date)
    thresholds = np.empty((m, 3))
    current = np.asarray(carry["thresholds"], dtype=np.float64)
    done = 0
    for r in np.flatnonzero(refresh):
        hist = hist + np.bincount(bins[done:r][sub.warm[done:r]], minlength=nbins)
        thresholds[done:r] = current
        done = r
        if hist.sum() >= cfg.min_history_days:
            current = histogram_thresholds(hist, cfg)
    hist = hist + np.bincount(bins[done:][sub.warm[done:]], minlength=nbins)
    thresholds[done:] = current
    probs = score_probabilities(score, thresholds, cfg.prob_width)
    new_carry = {
        "s0": s0[:, -1].tolist(),
        "s1": s1[:, -1].tolist(),
        "s2": s2[:, -1].tolist(),
        "hist": hist.tolist(),
        "thresholds": current.tolist(),
    }
    return {"score": score, "contributions": contrib, "thresholds": thresholds, "probs": probs, "carry": new_carry}


