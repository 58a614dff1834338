"""Settings and output of the regime layer: methods, calendar cadences, stress-score terms, HMM and
hysteresis settings, ``RegimeConfig`` and the ``RegimeFrame`` rows (pure; no Dagster import).

Refresh and refit dates are anchored to the calendar (``period_index``/``refresh_mask``: the first
trading day of each month, quarter, half-year or year), not to the start of the data. The default
score terms are set a priori (see ``DEFAULT_SCORE_TERMS``); the rules that use them are described
in ``core.allocator.stress_score`` and ``core.allocator.regimes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from alloc_assets.core.regime import PROBABILITY_COLUMNS, REGIMES, Regime

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

