"""Market regimes from the latent state (pure; numpy/scipy only, no Dagster import).

``compute_regimes(state, config, carry)`` gives, for each date t, P(regime_t | data through t) over
NORMAL, ELEVATED, STRESS, CRISIS and a label with hysteresis. Two methods:

**Stress score** (default, ``RegimeMethod.STRESS_SCORE``). Each feature in ``StressScoreConfig.terms``
is (optionally log-) transformed and standardised with its mean and standard deviation over the warm
days *before* t (expanding by default, or exponentially weighted with ``standardise_half_life``),
started from a documented prior worth ``prior_days`` days. The z-score is clipped to
±``z_clip``; the score is ``s_t = sum_i w_i z_i,t`` and ``w_i z_i,t`` is stored as the
contribution of feature i (they add up to the score); a missing value (e.g. an exogenous input
before its first observation) contributes 0. Thresholds: at the first date of each
``refresh`` period (calendar quarter by default; anchored to the calendar, not to the data start)
the thresholds become the ``quantiles`` (70th, 90th, 98th percentiles, i.e. a target occupation of
about 70/20/8/2 %) of all warm scores strictly before that date, read from a histogram with bins of
``histogram_bin`` (so the carry stays small). Before ``min_history_days`` warm scores exist, the
thresholds are the prior ``prior_score_sd * Phi^-1(quantiles)``. Nothing in this rule looks at
known crises; the weights and levels are set once, a priori (see ``DEFAULT_SCORE_TERMS``).
Probabilities are an ordered logit around the thresholds:
``P(regime >= k) = expit((s - tau_k) / width)``, ``width = prob_width * (tau_2 - tau_1)``, and
``p_k = P(>= k) - P(>= k + 1)``.

**HMM** (``RegimeMethod.HMM``). A 4-state diagonal Gaussian HMM (``alloc_assets.core.allocator.hmm``) on a
few state features (log volatility, volatility shock, correlation; see ``HMMConfig`` for the
choices: tied variances, volatility means anchored at quantiles), refitted by EM at the
first date of each ``refit`` period (January and July by default) on the warm days strictly before
that date (expanding window), once ``min_history_days`` warm days exist. States are ordered by the
mean of the first feature (volatility), so state k is regime k. Probabilities are forward-filtered:
``p_t ∝ (p_{t-1} A) * N(x_t)``, p_{t-1} being the previous date's output. Before the first fit the
method reports the stress-score probabilities (``source = "hmm_prior"``).

**Label** (both methods, ``HysteresisConfig``). With ``Q_k = P(regime >= k)`` and the current label
L: ``candidate = max(max{k : Q_k >= enter}, max{k <= L : Q_k >= exit})`` (enter above exit, so a
regime is entered on strong evidence and left only on weak evidence); the label moves to the
candidate only after ``min_dwell_days`` days in the current label, except that an escalation into
CRISIS is never held back by the dwell.

Every method is a recursion with a JSON-serialisable carry: computing the history in one call or day
by day gives identical numbers, and a row never depends on data after its date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from statistics import NormalDist

import numpy as np

from alloc_assets.core.allocator.features import StateFrame
from alloc_assets.core.regime import PROBABILITY_COLUMNS, REGIMES, Regime
from alloc_assets.core.allocator.hmm import HMMParams, fit_hmm, log_emissions, filter_step

CARRY_VERSION = 1




class RegimeMethod(str, Enum):
    """How regime probabilities are produced."""

    STRESS_SCORE = "stress_score"
    HMM = "hmm"
    JUMP_MODEL = "jump_model"


class Cadence(str, Enum):
    """Refresh cadence anchored to the calendar: the first date of each period in the data."""

    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    SEMIANNUAL = "semiannual"
    ANNUAL = "annual"


_MONTHS_PER_PERIOD = {Cadence.MONTHLY: 1, Cadence.QUARTERLY: 3, Cadence.SEMIANNUAL: 6, Cadence.ANNUAL: 12}


class Transform(str, Enum):
    """Transform applied to a feature before it is standardised or modelled."""

    NONE = "none"
    LOG = "log"


@dataclass(frozen=True)
class ScoreTerm:
    """One feature of the stress score: weight (positive = higher means more stress), transform, and
    the prior mean and standard deviation (of the transformed feature) that standardisation starts from."""

    feature: str
    weight: float
    transform: Transform = Transform.NONE
    prior_mean: float = 0.0
    prior_sd: float = 1.0
    learn_days: int = 0
    """0: standardise from the prior (worth ``prior_days``). > 0: no prior (an indicator whose level
    is not known a priori): the term contributes 0 until it has seen ``learn_days`` warm values,
    then its own expanding (or weighted) mean and sd before each date."""


# A priori weights (sum of |w| = 1) and priors from general market knowledge (long-run S&P 500
# volatility about 16 %, average stock correlation about 0.3), not fitted to any crisis. Volatility
# carries most of the weight; correlation, drawdown, trend and breadth confirm it.
DEFAULT_SCORE_TERMS: tuple[ScoreTerm, ...] = (
    ScoreTerm("vol_21d", 0.35, Transform.LOG, prior_mean=math.log(0.16), prior_sd=0.35),
    ScoreTerm("vol_shock", 0.15, Transform.NONE, prior_mean=-0.05, prior_sd=0.25),
    ScoreTerm("corr_21d", 0.15, Transform.NONE, prior_mean=0.30, prior_sd=0.12),
    ScoreTerm("corr_shock", 0.05, Transform.NONE, prior_mean=0.0, prior_sd=0.07),
    ScoreTerm("drawdown", -0.15, Transform.NONE, prior_mean=-0.10, prior_sd=0.10),
    ScoreTerm("trend", -0.10, Transform.NONE, prior_mean=0.03, prior_sd=0.07),
    ScoreTerm("breadth", -0.05, Transform.NONE, prior_mean=0.60, prior_sd=0.25),
)


@dataclass(frozen=True)
class StressScoreConfig:
    """The transparent stress score (see the module docstring for the rule)."""

    terms: tuple[ScoreTerm, ...] = DEFAULT_SCORE_TERMS
    standardise_half_life: float | None = None  # None: expanding mean and sd
    prior_days: float = 252.0
    z_clip: float = 5.0
    quantiles: tuple[float, float, float] = (0.70, 0.90, 0.98)
    refresh: Cadence = Cadence.QUARTERLY
    min_history_days: int = 504
    prior_score_sd: float = 0.7
    prob_width: float = 0.25
    histogram_bin: float = 0.01

    def __post_init__(self) -> None:
        q = self.quantiles
        if len(q) != 3 or not (0.0 < q[0] < q[1] < q[2] < 1.0):
            raise ValueError(f"quantiles must be three increasing levels in (0, 1), got {q}")
        if not self.terms or any(t.prior_sd <= 0 for t in self.terms):
            raise ValueError("the stress score needs at least one term, each with prior_sd > 0")
        if self.prior_days <= 0 or self.z_clip <= 0 or self.prob_width <= 0 or self.histogram_bin <= 0:
            raise ValueError("prior_days, z_clip, prob_width and histogram_bin must be > 0")
        if self.standardise_half_life is not None:
            most = 1.0 / (1.0 - 0.5 ** (1.0 / self.standardise_half_life))  # the weighted count's limit
            short = [t.feature for t in self.terms if t.learn_days and t.learn_days >= most]
            if short:
                raise ValueError(f"terms {short} wait for learn_days values, more than the weighted count ever "
                                 f"reaches with standardise_half_life={self.standardise_half_life} ({most:.1f})")


@dataclass(frozen=True)
class HMMFeature:
    """One observed dimension of the HMM: a state feature and its transform."""

    feature: str
    transform: Transform = Transform.NONE


@dataclass(frozen=True)
class HMMConfig:
    """The walk-forward HMM. The first feature orders the states (use a volatility).

    Defaults, and why:

    * features: log 21-day volatility, volatility shock, 21-day average correlation. The drawdown
      from the all-time high is left out: it stays deep for years after a bear market (2001-2013 in
      the bundled data) and an HMM then spends those years in a "drawdown" state whatever the
      volatility.
    * ``tied_variances``: one diagonal covariance shared by the states. With a variance per state,
      a calm state fitted with a wide variance explains extreme days better than the crisis state
      (its tails are fatter), and October 2008 came out NORMAL; tied variances make the
      log-likelihood ratio of two states linear in the features, so more volatility never points
      to a calmer state.
    * ``anchor_quantiles``: the mean of the volatility feature in state k is held at the
      (35, 80, 94, 99)-th percentile of the fit sample: the middle, by occupation, of the target
      bands 0-70, 70-90, 90-98 and 98-100 %. A free 4-state HMM splits the volatility range into
      four clusters of similar mass (about 25 % each, a third of the days in CRISIS); anchoring
      keeps each state's meaning fixed across refits. Everything else (the other means, the
      variance, the transitions) is estimated by EM. ``None`` frees the means.
    * EM starts from the previous fit (``warm_start``; the first fit from volatility-quantile
      groups) and stops when the log-likelihood gains less than ``tol`` per observation.
    """

    features: tuple[HMMFeature, ...] = (
        HMMFeature("vol_21d", Transform.LOG),
        HMMFeature("vol_shock"),
        HMMFeature("corr_21d"),
    )
    refit: Cadence = Cadence.SEMIANNUAL
    min_history_days: int = 504
    max_iter: int = 100
    tol: float = 1e-6
    warm_start: bool = True
    tied_variances: bool = True
    anchor_quantiles: tuple[float, float, float, float] | None = (0.35, 0.80, 0.94, 0.99)
    init_quantiles: tuple[float, float, float] = (0.70, 0.90, 0.98)
    init_stay: float = 0.98
    var_floor_fraction: float = 1e-3
    min_transition: float = 1e-6


@dataclass(frozen=True)
class HysteresisConfig:
    """Label rule: enter a regime when P(regime or worse) >= enter, stay while >= exit, and change at
    most once per ``min_dwell_days`` days."""

    enter: float = 0.6
    exit: float = 0.4
    min_dwell_days: int = 5

    def __post_init__(self) -> None:
        if not (0.0 < self.exit <= self.enter <= 1.0) or self.min_dwell_days < 1:
            raise ValueError(f"need 0 < exit <= enter <= 1 and min_dwell_days >= 1, got {self}")


@dataclass(frozen=True)
class RegimeConfig:
    """Everything the regime layer needs; ``method`` picks the probabilities, the label rule is shared."""

    method: RegimeMethod = RegimeMethod.STRESS_SCORE
    score: StressScoreConfig = field(default_factory=StressScoreConfig)
    hmm: HMMConfig = field(default_factory=HMMConfig)
    hysteresis: HysteresisConfig = field(default_factory=HysteresisConfig)


@dataclass(frozen=True)
class RegimeFrame:
    """Regime rows.

    dates : (T,) ``datetime64[D]``.
    probs : (T, 4) P(regime | data through t), columns ``PROBABILITY_COLUMNS``; rows sum to 1.
    label : (T,) int8, a ``Regime`` value (hysteresis applied).
    score : (T,) the stress score (computed for both methods, for explanation).
    contributions : (T, J) ``w_i z_i`` per score term; ``contribution_names`` gives the features.
    thresholds : (T, 3) the score thresholds in force (ELEVATED, STRESS, CRISIS).
    source : (T,) str, which model produced ``probs``: ``stress_score``, ``hmm`` or ``hmm_prior``.
    fit_dates : (T,) ``datetime64[D]``, the date of the HMM fit used (NaT where none).
    """

    dates: np.ndarray
    probs: np.ndarray
    label: np.ndarray
    score: np.ndarray
    contributions: np.ndarray
    contribution_names: tuple[str, ...]
    thresholds: np.ndarray
    source: np.ndarray
    fit_dates: np.ndarray

    def __len__(self) -> int:
        return len(self.dates)

    @property
    def regimes(self) -> list[Regime]:
        return [Regime(int(v)) for v in self.label]

    def to_pandas(self):
        """``date, regime, p_normal, p_elevated, p_stress, p_crisis, score, threshold_*, contrib_*,
        source, fit_date`` (the warehouse layout of ``regime_series``)."""
        import pandas as pd

        names = np.array([r.name for r in Regime])
        df = pd.DataFrame({"date": pd.to_datetime(self.dates), "regime": names[self.label]})
        for j, col in enumerate(PROBABILITY_COLUMNS):
            df[col] = self.probs[:, j]
        df["score"] = self.score
        for j, r in enumerate(REGIMES[1:]):
            df[f"threshold_{r.name.lower()}"] = self.thresholds[:, j]
        for j, name in enumerate(self.contribution_names):
            df[f"contrib_{name}"] = self.contributions[:, j]
        df["source"] = self.source
        df["fit_date"] = pd.to_datetime(self.fit_dates)
        return df


# --------------------------------------------------------------------------------------------------
# calendar anchoring


def period_index(dates: np.ndarray, cadence: Cadence | str) -> np.ndarray:
    """Integer period of each date (e.g. quarter number since year 0) for a refresh cadence."""
    months = np.asarray(dates).astype("datetime64[M]").astype(np.int64)  # months since 1970-01
    return months // _MONTHS_PER_PERIOD[Cadence(cadence)]


def refresh_mask(dates: np.ndarray, cadence: Cadence | str, previous_date: np.datetime64 | str | None = None) -> np.ndarray:
    """True at the first date of each period: the period differs from the previous date's.

    ``previous_date`` is the date before ``dates[0]`` (from a carry); without it the first date is
    not a refresh date (nothing came before it).
    """
    dates = np.asarray(dates).astype("datetime64[D]")
    if len(dates) == 0:
        return np.zeros(0, dtype=bool)
    per = period_index(dates, cadence)
    first = False
    if previous_date is not None:
        first = bool(per[0] != period_index(np.array([previous_date], dtype="datetime64[D]"), cadence)[0])
    return np.concatenate([[first], per[1:] != per[:-1]])


# --------------------------------------------------------------------------------------------------
# stress score


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


# --------------------------------------------------------------------------------------------------
# hysteresis label


def hysteresis_labels(
    probs: np.ndarray, config: HysteresisConfig = HysteresisConfig(), carry: dict | None = None
) -> tuple[np.ndarray, dict]:
    """Labels (T,) int8 from probabilities (T, 4) with enter/exit thresholds and a minimum dwell.

    ``carry`` holds ``label`` and ``dwell`` (days spent in it, including the last one); without it
    the label starts at NORMAL and may change on the first day. The minimum dwell holds every move
    except an escalation into CRISIS, which happens on the day its evidence passes ``enter``.
    """
    q = np.cumsum(probs[:, ::-1], axis=1)[:, ::-1]  # Q_k = P(regime >= k), Q_0 = 1
    enter = q >= config.enter
    enter[:, 0] = True
    up = (enter * np.arange(4)).max(axis=1).tolist()
    stay_ok = (q >= config.exit).tolist()
    label = 0 if carry is None else int(carry["label"])
    dwell = config.min_dwell_days if carry is None else int(carry["dwell"])
    out = np.empty(len(probs), dtype=np.int8)
    crisis = int(Regime.CRISIS)
    for t in range(len(probs)):
        stay = label
        ok = stay_ok[t]
        while stay > 0 and not ok[stay]:
            stay -= 1
        cand = max(up[t], stay)
        # the dwell never delays an escalation into CRISIS (a daily overlay must act on it at once)
        if cand != label and (dwell >= config.min_dwell_days or (cand == crisis and cand > label)):
            label, dwell = cand, 1
        else:
            dwell += 1
        out[t] = label
    return out, {"label": label, "dwell": dwell}


# --------------------------------------------------------------------------------------------------
# HMM walk-forward


def hmm_observations(state: StateFrame, cfg: HMMConfig) -> np.ndarray:
    """The HMM's observation matrix (T, D) from the state, transforms applied."""
    return np.column_stack([_transformed(state, f.feature, f.transform) for f in cfg.features])


