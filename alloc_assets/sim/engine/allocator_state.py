"""Configuration and state of the simulated allocator, and where a path starts from.

A path can start from the pipeline's priors (``fresh_state``), from the stored carries of the
latest day (``state_from_carries``) or from a price history run through the pipeline's cores
(``start_from_panel``). The state's arrays have paths on the trailing (minor) axis; a start holds
one column, broadcast to the paths by the engine (``broadcast_state``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from alloc_assets.core.allocator.feature_config import FeatureConfig, IndexSource, feature_specs
from alloc_assets.core.allocator.features import seed_carry
from alloc_assets.core.allocator.regime_config import RegimeConfig, RegimeMethod
from alloc_assets.core.allocator.stress_score import hist_layout, initial_score_carry
from alloc_assets.core.allocator.scalars import ScalarConfig

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
    from alloc_assets.core.market.panel import PricePanel

    close0 = np.asarray(close0, dtype=np.float64)
    nf = _n_feature(config, close0.size)
    panel = PricePanel(np.array(["2000-01-03"], dtype="datetime64[D]"), tuple(f"A{i}" for i in range(nf)), close0[None, :nf])
    fc = dataclasses.replace(config.features, index=IndexSource.EQUAL_WEIGHT)
    feature_carry = seed_carry(panel, {}, fc)
    state = _state(feature_carry, initial_score_carry(config.regimes.score), {"label": 0, "dwell": config.regimes.hysteresis.min_dwell_days},
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
    _, nbins = hist_layout(config.regimes.score)
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
