"""The pipeline's allocator (state -> regime -> risk scalar -> applied scalar) as one step per day,
batched over paths (paths on the minor axis), in JAX; the same code runs on NumPy arrays.

A port of ``core.allocator.features.encode`` (equal-weight index: simulated paths have no
benchmark), ``core.allocator.regimes`` (the stress score with its expanding standardisation,
histogram-quantile thresholds refreshed at period starts, ordered logit, hysteresis label) and
``core.allocator.scalars`` (``risk_scalars`` and ``applied_scalars``). The tests check every daily
value against the pipeline's to 1e-6 or better in float64 (measured: about 1e-14). Not ported:
the HMM method, manual overrides of applied scalars and exogenous feature inputs (VIX, spreads):
simulated paths carry prices only. Configuration, state and starts: ``allocator_state``; the
JAX/NumPy differences: ``backend``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from alloc_assets.core.allocator.feature_config import TRADING_DAYS_PER_YEAR, hl_alpha, span_alpha
from alloc_assets.core.allocator.regime_config import Transform
from alloc_assets.core.allocator.stress_score import hist_layout
from alloc_assets.core.allocator.scalars import ScalarBasis, ScalarConfig
from alloc_assets.sim.engine.allocator_state import AllocatorConfig, AllocatorState, feature_columns
from alloc_assets.sim.engine.backend import JAX, Backend

def advance_features(state: AllocatorState, log_returns, config: AllocatorConfig, backend: Backend = JAX) -> AllocatorState:
    """The encoder recursions after one day of log returns (N_all, B) (``features._advance``)."""
    xp = backend.xp
    fc = config.features
    nf = state.log_close.shape[0]
    r = log_returns[:nf]
    growth = 1.0 + backend.sum0(xp.expm1(r)) / nf
    level = state.level * growth
    idx_ret = xp.log(growth)
    sq = idx_ret * idx_ret
    alphas = xp.asarray([hl_alpha(h) for h in fc.vol_half_lives], dtype=r.dtype)[:, None]
    ewm_var = (1.0 - alphas) * state.ewm_var + alphas * sq[None, :]
    prods = [r[i] * r[i:] for i in range(nf)]  # row group i: r_i r_j for j >= i
    a_s, a_l = (hl_alpha(h) for h in fc.corr_half_lives)
    a_t, a_b = span_alpha(fc.trend_span), span_alpha(fc.breadth_span)
    log_close = state.log_close + r
    return dataclasses.replace(
        state,
        log_close=log_close,
        level=level,
        level_max=xp.maximum(state.level_max, level),
        ewm_var=ewm_var,
        cov_short=tuple((1.0 - a_s) * c + a_s * x for c, x in zip(state.cov_short, prods)),
        cov_long=tuple((1.0 - a_l) * c + a_l * x for c, x in zip(state.cov_long, prods)),
        ewm_log_index=(1.0 - a_t) * state.ewm_log_index + a_t * xp.log(level),
        ewm_log_close=(1.0 - a_b) * state.ewm_log_close + a_b * log_close,
    )


def _mean_offdiag_corr(cov: tuple, n: int, backend: Backend):
    """Mean off-diagonal correlation from the row groups of a covariance -> (B,):
    ``sum_i u_i sum_{j > i} C_ij u_j / (N (N - 1) / 2)`` with ``u = 1 / sqrt(diag C)``."""
    xp = backend.xp
    if n < 2:
        return xp.ones(cov[0].shape[1:], dtype=cov[0].dtype)
    inv_sd = [1.0 / xp.sqrt(cov[i][0]) for i in range(n)]
    total = None
    for i in range(n - 1):
        inner = cov[i][1] * inv_sd[i + 1]
        for j in range(i + 2, n):
            inner = inner + cov[i][j - i] * inv_sd[j]
        term = inner * inv_sd[i]
        total = term if total is None else total + term
    return total / (n * (n - 1) / 2)


def features(state: AllocatorState, config: AllocatorConfig, backend: Backend = JAX):
    """The latent state (F, B), rows in ``feature_columns(config.features)`` order (``features._features``)."""
    xp = backend.xp
    n = state.log_close.shape[0]
    vols = xp.sqrt(TRADING_DAYS_PER_YEAR * state.ewm_var)
    corr_s = _mean_offdiag_corr(state.cov_short, n, backend)
    corr_l = _mean_offdiag_corr(state.cov_long, n, backend)
    above = (state.log_close > state.ewm_log_close).astype(vols.dtype) + 0.5 * (state.log_close == state.ewm_log_close)
    rows = [vols[i] for i in range(vols.shape[0])]
    rows += [
        xp.log(vols[0] / vols[-1]),
        state.level / state.level_max - 1.0,
        corr_s,
        corr_l,
        corr_s - corr_l,
        xp.log(state.level) - state.ewm_log_index,
        backend.sum0(above) / n,
    ]
    return xp.stack(rows)


def _histogram_thresholds(hist, n, config: AllocatorConfig, dtype, backend: Backend):
    """``regimes.histogram_thresholds`` for every path: hist (nbins, B), n (B,) its totals -> (3, B)."""
    xp = backend.xp
    cfg = config.regimes.score
    lo, _ = hist_layout(cfg)
    n = n.astype(dtype)
    # ranks ceil(q n) in the working precision: exactly the pipeline's in float64; in float32 a rank
    # can (rarely) differ by one where q n rounds across an integer
    ranks = xp.stack([xp.maximum(1.0, xp.ceil(q * n)) for q in cfg.quantiles]).astype(hist.dtype)
    idx = backend.searchsorted_cumulative(hist, ranks)
    out = [lo + (idx[k].astype(dtype) + 0.5) * cfg.histogram_bin for k in range(len(cfg.quantiles))]
    out[1] = xp.maximum(out[1], out[0] + cfg.histogram_bin)
    out[2] = xp.maximum(out[2], out[1] + cfg.histogram_bin)
    return xp.stack(out)


def _probabilities(score, thresholds, prob_width: float, backend: Backend):
    xp = backend.xp
    width = prob_width * (thresholds[1] - thresholds[0])
    q = backend.expit((score[None, :] - thresholds) / width[None, :])  # (3, B)
    return xp.stack([1.0 - q[0], q[0] - q[1], q[1] - q[2], q[2]])


def regime_step(state: AllocatorState, feats, warm, refresh, config: AllocatorConfig, backend: Backend = JAX):
    """Stress score, thresholds, probabilities and hysteresis label of one day (``regimes._score_rows``
    and ``regimes.hysteresis_labels``).

    feats : (F, B) today's features; warm : bool scalar (day has ``warm_days`` returns behind it);
    refresh : bool scalar (first day of a threshold-refresh period).
    Returns ``(state, {"score": (B,), "thresholds": (3, B), "probs": (4, B), "label": (B,)})``.
    """
    xp = backend.xp
    cfg = config.regimes.score
    names = feature_columns(config.features)
    dtype = feats.dtype
    x = []
    for term in cfg.terms:
        v = feats[names.index(term.feature)]
        x.append(xp.log(v) if Transform(term.transform) is Transform.LOG else v)
    x = xp.stack(x)  # (J, B)
    mean = state.s1 / state.s0
    sd = xp.sqrt(xp.maximum(state.s2 / state.s0 - mean * mean, 1e-12))
    z = xp.clip((x - mean) / sd, -cfg.z_clip, cfg.z_clip)
    score = cfg.terms[0].weight * z[0]
    for j in range(1, len(cfg.terms)):  # summed in term order, like np.add.reduce over the contributions
        score = score + cfg.terms[j].weight * z[j]
    decay = 1.0 if cfg.standardise_half_life is None else 0.5 ** (1.0 / cfg.standardise_half_life)
    w = xp.asarray(warm).astype(dtype)
    s0 = decay * state.s0 + w
    s1 = decay * state.s1 + w * x
    s2 = decay * state.s2 + w * (x * x)

    # At a refresh the buffered bins join the histogram and the thresholds are re-read from it.
    if state.recent.shape[0] == 0:
        raise ValueError("the allocator state has no score buffer: size it with with_score_buffer(state, length)")

    def refreshed(operand):
        hist, current = operand
        hist = backend.merge_recent(hist, state.recent, state.recent_count[0])
        n = backend.count(hist)
        return hist, xp.where((n >= cfg.min_history_days)[None, :], _histogram_thresholds(hist, n, config, dtype, backend), current)

    hist, thresholds = backend.cond(refresh, refreshed, lambda operand: operand, (state.hist, state.thresholds))
    probs = _probabilities(score, thresholds, cfg.prob_width, backend)

    lo, nbins = hist_layout(cfg)
    bins = xp.clip(xp.floor((score - lo) / cfg.histogram_bin), 0, nbins - 1).astype(xp.int32)
    count = xp.where(refresh, 0, state.recent_count)
    recent = backend.set_row(state.recent, count[0], bins)
    count = count + xp.asarray(warm).astype(xp.int32)

    label, dwell = _hysteresis(state.label, state.dwell, probs, config, xp)
    new = dataclasses.replace(state, s0=s0, s1=s1, s2=s2, hist=hist, recent=recent, recent_count=count, thresholds=thresholds,
                              probs=probs, label=label, dwell=dwell)
    return new, {"score": score, "thresholds": thresholds, "probs": probs, "label": label}


def _hysteresis(label, dwell, probs, config: AllocatorConfig, xp):
    h = config.regimes.hysteresis
    q3 = probs[3]
    q2 = q3 + probs[2]
    q1 = q2 + probs[1]
    q = [None, q1, q2, q3]  # Q_k = P(regime >= k), cumulated from CRISIS down as in the pipeline
    up = xp.zeros_like(label)
    stay = xp.zeros_like(label)
    for k in (1, 2, 3):
        up = xp.where(q[k] >= h.enter, k, up)
        stay = xp.where((label >= k) & (q[k] >= h.exit), k, stay)
    cand = xp.maximum(up, stay)
    # as core.regimes.hysteresis_labels: the dwell never delays an escalation into CRISIS (3)
    move = (cand != label) & ((dwell >= h.min_dwell_days) | ((cand == 3) & (cand > label)))
    return xp.where(move, cand, label).astype(label.dtype), xp.where(move, 1, dwell + 1).astype(dwell.dtype)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ScalarValues:
    """The numbers of the scalar map as traced arrays, so that changing them never recompiles.

    multipliers (4,), quantum, deadband, floor (the effective floor), vol_target (+inf: no cap),
    max_step (+inf: no limit), apply_missing (``apply_missing_scalar_as``). With +inf the cap and
    the step limit leave the scalar exactly as the code without them does (``min(x, inf) = x``).
    What stays static (part of the compiled program): the basis (label or expected) and whether
    ``quantum`` is zero.
    """

    multipliers: jax.Array
    quantum: jax.Array
    deadband: jax.Array
    floor: jax.Array
    vol_target: jax.Array
    max_step: jax.Array
    apply_missing: jax.Array


def scalar_values(config: AllocatorConfig, dtype, xp=jnp) -> ScalarValues:
    """The traced numbers of ``config.scalars`` (see :class:`ScalarValues`)."""
    sc = config.scalars
    inf = math.inf
    return ScalarValues(
        multipliers=xp.asarray(sc.multipliers, dtype),
        quantum=xp.asarray(sc.quantum, dtype),
        deadband=xp.asarray(sc.deadband, dtype),
        floor=xp.asarray(sc.effective_floor, dtype),
        vol_target=xp.asarray(inf if sc.vol_target is None else sc.vol_target, dtype),
        max_step=xp.asarray(inf if sc.max_step is None else sc.max_step, dtype),
        apply_missing=xp.asarray(config.apply_missing_scalar_as, dtype),
    )


def static_config(config: AllocatorConfig) -> AllocatorConfig:
    """``config`` with the numbers that :class:`ScalarValues` carries set to fixed placeholders.

    Two configurations that differ only in those numbers give the same static configuration, so
    the compiled kernel (keyed on it) is reused. The volatility cap and the step limit are always
    in the program (their value +inf when off), so switching them on or off does not recompile
    either. Only valid together with the ``ScalarValues`` of the real configuration.
    """
    sc = config.scalars
    placeholder = ScalarConfig(basis=sc.basis, quantum=1.0 if sc.quantum else 0.0, deadband=0.0, floor=None,
                               vol_target=1.0, max_step=1.0, initial_scalar=sc.initial_scalar)
    return dataclasses.replace(config, scalars=placeholder, apply_missing_scalar_as=1.0)


def scalar_step(state: AllocatorState, probs, label, vol_21d, rebalance, config: AllocatorConfig, xp=jnp,
                values: ScalarValues | None = None):
    """Risk scalar of the day (``scalars.risk_scalars``) and, at a rebalance, the scalar applied there.

    The regime scalar follows ``ScalarConfig.basis``: ``label`` takes the multiplier of the
    hysteresis label; ``expected`` the probability-weighted multiplier rounded to ``quantum``, 1
    within ``deadband`` of 1. Then the optional volatility cap, the floor and the step limit.
    With ``values`` (traced, see :class:`ScalarValues`) the numbers come from there, not from ``config``.
    Returns ``(state, scalar (B,), applied (B,))``; ``applied`` is meaningful on rebalance days only.
    """
    sc = config.scalars
    if values is None:
        m = sc.multipliers
        quantum, deadband, floor = sc.quantum, sc.deadband, sc.effective_floor
        vol_target, max_step, missing = sc.vol_target, sc.max_step, config.apply_missing_scalar_as
    else:
        m = [values.multipliers[i] for i in range(4)]
        quantum, deadband, floor = values.quantum, values.deadband, values.floor
        vol_target, max_step, missing = values.vol_target, values.max_step, values.apply_missing
    if ScalarBasis(sc.basis) is ScalarBasis.LABEL:
        regime = xp.where(label == 0, m[0], xp.where(label == 1, m[1], xp.where(label == 2, m[2], m[3]))).astype(probs.dtype)
    else:
        expected = probs[0] * m[0] + probs[1] * m[1] + probs[2] * m[2] + probs[3] * m[3]
        snapped = xp.round(expected / quantum) * quantum if sc.quantum else expected
        regime = xp.where(expected >= 1.0 - deadband, 1.0, xp.minimum(snapped, 1.0))
    if vol_target is not None and vol_21d is not None:
        ok = xp.isfinite(vol_21d) & (vol_21d > 0)
        regime = xp.where(ok, xp.minimum(regime, vol_target / xp.where(ok, vol_21d, 1.0)), regime)
    target = xp.clip(regime, floor, 1.0)
    if max_step is not None:
        target = xp.minimum(xp.maximum(target, state.scalar - max_step), state.scalar + max_step)
    applied = xp.where(xp.isfinite(state.pending), state.pending, missing)
    pending = xp.where(rebalance, target, state.pending)
    return dataclasses.replace(state, scalar=target, pending=pending), target, applied


def allocator_day(state: AllocatorState, log_returns, warm, refresh, rebalance, config: AllocatorConfig,
                  backend: Backend = JAX, advance: bool = True, values: ScalarValues | None = None):
    """One trading day: encoder (if ``advance``), regime, risk scalar, applied scalar.

    Returns ``(state, out)`` with ``out`` holding ``features`` (F, B), ``score``, ``thresholds``,
    ``probs``, ``label``, ``scalar`` and ``applied``.
    """
    xp = backend.xp
    if advance:
        state = advance_features(state, log_returns, config, backend)
    feats = features(state, config, backend)
    state, out = regime_step(state, feats, warm, refresh, config, backend)
    vol_21d = feats[feature_columns(config.features).index("vol_21d")] if "vol_21d" in feature_columns(config.features) else None
    if config.scalars.vol_target is not None and vol_21d is None and values is None:
        raise ValueError("ScalarConfig.vol_target needs a vol_21d feature (FeatureConfig.vol_half_lives must contain 21)")
    state, scalar, applied = scalar_step(state, out["probs"], out["label"], vol_21d, rebalance, config, xp, values)
    out.update(features=feats, scalar=scalar, applied=applied)
    return state, out