def _hmm_rows(state: StateFrame, start: int, cfg: HMMConfig, carry: dict | None, fallback: np.ndarray, prev_probs, previous_date):
    """Walk-forward HMM probabilities for rows ``start..`` of ``state`` (which holds the whole history)."""
    x = hmm_observations(state, cfg)
    n = len(state)
    m = n - start
    params = None if carry is None or carry["params"] is None else HMMParams.from_dict(carry["params"])
    fit_date = None if carry is None else carry["fit_date"]
    n_fits = 0 if carry is None else int(carry["n_fits"])
    info = None if carry is None else carry.get("fit_info")
    refit = refresh_mask(state.dates[start:], cfg.refit, previous_date)
    warm_count = np.concatenate([[0], np.cumsum(state.warm)])  # warm rows before each index
    probs = np.empty((m, len(REGIMES)))
    source = np.empty(m, dtype=object)
    fit_dates = np.full(m, np.datetime64("NaT"), dtype="datetime64[D]")
    cuts = list(np.flatnonzero(refit)) + [m]
    seg_start = 0
    prev = None if prev_probs is None else np.asarray(prev_probs, dtype=np.float64)
    for cut in cuts:
        # rows [seg_start, cut) use the parameters in force; a refit happens at row ``cut``
        if params is None:
            probs[seg_start:cut] = fallback[seg_start:cut]
            source[seg_start:cut] = "hmm_prior"
            if cut > seg_start:
                prev = fallback[cut - 1]
        else:
            log_b = log_emissions(params, x[start + seg_start : start + cut])
            for i in range(cut - seg_start):
                prev = filter_step(params, prev, log_b[i])
                probs[seg_start + i] = prev
            source[seg_start:cut] = "hmm"
            fit_dates[seg_start:cut] = np.datetime64(fit_date)
        if cut == m:
            break
        g = start + cut
        if warm_count[g] >= cfg.min_history_days:
            data = x[:g][state.warm[:g]]
            init = params if (cfg.warm_start and params is not None) else None
            params, fit = fit_hmm(
                data,
                n_states=len(REGIMES),
                max_iter=cfg.max_iter,
                tol=cfg.tol,
                init=init,
                init_quantiles=cfg.init_quantiles,
                init_stay=cfg.init_stay,
                var_floor_fraction=cfg.var_floor_fraction,
                min_transition=cfg.min_transition,
                tied=cfg.tied_variances,
                anchor=None if cfg.anchor_quantiles is None else np.quantile(data[:, 0], cfg.anchor_quantiles),
            )
            fit_date = str(state.dates[g])
            n_fits += 1
            info = {"n_iter": fit.n_iter, "log_likelihood": fit.log_likelihood, "converged": fit.converged, "n_obs": fit.n_obs}
        seg_start = cut
    new_carry = {"params": None if params is None else params.to_dict(), "fit_date": fit_date, "n_fits": n_fits, "fit_info": info}
    return probs, source, fit_dates, new_carry


