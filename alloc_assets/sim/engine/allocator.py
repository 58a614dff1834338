"""The pipeline's allocator (state -> regime -> risk scalar -> applied scalar) as one step per day,
batched over paths (paths on the minor axis), in JAX; the same code runs on NumPy arrays.

It is a port of ``alloc_assets.core.allocator.features.encode`` (equal-weight index: simulated paths have no
benchmark), ``alloc_assets.core.allocator.regimes`` (``RegimeMethod.STRESS_SCORE`` with its expanding
standardisation, the histogram-quantile thresholds refreshed at calendar period starts, the ordered
logit and the hysteresis label), ``alloc_assets.core.allocator.scalars.risk_scalars`` (label or expected
multiplier, optional volatility-target cap on ``vol_21d``, floor, maximum step) and
``alloc_assets.core.allocator.scalars.applied_scalars`` (the scalar computed at rebalance r(k-1) is applied at
r(k); ``apply_missing_scalar_as`` before there is one). The carries are the pipeline's own: a path
can start from priors (``fresh_state``) or from the stored carries of the latest day
(``state_from_carries``). The tests check that, on the same price path, every daily value equals the
pipeline's to 1e-6 or better in float64.

Not ported: the HMM method (``RegimeMethod.HMM`` refits by EM twice a year: ``ValueError``), manual
overrides of applied scalars, and exogenous feature inputs (VIX, spreads): simulated paths carry
prices only.

Every step takes a ``Backend`` (``JAX`` by default, or ``NUMPY``): its array namespace ``xp`` plus
the few operations that must differ between the two (a branch, scatters, reductions over a small
leading axis, which XLA on CPU runs much faster unrolled, and the logistic function). Measured
against the pipeline on simulated paths the float64 differences are about 1e-14.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

from alloc_assets.core.allocator.feature_config import (
    TRADING_DAYS_PER_YEAR,
    FeatureConfig,
    IndexSource,
    _hl_alpha,
    _span_alpha,
    feature_specs,
)
from alloc_assets.core.allocator.regime_config import RegimeConfig, RegimeMethod, Transform
from alloc_assets.core.allocator.stress_score import _hist_layout, _initial_score_carry
from alloc_assets.core.allocator.scalars import ScalarBasis, ScalarConfig

N_REGIMES = 4


@dataclass(frozen=True)
class AllocatorConfig:
    """Static settings of the simulated allocator (the pipeline's defaults unless changed).

    features, regimes, scalars : the pipeline's configurations (``regimes.method`` must be the
        stress score).
    apply_missing_scalar_as : scalar applied at a rebalance with no previous computed scalar.
    feature_assets : the encoder sees the first ``feature_assets`` assets (None: all). Scenario
        universes append non-equity sleeves (a rates asset) that the equity state ignores.
    """

    features: FeatureConfig = field(default_factory=FeatureConfig)
    regimes: RegimeConfig = field(default_factory=RegimeConfig)
    scalars: ScalarConfig = field(default_factory=ScalarConfig)
    apply_missing_scalar_as: float = 1.0
    feature_assets: int | None = None

    def __post_init__(self) -> None:
        if RegimeMethod(self.regimes.method) is not RegimeMethod.STRESS_SCORE:
            raise ValueError("the simulated allocator ports the stress-score method only; set RegimeConfig(method='stress_score')")
        if self.features.index is IndexSource.BENCHMARK:
            raise ValueError("simulated paths have no benchmark series: use IndexSource.AUTO or EQUAL_WEIGHT")
        names = feature_columns(self.features)
        for term in self.regimes.score.terms:
            if term.feature not in names:
                raise ValueError(f"score term {term.feature!r} is not a simulated feature ({names}); exogenous inputs are not simulated")


def feature_columns(config: FeatureConfig = FeatureConfig()) -> tuple[str, ...]:
    """Names of the features, in the order of ``features`` output rows (the pipeline's column order)."""
    return tuple(s.name for s in feature_specs(config))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class AllocatorState:
    """Carry of the simulated allocator; trailing axis = paths (B), or 1 before broadcasting.

    log_close (N, B); level, level_max (B,) equal-weight index; ewm_var (H, B); cov_short,
    cov_long: the upper-triangle EWMA covariances as a tuple of N row groups, group i of shape
    (N - i, B) holding C[i, i:] (the pipeline's packed order, split by row; XLA on CPU handles
    such groups several times faster than gathers or leading-axis reductions over a (P, B) array); ewm_log_index (B,); ewm_log_close (N, B);
    s0, s1, s2 (J, B) standardisation sums; hist (nbins, B) int32 histogram of the warm scores up
    to the last threshold refresh; recent (L, B) int32 histogram bins of the warm scores since then
    and recent_count (B,) int32 how many rows of ``recent`` are filled (the same for every path).
    The pipeline's histogram is ``hist`` plus the first ``recent_count`` rows of ``recent``: the
    thresholds only read it at refresh dates, so the merge waits for them (scattering into a
    (1001, B) histogram every day next to a conditional that reads it made XLA copy it daily);
    thresholds (3, B); probs (4, B) the last regime probabilities; label, dwell (B,) int32;
    scalar (B,) previous risk scalar; pending (B,) scalar computed at the last rebalance (NaN: none yet).
    """

    log_close: jax.Array
    level: jax.Array
    level_max: jax.Array
    ewm_var: jax.Array
    cov_short: tuple
    cov_long: tuple
    ewm_log_index: jax.Array
    ewm_log_close: jax.Array
    s0: jax.Array
    s1: jax.Array
    s2: jax.Array
    hist: jax.Array
    recent: jax.Array
    recent_count: jax.Array
    thresholds: jax.Array
    probs: jax.Array
    label: jax.Array
    dwell: jax.Array
    scalar: jax.Array
    pending: jax.Array


@dataclass(frozen=True)
class Backend:
    """The operations where JAX and NumPy differ."""

    xp: ModuleType

    @property
    def is_jax(self) -> bool:
        return self.xp is jnp

    def cond(self, pred, true_fn, false_fn, operand):
        if self.is_jax:
            return jax.lax.cond(pred, true_fn, false_fn, operand)
        return true_fn(operand) if bool(pred) else false_fn(operand)

    def add_at_columns(self, arr, rows, values):
        """``arr[rows[b], b] += values[b]`` for every column b (one row per column: no collisions)."""
        cols = self.xp.arange(arr.shape[1])
        if self.is_jax:
            return arr.at[rows, cols].add(values)
        out = arr.copy()
        out[rows, cols] += values
        return out

    def expit(self, x):
        return jax.nn.sigmoid(x) if self.is_jax else scipy.special.expit(x)

    def sum0(self, x):
        """Sum over axis 0. XLA on CPU reduces a leading (major) axis very slowly, so JAX gets an
        unrolled chain of adds over the (small, static) leading axis, which fuses into one loop."""
        if not self.is_jax:
            return np.sum(x, axis=0)
        out = x[0]
        for i in range(1, x.shape[0]):
            out = out + x[i]
        return out

    def searchsorted_cumulative(self, hist, ranks):
        """For each column b and rank row k: ``searchsorted(cumsum(hist[:, b]), ranks[k, b], "left")``,
        i.e. the number of bins whose cumulative count is below the rank. hist (nbins, B) ints,
        ranks (R, B). JAX runs a ``fori_loop`` over the bins (``cumsum`` over a leading axis is slow on CPU)."""
        xp = self.xp
        if not self.is_jax:
            cum = np.cumsum(hist, axis=0)
            return np.stack([np.sum(cum < r[None, :], axis=0) for r in ranks])

        def body(j, carry):
            cum, idx = carry
            cum = cum + hist[j]
            return cum, idx + (cum[None, :] < ranks).astype(jnp.int32)

        init = (jnp.zeros(hist.shape[1:], hist.dtype), jnp.zeros(ranks.shape, jnp.int32))
        return jax.lax.fori_loop(0, hist.shape[0], body, init)[1]

    def merge_recent(self, hist, recent, count):
        """``hist[recent[j, b], b] += 1`` for rows j < count (count a scalar)."""
        cols = self.xp.arange(hist.shape[1])
        if not self.is_jax:
            if int(count) == 0:
                return hist
            out = hist.copy()
            for j in range(int(count)):
                out[recent[j], cols] += 1
            return out
        return jax.lax.fori_loop(0, count, lambda j, h: h.at[recent[j], cols].add(1), hist)

    def set_row(self, arr, index, row):
        """``arr[index] = row`` (index a scalar)."""
        if not self.is_jax:
            out = arr.copy()
            out[int(index)] = row
            return out
        return jax.lax.dynamic_update_index_in_dim(arr, row, index, 0)

    def count(self, hist):
        """Total count of each column of an int histogram (nbins, B) -> (B,)."""
        if not self.is_jax:
            return np.sum(hist, axis=0)
        return jax.lax.fori_loop(0, hist.shape[0], lambda j, c: c + hist[j], jnp.zeros(hist.shape[1:], hist.dtype))


JAX = Backend(jnp)
NUMPY = Backend(np)


# --------------------------------------------------------------------------------------------------
# initial states


def _n_feature(config: AllocatorConfig, n_assets: int) -> int:
    return n_assets if config.feature_assets is None else int(config.feature_assets)


@dataclass(frozen=True)
class AllocatorStart:
    """Where the simulated allocator starts: its state on day 0 (trailing axis 1, broadcast to the
    paths by the engine), the history row index of day 0 (for the ``warm`` flag), and whether day 0
    still needs its regime step (a fresh history) or was already computed (from carries)."""

    state: AllocatorState
    row0: int
    fresh: bool


def fresh_state(close0: np.ndarray, config: AllocatorConfig = AllocatorConfig()) -> AllocatorStart:
    """A history that starts on day 0 (the pipeline's priors).

    ``close0`` (N,) are the day-0 prices of all simulated assets; the encoder uses the first
    ``feature_assets`` of them.
    """
    from alloc_assets.core.allocator.features import _seed_carry
    from alloc_assets.core.market.panel import PricePanel

    close0 = np.asarray(close0, dtype=np.float64)
    nf = _n_feature(config, close0.size)
    panel = PricePanel(np.array(["2000-01-03"], dtype="datetime64[D]"), tuple(f"A{i}" for i in range(nf)), close0[None, :nf])
    fc = dataclasses.replace(config.features, index=IndexSource.EQUAL_WEIGHT)
    feature_carry = _seed_carry(panel, {}, fc)
    state = _state(feature_carry, _initial_score_carry(config.regimes.score), {"label": 0, "dwell": config.regimes.hysteresis.min_dwell_days},
                   config.scalars.initial_scalar, math.nan, [1.0, 0.0, 0.0, 0.0], config)
    return AllocatorStart(state, row0=0, fresh=True)


def state_from_carries(
    feature_carry: dict,
    regime_carry: dict,
    scalar_carry: dict | None = None,
    pending_scalar: float | None = None,
    config: AllocatorConfig = AllocatorConfig(),
) -> AllocatorStart:
    """The state after the last stored day (day 0 = the carries' last date), from the pipeline's carries.

    feature_carry : the ``encode`` carry (built on the equal-weight index: a panel without a
        benchmark, or ``FeatureConfig(index=EQUAL_WEIGHT)``).
    regime_carry : the ``compute_regimes`` carry (stress score).
    scalar_carry : the ``risk_scalars`` carry (``previous``), or None for ``initial_scalar``.
    pending_scalar : the scalar computed at the last rebalance, to be applied at the next one
        (None: missing, so ``apply_missing_scalar_as`` is applied).
    """
    if feature_carry.get("index_source") != IndexSource.EQUAL_WEIGHT.value:
        raise ValueError("the feature carry was built on the benchmark index; simulated paths only have the equal-weight index")
    if regime_carry.get("method") != RegimeMethod.STRESS_SCORE.value:
        raise ValueError(f"the regime carry is for method {regime_carry.get('method')!r}; the simulation ports the stress score")
    prev = config.scalars.initial_scalar if scalar_carry is None else float(scalar_carry["previous"])
    label = regime_carry["label"] or {"label": 0, "dwell": config.regimes.hysteresis.min_dwell_days}
    probs = regime_carry.get("probs") or [1.0, 0.0, 0.0, 0.0]
    state = _state(feature_carry, regime_carry["score"], label, prev, math.nan if pending_scalar is None else float(pending_scalar),
                   probs, config)
    return AllocatorStart(state, row0=int(feature_carry["n_rows"]) - 1, fresh=False)


def start_from_panel(panel, config: AllocatorConfig = AllocatorConfig(), frequency="monthly") -> AllocatorStart:
    """Run the pipeline's cores over a price history and start the simulated allocator after its last day.

    The state is encoded on the equal-weight index of the panel's symbols (simulated paths have no
    benchmark), the regimes and scalars with ``config``; the scalar pending for the next rebalance
    is the one computed at the last rebalance date (``frequency``) strictly before the last day.
    """
    from alloc_assets.core.market.calendar import rebalance_mask
    from alloc_assets.core.allocator.features import encode
    from alloc_assets.core.allocator.regimes import compute_regimes
    from alloc_assets.core.allocator.scalars import risk_scalars

    fc = dataclasses.replace(config.features, index=IndexSource.EQUAL_WEIGHT)
    frame, feature_carry = encode(panel, None, fc)
    regimes, regime_carry = compute_regimes(frame, config.regimes)
    vol = frame.column("vol_21d") if "vol_21d" in frame.columns else None
    scalars, scalar_carry = risk_scalars(regimes.dates, regimes.probs, config.scalars, None, vol, regimes.label)
    reb = np.flatnonzero(rebalance_mask(regimes.dates, frequency)[:-1])
    pending = float(scalars.risk_scalar[reb[-1]]) if reb.size else None
    return state_from_carries(feature_carry, regime_carry, scalar_carry, pending, config)


def _state(fc: dict, sc: dict, lab: dict, scalar: float, pending: float, probs, config: AllocatorConfig) -> AllocatorState:
    col = lambda v: np.asarray(v, dtype=np.float64).reshape(-1, 1)  # noqa: E731
    one = lambda v: np.asarray([v], dtype=np.float64)  # noqa: E731
    _, nbins = _hist_layout(config.regimes.score)
    hist = np.asarray(sc["hist"], dtype=np.int64)
    if hist.size != nbins:
        raise ValueError("the regime carry's histogram does not match the StressScoreConfig")
    if hist.max(initial=0) >= 2**31 - 1:
        raise ValueError("histogram counts overflow int32")
    return AllocatorState(
        log_close=np.log(col(fc["last_close"])),
        level=one(fc["level"]),
        level_max=one(fc["level_max"]),
        ewm_var=col(fc["ewm_var"]),
        cov_short=_row_groups(fc["ewm_cov_short"]),
        cov_long=_row_groups(fc["ewm_cov_long"]),
        ewm_log_index=one(fc["ewm_log_index"]),
        ewm_log_close=col(fc["ewm_log_close"]),
        s0=col(sc["s0"]),
        s1=col(sc["s1"]),
        s2=col(sc["s2"]),
        hist=hist.astype(np.int32).reshape(-1, 1),
        recent=np.zeros((0, 1), dtype=np.int32),
        recent_count=np.zeros(1, dtype=np.int32),
        thresholds=col(sc["thresholds"]),
        probs=col(probs),
        label=np.asarray([int(lab["label"])], dtype=np.int32),
        dwell=np.asarray([int(lab["dwell"])], dtype=np.int32),
        scalar=one(scalar),
        pending=one(pending),
    )


def _row_groups(packed) -> tuple:
    """Packed upper triangle (P,) in ``triu_indices`` order -> N groups (N - i, 1)."""
    x = np.asarray(packed, dtype=np.float64)
    n = int(round((-1 + math.sqrt(1 + 8 * x.size)) / 2))
    starts = np.concatenate([[0], np.cumsum(np.arange(n, 0, -1))])
    return tuple(x[starts[i] : starts[i + 1]].reshape(-1, 1) for i in range(n))


def packed_covariance(groups) -> np.ndarray:
    """Row groups (N arrays (N - i, B)) -> packed upper triangle (P, B) in ``triu_indices`` order."""
    return np.concatenate([np.asarray(g) for g in groups], axis=0)


def with_score_buffer(state: AllocatorState, length: int) -> AllocatorState:
    """The state with room for ``length`` days of scores between two threshold refreshes
    (the engine sizes it from the calendar: the longest stretch without a refresh)."""
    if state.recent_count.max(initial=0) > 0:
        raise ValueError("the score buffer is not empty; merge it before resizing")
    width = state.recent.shape[1]
    return dataclasses.replace(state, recent=np.zeros((int(length), width), dtype=np.int32))


def broadcast_state(state: AllocatorState, n_paths: int, dtype, xp=jnp) -> AllocatorState:
    """Every field broadcast along its trailing axis to ``n_paths``; floats cast to ``dtype``."""

    def one(x):
        x = xp.asarray(x)
        if x.dtype.kind == "f":
            x = x.astype(dtype)
        shape = x.shape[:-1] + (n_paths,)
        return xp.broadcast_to(x, shape) if xp is jnp else np.ascontiguousarray(np.broadcast_to(x, shape))

    return jax.tree_util.tree_map(one, state)


# --------------------------------------------------------------------------------------------------
# the daily steps


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
    alphas = xp.asarray([_hl_alpha(h) for h in fc.vol_half_lives], dtype=r.dtype)[:, None]
    ewm_var = (1.0 - alphas) * state.ewm_var + alphas * sq[None, :]
    prods = [r[i] * r[i:] for i in range(nf)]  # row group i: r_i r_j for j >= i
    a_s, a_l = (_hl_alpha(h) for h in fc.corr_half_lives)
    a_t, a_b = _span_alpha(fc.trend_span), _span_alpha(fc.breadth_span)
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
    lo, _ = _hist_layout(cfg)
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

    lo, nbins = _hist_layout(cfg)
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
