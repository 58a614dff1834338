"""Strategy profiles: what to hold, how often to rebalance, within which limits (pure; no Dagster).

:class:`StrategyProfile` bundles a :class:`StrategyKind`, its estimation windows, the
:class:`RiskLimits` and the :class:`Transition` rules; :data:`PROFILES` are the named built-ins.
:class:`StrategyWeights` is what ``weights.weights_raw`` returns. The rules of the whole pipeline
(raw weights, limits, transitions) are written out in ``docs/notes/report.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from alloc_assets.core.market.calendar import RebalanceFrequency


SIGMOID_STEEPNESS = 5.0


class StrategyKind(str, Enum):
    """How raw target weights are formed."""

    EQUAL_WEIGHT = "equal_weight"
    INVERSE_VOL = "inverse_vol"
    RISK_PARITY = "risk_parity"
    MOMENTUM = "momentum"
    PERFORMANCE_WEIGHTED = "performance_weighted"
    HYBRID = "hybrid"
    VOL_TARGET = "vol_target"


class VolWeighting(str, Enum):
    """Cross-sectional weight function of the ``vol_target`` profile (vols annualised, window ``vol_window``).

    ``inverse_vol``: ``1 / s_i``; ``inverse_vol_squared``: ``1 / s_i**2``; ``linear_decay``: by vol
    rank, the calmest name ``N``, the next ``N - 1`` ... the most volatile ``1``; ``sigmoid``:
    ``1 / (1 + exp(5 (s_i / median(s) - 1)))``.
    """

    INVERSE_VOL = "inverse_vol"
    INVERSE_VOL_SQUARED = "inverse_vol_squared"
    LINEAR_DECAY = "linear_decay"
    SIGMOID = "sigmoid"


@dataclass(frozen=True)
class RiskLimits:
    """Portfolio limits (None switches one off).

    Attributes
    ----------
    max_weight : largest weight of one name.
    max_sector_weight : largest total weight of one sector (names without a sector are each their
        own sector).
    max_total_risk : largest ex-ante annualised volatility of the book (decimal). Off by default:
        the regime governor is the crisis de-risker under audit, and a volatility cap inside the
        baseline would do part of its job and blur the two-pass comparison (on the bundled data a
        0.35 cap binds at 4 % of month ends, in 2008-09 and 2020, and cuts the equal-weight book to 60 %).
    fit_to_universe : raise a cap tighter than twice the equal share of its universe
        (:func:`limits_for_universe`); False keeps the caps exactly as configured.
    """

    max_weight: float | None = 0.20
    max_sector_weight: float | None = 0.30
    max_total_risk: float | None = None
    fit_to_universe: bool = True


@dataclass(frozen=True)
class Transition:
    """Smooth-transition settings (exact rules in docs/notes/report.md, step 3).

    Attributes
    ----------
    max_change : largest change of one name's weight per rebalance, or None.
    spread_days : number of trading days a change is spread over (1: all at the rebalance close).
    min_change : relative weight change ``|new / drifted - 1|`` below which a held name does not
        trade and keeps its drifted weight (0 switches it off).
    """

    max_change: float | None = None
    spread_days: int = 1
    min_change: float = 0.05


@dataclass(frozen=True)
class StrategyProfile:
    """A strategy profile: what to hold, how often to rebalance, within which limits.

    Attributes
    ----------
    name : the profile's name (report key, directory name).
    kind : the raw weighting scheme.
    frequency : rebalance frequency (last trading day of each period).
    lookback : days of returns for covariances and vols (inverse_vol, risk_parity,
        performance_weighted, hybrid) and for the max-total-risk check.
    min_history : rows of returns needed before a kind leaves its equal-weight warm-up.
    momentum_lookback, momentum_skip : momentum score is the total return from the close
        ``momentum_lookback`` days before ``r`` to the close ``momentum_skip`` days before ``r``
        (252/21: the classic 12-1 month momentum).
    momentum_top_fraction : long-only, equal weight in the top ``ceil(fraction * N)`` names by score.
    hybrid_risk_parity_share : hybrid = share * risk_parity + (1 - share) * momentum.
    target_vol : vol_target's ex-ante annualised volatility target (exposure capped at 1).
    vol_weighting : vol_target's cross-sectional weight function.
    vol_window : days of returns for vol_target's vols and covariance.
    limits, transition : see :class:`RiskLimits`, :class:`Transition`.
    """

    name: str = "risk_parity"
    kind: StrategyKind = StrategyKind.RISK_PARITY
    frequency: RebalanceFrequency = RebalanceFrequency.MONTHLY
    lookback: int = 126
    min_history: int = 63
    momentum_lookback: int = 252
    momentum_skip: int = 21
    momentum_top_fraction: float = 0.5
    hybrid_risk_parity_share: float = 0.5
    target_vol: float = 0.15
    vol_weighting: VolWeighting = VolWeighting.INVERSE_VOL
    vol_window: int = 63
    limits: RiskLimits = field(default_factory=RiskLimits)
    transition: Transition = field(default_factory=Transition)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", StrategyKind(self.kind))
        object.__setattr__(self, "frequency", RebalanceFrequency(self.frequency))
        object.__setattr__(self, "vol_weighting", VolWeighting(self.vol_weighting))
        if self.lookback < 2 or self.vol_window < 2:
            raise ValueError(f"profile {self.name!r}: lookback and vol_window need at least 2 days")
        if not 0 < self.momentum_top_fraction <= 1:
            raise ValueError(f"profile {self.name!r}: momentum_top_fraction must be in (0, 1]")
        if not 0 <= self.hybrid_risk_parity_share <= 1:
            raise ValueError(f"profile {self.name!r}: hybrid_risk_parity_share must be in [0, 1]")
        if self.momentum_skip >= self.momentum_lookback:
            raise ValueError(f"profile {self.name!r}: momentum_skip must be below momentum_lookback")
        if self.transition.spread_days < 1:
            raise ValueError(f"profile {self.name!r}: spread_days must be >= 1")


DEFAULT_PROFILE = StrategyProfile()


PROFILES: dict[str, StrategyProfile] = {k.value: StrategyProfile(name=k.value, kind=k) for k in StrategyKind}


def get_profile(name: str) -> StrategyProfile:
    """The named built-in profile; the error lists the known names."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown strategy profile {name!r}; known: {', '.join(sorted(PROFILES))}") from None