# --------------------------------------------------------------------------------------------------
# entry point


def compute_regimes(
    state: StateFrame, config: RegimeConfig = RegimeConfig(), carry: dict | None = None,
    jump_states: np.ndarray | None = None,
) -> tuple[RegimeFrame, dict]:
    """Regime probabilities and labels for the rows of ``state`` after the carry's date.

    Parameters
    ----------
    state : latent state rows (``features.encode``). Without a carry every row is computed. With a
        carry only rows dated after ``carry["last_date"]`` are computed; earlier rows serve as the
        history the HMM refits on, so for ``RegimeMethod.HMM`` pass the whole history (from the
        first date the carry has seen). The stress score needs only the new rows.
    config : ``RegimeConfig``; must stay the same along one history.
    carry : the regime carry after the previous date, or None to start at ``state``'s first row.
    jump_states : for ``RegimeMethod.JUMP_MODEL`` only: (T,) the peer model's online state of each
        row of ``state`` (``core.jump_model.cached_walk_forward`` on the benchmark's returns: 0 bull,
        1 bear, -1 before its first fit), each computed from data through its own date. A bull day
        has P(NORMAL) = 1, a bear day P(CRISIS) = 1 (the two-state model mapped onto the ends of the
        scalar range, as the report's ``jump_model`` control); before the first fit the stress-score
        probabilities stand in (``source = "jump_model_prior"``). The hysteresis applies as usual.

    Returns
    -------
    ``(RegimeFrame, carry_out)``; ``carry_out`` is JSON-serialisable. One call over a history and
    consecutive calls over its pieces give identical results.
    """
    method = RegimeMethod(config.method)
    dates = state.dates.astype("datetime64[D]")
    if carry is None:
        start, previous_date = 0, None
        first_date = str(dates[0]) if len(dates) else None
        score_carry = initial_score_carry(config.score)
        label_carry = None
        prev_probs = None
        hmm_carry = None
    else:
        if carry.get("version") != CARRY_VERSION or carry.get("method") != method.value:
            raise ValueError(
                f"the regime carry (version {carry.get('version')}, method {carry.get('method')!r}) does not match "
                f"this configuration (version {CARRY_VERSION}, method {method.value!r}); recompute from the first date"
            )
        previous_date = np.datetime64(carry["last_date"], "D")
        start = int(np.searchsorted(dates, previous_date, side="right"))
        first_date = carry["first_date"]
        score_carry, label_carry, prev_probs, hmm_carry = carry["score"], carry["label"], carry["probs"], carry.get("hmm")
        if method is RegimeMethod.HMM and (len(dates) == 0 or str(dates[0]) != first_date):
            raise ValueError(
                f"the HMM method refits on the whole history: pass the latent state from {first_date} on "
                f"(this one starts on {dates[0] if len(dates) else 'nothing'})"
            )
    if start >= len(dates):
        raise ValueError("no state rows after the carry's last date: nothing to compute")

    sc = _score_rows(state, slice(start, len(dates)), config.score, score_carry, previous_date)
    m = len(dates) - start
    if method is RegimeMethod.STRESS_SCORE:
        probs = sc["probs"]
        source = np.full(m, RegimeMethod.STRESS_SCORE.value, dtype=object)
        fit_dates = np.full(m, np.datetime64("NaT"), dtype="datetime64[D]")
        new_hmm = None
    elif method is RegimeMethod.JUMP_MODEL:
        if jump_states is None or len(jump_states) != len(dates):
            raise ValueError("the jump_model method needs jump_states, one per state row (core.jump_model.cached_walk_forward)")
        js = np.asarray(jump_states, dtype=np.int64)[start:]
        onehot = np.zeros((m, 4))
        onehot[js == 0, int(Regime.NORMAL)] = 1.0
        onehot[js == 1, int(Regime.CRISIS)] = 1.0
        fitted = js >= 0
        probs = np.where(fitted[:, None], onehot, sc["probs"])
        source = np.where(fitted, RegimeMethod.JUMP_MODEL.value, "jump_model_prior").astype(object)
        fit_dates = np.full(m, np.datetime64("NaT"), dtype="datetime64[D]")
        new_hmm = None
    else:
        probs, source, fit_dates, new_hmm = _hmm_rows(state, start, config.hmm, hmm_carry, sc["probs"], prev_probs, previous_date)
    labels, new_label = hysteresis_labels(probs, config.hysteresis, label_carry)
    frame = RegimeFrame(
        dates=dates[start:],
        probs=probs,
        label=labels,
        score=sc["score"],
        contributions=sc["contributions"],
        contribution_names=tuple(t.feature for t in config.score.terms),
        thresholds=sc["thresholds"],
        source=source,
        fit_dates=fit_dates,
    )
    new_carry = {
        "version": CARRY_VERSION,
        "method": method.value,
        "first_date": first_date,
        "last_date": str(dates[-1]),
        "score": sc["carry"],
        "label": new_label,
        "probs": probs[-1].tolist(),
        "hmm": new_hmm,
    }
    return frame, new_carry


def regime_statistics(dates: np.ndarray, labels: np.ndarray) -> dict:
    """Time share per regime and transitions: ``{"days", "share", "transitions", "per_year", "matrix"}``.

    ``per_year`` counts label changes per 252 trading days; ``matrix[i][j]`` counts changes i -> j.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    days = {r.name: int((labels == r).sum()) for r in Regime}
    matrix = np.zeros((4, 4), dtype=np.int64)
    change = labels[1:] != labels[:-1]
    np.add.at(matrix, (labels[:-1][change], labels[1:][change]), 1)
    count = int(change.sum())
    return {
        "days": days,
        "share": {k: (v / n if n else 0.0) for k, v in days.items()},
        "transitions": count,
        "per_year": count / (n / 252.0) if n else 0.0,
        "matrix": matrix.tolist(),
    }