@dataclass(frozen=True)
class StrategyWeights:
    """Output of :func:`weights_raw`.

    Attributes
    ----------
    rebalance_idx : (R,) row positions of the rebalance dates.
    target : (R, N) final targets at the rebalance dates (limits and transition applied; a name
        the ``min_change`` band holds has its drifted weight there).
    trade_idx : (M,) row positions of every trade date (== ``rebalance_idx`` unless spreading).
    trade_target : (M, N) targets on the trade dates (the daily path of a spread).
    trade_source : (M,) for each trade date, the row of ``rebalance_idx`` whose decision it carries out.
    """

    rebalance_idx: np.ndarray
    target: np.ndarray
    trade_idx: np.ndarray
    trade_target: np.ndarray
    trade_source: np.ndarray
    limits: RiskLimits | None = None
    limit_notes: tuple[str, ...] = ()

    def scalars_for_trades(self, scalars: np.ndarray) -> np.ndarray:
        """Per-rebalance scalars (R,) expanded to the trade dates (M,)."""
        s = np.asarray(scalars, dtype=np.float64)
        if s.shape != self.rebalance_idx.shape:
            raise ValueError(f"scalars shape {s.shape} != rebalance dates {self.rebalance_idx.shape}")
        return s[self.trade_source]


def limits_for_universe(limits: RiskLimits, n_names: int, n_sectors: int) -> tuple[RiskLimits, tuple[str, ...]]:
    """Caps that fit the universe: a cap tighter than twice the equal share of its universe is
    raised to ``min(1, 2 / K)`` (K names, or K sectors for the sector cap).

    With K names and a cap c, ``K c < 1`` leaves part of the book in cash whatever the signal, and
    ``K c = 1`` forces exactly equal weights (a small universe of 5 ETFs at a 20 % cap); at
    ``c = 2 / K`` the cap still bounds concentration at twice the equal share. The bundled 20 names
    (cap 20 % >= 10 %) in 7 sectors (cap 30 % >= 28.6 %) keep their configured caps.

    Returns
    -------
    (limits in force, one note per raised cap; empty when the caps fit as configured)
    """
    if not limits.fit_to_universe:
        return limits, ()
    notes = []
    mw, ms = limits.max_weight, limits.max_sector_weight
    if mw is not None and n_names > 0 and mw < min(1.0, 2.0 / n_names):
        new = min(1.0, 2.0 / n_names)
        notes.append(f"max single weight raised from {100 * mw:.0f} % to {100 * new:.0f} % (2 / {n_names} names): "
                     f"{n_names} x {100 * mw:.0f} % {'< 100 % would leave the book in cash' if n_names * mw < 1 - 1e-12 else 'would force equal weights'}")
        mw = new
    if ms is not None and n_sectors > 0 and ms < min(1.0, 2.0 / n_sectors):
        new = min(1.0, 2.0 / n_sectors)
        notes.append(f"max sector weight raised from {100 * ms:.0f} % to {100 * new:.0f} % (2 / {n_sectors} sectors): "
                     f"{n_sectors} x {100 * ms:.0f} % {'< 100 % would leave the book in cash' if n_sectors * ms < 1 - 1e-12 else 'would force equal sector weights'}")
        ms = new
    return replace(limits, max_weight=mw, max_sector_weight=ms), tuple(notes)


def sector_ids(symbols: Sequence[str], sectors: Mapping[str, str] | None) -> np.ndarray:
    """Integer sector code per symbol, (N,); a symbol without a sector is its own sector."""
    sectors = sectors or {}
    codes: dict[str, int] = {}
    out = np.empty(len(symbols), dtype=np.int64)
    for i, sym in enumerate(symbols):
        key = sectors.get(sym)
        key = f"__own__:{sym}" if key is None or str(key) == "" else str(key)
        out[i] = codes.setdefault(key, len(codes))
    return out
