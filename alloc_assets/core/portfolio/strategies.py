"""Target weights of the strategy profiles, with risk limits and smooth transitions (pure; no Dagster).

Pipeline at each rebalance date ``r`` (all estimates use returns of rows ``<= r`` only: causal):

1. **raw weights** of the profile's :class:`StrategyKind`, long-only, summing to 1 (``vol_target``
   may sum to less: the rest is cash). Estimates use the last ``lookback`` (vol_target:
   ``vol_window``) daily returns up to and including ``r``: **covariance matrices** (risk parity and
   hybrid's ERC, the ex-ante book volatility of ``vol_target`` and of ``max_total_risk``) are
   **Ledoit-Wolf** shrunk (scikit-learn's ``LedoitWolf`` with its defaults: centred, maximum
   likelihood empirical covariance, shrunk towards ``mu I``; see :func:`trailing_covariances`),
   which is positive definite also with more names than days; **single-name volatilities**
   (inverse_vol, vol_target's cross-sectional weights, performance_weighted's Sharpe ratios) are the
   sample ones (``ddof=1``): shrinkage pulls each variance towards the cross-sectional average,
   which would change what those kinds mean. Before a kind has the history it needs (``min_history``
   rows, or ``momentum_lookback`` rows for momentum) its target is **equal weight**. A name whose
   return is the same every day of the window (zero variance: a stale price series) gets no weight
   from the covariance-based kinds on that date; it is left out of the covariance estimate and of
   the ERC solve (weight 0).
2. **risk limits** (:class:`RiskLimits`): names above ``max_weight`` are cut to it and sectors above
   ``max_sector_weight`` are scaled down to it; the weight cut is redistributed to the names that
   are neither capped nor in a capped sector, pro rata to their weight, iterating until no limit is
   breached. Names with zero weight receive nothing. What cannot be placed (too few eligible names)
   goes to cash. Then, if the ex-ante annualised volatility ``sqrt(252 w' S w)`` exceeds
   ``max_total_risk``, the whole book is scaled down to it (the rest to cash).
3. **smooth transition** (:class:`Transition`) from the previous rebalance's final target
   ``prev`` (cash before the first) and the **drifted book** ``d``: the weights last traded, drifted
   with the returns since, exactly as :mod:`alloc_assets.core.portfolio.backtest` drifts them
   (``w_i <- w_i G_i / (sum_j w_j G_j + cash G_cash)``, :func:`drift_weights`); cash earns the
   ``cash_rate_annual`` of :func:`weights_raw`, 0 by default (the strategy layer has no rate of its
   own; pass the backtest's for an exact match).

   * ``max_change``: the target moves from ``prev`` towards the new target by the largest fraction
     ``a`` in [0, 1] for which no name moves by more than ``max_change`` (``prev + a (new - prev)``).
     A convex combination of two portfolios within the limits is within the limits. (It bounds the
     change of targets; the trade from the drifted book may differ from it by the drift.)
   * ``min_change``: a no-trade band on the drifted book. A name held in both ``d`` and the new
     target whose weight would change by less than ``min_change`` **of its drifted weight**
     (``|new - d| < min_change * d``; relative, default 0.05, i.e. 5 %) keeps its drifted weight: it
     does not trade (turnover exactly 0 on the engine for the unscaled book). Entries and exits
     always trade. The other names take the new target; held names are each within 5 % of their new
     target, so the invested total stays within 5 % of the target's: a shortfall stays in cash, an
     excess over ``max(sum(new), 1)`` (full investment) is taken from the names that trade, pro rata.
     (An absolute 0.05 was tried and rejected: with 20 names at about 0.05 each it froze the book,
     and after a cut it left up to 40 % in cash for years. A band on the previous *targets* was
     replaced: between rebalances the weights drift, so the book traded names it claimed to hold,
     12.7 % of the default profile's turnover on the bundled data.)
   * limits are re-checked after the band and any excess is cut **to cash** (limits win over the
     band: a held name that drifted above ``max_weight`` is cut to it).
   * ``spread_days = n > 1``: the move to the new target is spread over ``n`` trading days starting
     at the rebalance date itself: day ``r + j`` (``j = 0..n-1``) targets
     ``start + (j + 1) / n (target - start)``, ``start`` being where the path stands (its last target
     point, not its drifted value). A rebalance that arrives before a spread has finished starts its
     own spread from there (the unfinished part is abandoned). The band is decided once, at ``r``,
     from the drifted book there; on every day of the spread the names it holds keep their drifted
     weight of that day, with the same residual and limit rules. ``max_change`` compares *final*
     targets of consecutive rebalances, not path points. The result then has more trade dates than
     rebalance dates (:class:`StrategyWeights`); the risk scalar of a rebalance applies to all days
     of its spread (``StrategyWeights.scalars_for_trades``).

   The scaled pass trades ``scalar * target``; its drifted weights are not the unscaled ones, so a
   held name trades there by the change of scalar (and the drift of a different cash share).

Equal risk contribution is solved exactly with a damped Newton method on Spinu's convex formulation
``min 0.5 x' S x - sum b_i log x_i`` (``w = x / sum x``), batched over a leading axis so that one
call solves every rebalance date, or 10,000 strategy sleeves, at once. It needs ``S`` positive
definite on the names with variance; the Ledoit-Wolf estimate is, whenever its intensity is
positive. Where the intensity is 0 (below 1e-10: a degenerate window, e.g. every name's centred
return has the same size every day) the covariance is the sample one, and if that is singular
(smallest eigenvalue of the correlation matrix below 1e-10) no ERC may exist: that date takes the
ERC of the diagonal, i.e. inverse volatility.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import dataclasses
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from alloc_assets.core.market.calendar import RebalanceFrequency, rebalance_indices
from alloc_assets.core.report.metrics import PERIODS_PER_YEAR, daily_rate

_EPS = 1e-12
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
    """Smooth-transition settings (see the module docstring for the exact rules).

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


# --------------------------------------------------------------------------------------------
# estimation


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


def _first_valid_row(returns: np.ndarray) -> int:
    finite = np.all(np.isfinite(returns), axis=1)
    if not finite.any():
        raise ValueError("returns have no finite row")
    first = int(np.argmax(finite))
    if not finite[first:].all():
        bad = first + int(np.argmin(finite[first:]))
        raise ValueError(f"returns must be finite after row {first}; row {bad} has NaN/inf")
    return first


# values per chunk of the batched covariance estimate: the (B, window, N) working copies stay
# small enough to be reused from cache (2M values per chunk was 1.8x slower on the bundled data)
_COV_CHUNK_VALUES = 150_000


def _trailing_moments(
    returns: np.ndarray, end_idx: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Ledoit-Wolf covariances, sample variances, rows used and shrinkage intensities of the trailing
    windows (rules in :func:`trailing_covariances`).

    Returns
    -------
    cov : (R, N, N) Ledoit-Wolf covariances (NaN where fewer than 2 rows).
    var : (R, N) sample variances (``ddof=1``), exactly 0 for a name whose return is constant over
        the window (NaN where fewer than 2 rows).
    n_obs : (R,) rows used.
    shrinkage : (R,) Ledoit-Wolf intensity in [0, 1] (NaN where fewer than 2 rows).
    """
    r = np.asarray(returns, dtype=np.float64)
    first = _first_valid_row(r)
    end_idx = np.asarray(end_idx, dtype=np.int64)
    n_win, n = end_idx.size, r.shape[1]
    cov = np.full((n_win, n, n), np.nan)
    var = np.full((n_win, n), np.nan)
    shrink = np.full(n_win, np.nan)
    lo = np.maximum(first, end_idx - window + 1)
    n_obs = np.maximum(end_idx - lo + 1, 0)
    diag = np.arange(n)
    # a name is constant over rows lo..e when its return never changes from one row to the next:
    # count the changes once (prefix sums) instead of comparing every window's rows
    changes = np.zeros((r.shape[0], n), dtype=np.int32)
    changes[first + 1 :] = np.cumsum(r[first + 1 :] != r[first:-1], axis=0, dtype=np.int32)
    # windows of equal length are estimated together (all but the first few have the full length)
    for length in np.unique(n_obs[n_obs >= 2]):
        rows = np.flatnonzero(n_obs == length)
        step = max(1, _COV_CHUNK_VALUES // (int(length) * max(n, 1)))
        for c0 in range(0, rows.size, step):
            k = rows[c0 : c0 + step]
            x = r[lo[k, None] + np.arange(length)]  # (B, L, N), each window's rows in time order
            const = changes[end_idx[k]] == changes[lo[k]]  # (B, N) the same return every day: zero variance
            xc = x - x.mean(axis=1, keepdims=True)
            if const.any():
                xc *= ~const[:, None, :]
            gram = np.matmul(xc.transpose(0, 2, 1), xc)  # (B, N, N)
            # contiguous (B, N) so that the reductions below add in the same order whatever B is:
            # a window's estimate does not depend on the other windows of its batch, to the last bit
            gdiag = np.ascontiguousarray(np.einsum("bii->bi", gram))
            var[k] = gdiag / (length - 1)
            emp = gram / length  # centred maximum-likelihood covariance (scikit-learn's empirical_covariance)
            p = np.sum(~const, axis=1)  # names with variance: the estimate is theirs alone
            trace = gdiag.sum(axis=1) / length
            with np.errstate(divide="ignore", invalid="ignore"):
                mu = np.where(p > 0, trace / p, 0.0)
                # Ledoit and Wolf (2004), as in sklearn.covariance.ledoit_wolf_shrinkage:
                # beta_ = sum_ij <x_i^2, x_j^2> = sum_t (sum_i x_ti^2)^2, delta_ = ||emp||_F^2
                beta_ = np.sum(np.einsum("bti,bti->bt", xc, xc) ** 2, axis=1)
                delta_ = np.sum(emp * emp, axis=(1, 2))
                beta = (beta_ / length - delta_) / (p * length)
                delta = (delta_ - 2.0 * mu * trace + p * mu**2) / p
                s = np.where((p > 1) & (delta > 0), np.minimum(beta, delta) / delta, 0.0)
            s = np.clip(s, 0.0, 1.0)
            out = emp * (1.0 - s)[:, None, None]
            out[:, diag, diag] += (s * mu)[:, None] * ~const
            cov[k] = out
            shrink[k] = s
    return cov, var, n_obs, shrink


def trailing_covariances(returns: np.ndarray, end_idx: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Ledoit-Wolf shrunk covariances of the ``window`` returns up to and including each end row.

    The estimator is scikit-learn's ``sklearn.covariance.LedoitWolf()`` (defaults) fitted on the
    window's rows, computed here in batched numpy (the tests compare it with scikit-learn to 1e-12):
    returns are **centred** on the window mean (``assume_centered=False``), the empirical covariance
    ``S`` divides by the number of rows (maximum likelihood, not ``ddof=1``), and the estimate is
    ``(1 - d) S + d mu I`` with ``mu = trace(S) / p`` and Ledoit and Wolf's (2004) intensity ``d``
    in [0, 1]. It is positive definite whenever ``d > 0``, also with more names than rows.

    A name whose return is the same on every row of the window (zero variance, e.g. a stale price)
    is left out of the estimate: its row and column are exactly 0 and ``p``, ``mu``, ``d`` are those
    of the other names (their block equals ``LedoitWolf`` fitted on their columns alone).

    Parameters
    ----------
    returns : (T, N) daily returns; leading non-finite rows (row 0 of ``PricePanel.returns()``)
        are skipped, later ones are an error.
    end_idx : (R,) end rows (rebalance dates).
    window : number of rows in a full window; early windows are shorter.

    Returns
    -------
    cov : (R, N, N) daily covariances (NaN where fewer than 2 rows).
    n_obs : (R,) rows used.
    """
    cov, _, n_obs, _ = _trailing_moments(returns, end_idx, window)
    return cov, n_obs


def risk_contributions(weights: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Fraction of portfolio variance from each name: ``w_i (S w)_i / (w' S w)``, shape of ``weights``."""
    w = np.asarray(weights, dtype=np.float64)
    sw = np.einsum("...ij,...j->...i", cov, w)
    return w * sw / np.sum(w * sw, axis=-1, keepdims=True)


def _spinu_objective(cov: np.ndarray, budgets: np.ndarray, x: np.ndarray) -> np.ndarray:
    cx = (cov @ x[..., None])[..., 0]
    return 0.5 * np.sum(x * cx, axis=1) - np.sum(budgets * np.log(x), axis=1)


def risk_parity_weights(
    cov: np.ndarray,
    mask: np.ndarray | None = None,
    budgets: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 60,
) -> np.ndarray:
    """Equal (or budgeted) risk contribution weights, batched over leading axes.

    Solves Spinu's convex problem ``min_x 0.5 x' S x - sum_i b_i log x_i`` (self-concordant) by
    Newton's method: while the Newton decrement ``lambda`` exceeds 0.5, the full step is taken if it
    stays positive and decreases the objective by ``lambda**2 / 4``, else the damped step
    ``1 / (1 + lambda)`` (always feasible and decreasing); full steps after. It stops per problem once ``max_i |x_i (S x)_i - b_i| / b_i < tol``, which
    is the relative error of the risk contributions. ``w = x / sum x``.

    Parameters
    ----------
    cov : (..., N, N) covariance matrices, positive definite on the masked names with a positive
        variance (the Ledoit-Wolf estimate of :func:`trailing_covariances` is, whenever its
        intensity is positive; a singular sample covariance may have no solution).
    mask : (..., N) bool, names in each universe (default all); others get weight 0 and the
        solution on the rest is exactly the risk parity of the sub-universe.
        A name of the universe with **zero variance** (a stale price) has no risk to equalise: it
        leaves the universe with weight 0 (its covariances must then be 0 too, as in any covariance
        matrix). A universe whose names all have zero variance gets equal weights: every risk
        contribution is 0 whatever the weights, so they are all equal.
    budgets : (..., N) positive risk budgets (default equal).
    tol, max_iter : convergence tolerance and iteration cap (a RuntimeError when not converged;
        a non-finite residual counts as not converged).

    Returns
    -------
    (..., N) weights summing to 1.
    """
    c = np.asarray(cov, dtype=np.float64)
    n = c.shape[-1]
    batch = c.shape[:-2]
    c = c.reshape(-1, n, n)
    nb = c.shape[0]
    m = np.ones((nb, n), dtype=bool) if mask is None else np.broadcast_to(np.asarray(mask, dtype=bool), (*batch, n)).reshape(nb, n)
    if not m.any(axis=1).all():
        raise ValueError("risk parity: every universe needs at least one name")
    b = np.ones((nb, n)) if budgets is None else np.broadcast_to(np.asarray(budgets, dtype=np.float64), (*batch, n)).reshape(nb, n).copy()
    b = np.where(m, b, 1.0)
    if np.any(b <= 0):
        raise ValueError("risk budgets must be positive")
    zero_var = m & (np.einsum("bii->bi", c) == 0)
    if zero_var.any():  # zero-variance names leave the universe (weight 0); see ``mask`` above
        live = m & ~zero_var
        none_live = ~live.any(axis=1)
        if none_live.any():  # only zero-variance names: equal weight (ERC of the identity, equal budgets)
            c = c.copy()
            c[none_live] = np.eye(n)
            b[none_live] = 1.0
        m = np.where(none_live[:, None], m, live)
    if m.all():
        cm = c
    else:  # decouple names outside the universe: unit variance, no covariance
        cm = np.where(m[:, :, None] & m[:, None, :], c, 0.0)
        out = ~m
        cm[:, np.arange(n), np.arange(n)] += out
    diag = np.einsum("bii->bi", cm)
    if not np.all(np.isfinite(cm)) or np.any(diag <= 0):
        raise ValueError("risk parity needs finite covariances with positive variances on every name in the universe")

    v = 1.0 / np.sqrt(diag)
    # start from inverse volatility scaled onto the optimum's scale (x' S x = sum b); a warm start
    # from the previous targets was tried and is slower: limits and a new covariance put it farther
    # from the solution than this start is
    quad = np.einsum("bi,bij,bj->b", v, cm, v)
    x = v * np.sqrt(b.sum(axis=1) / quad)[:, None]
    # work on compact copies of the unconverged problems; re-gather only when some converge
    active = np.arange(nb)
    xa, ca, ba = x, cm, b
    diag_idx = np.arange(n)
    for _ in range(max_iter):
        cx = (ca @ xa[..., None])[..., 0]
        resid = np.max(np.abs(xa * cx - ba) / ba, axis=1)
        keep = ~(resid < tol)  # NaN is not converged
        if not keep.all():
            x[active] = xa
            if not keep.any():
                active = active[:0]
                break
            active, xa, ca, ba, cx = active[keep], xa[keep], ca[keep], ba[keep], cx[keep]
        grad = cx - ba / xa
        hess = ca.copy()
        hess[:, diag_idx, diag_idx] += ba / xa**2
        dx = -np.linalg.solve(hess, grad[..., None])[..., 0]
        lam2 = np.maximum(-np.sum(grad * dx, axis=1), 0.0)
        lam = np.sqrt(lam2)
        full = xa + dx
        far = lam > 0.5
        if far.any():
            # far from the optimum take the full step only if it stays positive and decreases the
            # objective by a quarter of the decrement; otherwise the guaranteed damped step
            positive = np.all(full > 0, axis=1)
            f_full = _spinu_objective(ca, ba, np.where(positive[:, None], full, xa))
            ok = far & positive & (f_full <= _spinu_objective(ca, ba, xa) - 0.25 * lam2)
            step = np.where(far & ~ok, 1.0 / (1.0 + lam), 1.0)
            xa = xa + step[:, None] * dx
        else:
            xa = full
    if active.size:
        raise RuntimeError(f"risk parity did not converge for {active.size} problem(s) in {max_iter} iterations")
    w = np.where(m, x, 0.0)
    w /= w.sum(axis=1, keepdims=True)
    return w.reshape(*batch, n)


# --------------------------------------------------------------------------------------------
# risk limits


def _sector_onehot(sector_id: np.ndarray) -> np.ndarray:
    sid = np.asarray(sector_id, dtype=np.int64)
    onehot = np.zeros((sid.size, int(sid.max()) + 1 if sid.size else 0))
    onehot[np.arange(sid.size), sid] = 1.0
    return onehot


def ex_ante_volatility(weights: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Annualised ex-ante volatility ``sqrt(252 w' S w)`` of each book, shape ``weights.shape[:-1]``."""
    var = np.einsum("...i,...ij,...j->...", weights, cov, weights)
    return np.sqrt(np.maximum(var, 0.0) * PERIODS_PER_YEAR)


def _cap_total_risk(w: np.ndarray, cov: np.ndarray | None, max_total_risk: float | None) -> np.ndarray:
    if max_total_risk is None or cov is None:
        return w
    vol = ex_ante_volatility(w, cov)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(vol > max_total_risk, max_total_risk / vol, 1.0)
    return w * factor[..., None]


def clip_to_limits(weights: np.ndarray, sector_id: np.ndarray, limits: RiskLimits, cov: np.ndarray | None = None) -> np.ndarray:
    """Cut every breach **to cash** (no redistribution): names to ``max_weight``, sectors scaled to
    ``max_sector_weight``, then the whole book to ``max_total_risk``. Batched over leading axes."""
    onehot = None if limits.max_sector_weight is None else _sector_onehot(sector_id)
    return _clip(np.array(weights, dtype=np.float64), onehot, limits, cov)


def _clip(w: np.ndarray, onehot: np.ndarray | None, limits: RiskLimits, cov: np.ndarray | None) -> np.ndarray:
    """:func:`clip_to_limits` with the sector one-hot matrix given (None when there is no sector cap)."""
    if limits.max_weight is not None:
        w = np.minimum(w, limits.max_weight)
    if limits.max_sector_weight is not None:
        tot = w @ onehot
        over = tot > limits.max_sector_weight
        if over.any():
            factor = np.ones_like(tot)
            np.divide(limits.max_sector_weight, tot, out=factor, where=over)
            w = w * (factor @ onehot.T)
    return _cap_total_risk(w, cov, limits.max_total_risk)


def apply_risk_limits(weights: np.ndarray, sector_id: np.ndarray, limits: RiskLimits, cov: np.ndarray | None = None) -> np.ndarray:
    """Enforce :class:`RiskLimits`, redistributing capped weight pro rata to the uncapped names.

    Batched: ``weights`` (..., N), ``cov`` (..., N, N) or None (then ``max_total_risk`` is not
    checked). Each round cuts names above ``max_weight`` and scales sectors above
    ``max_sector_weight``, freezes them (and every name of a capped sector), and hands the cut to the
    other names holding weight, pro rata; at most N + sectors rounds. What no eligible name can take
    stays in cash. Finally the book is scaled down to ``max_total_risk`` (to cash).

    Returns
    -------
    (..., N) weights within the limits, summing to at most the input's sum.
    """
    w0 = np.asarray(weights, dtype=np.float64)
    shape = w0.shape
    n = shape[-1]
    w = w0.reshape(-1, n).copy()
    onehot = _sector_onehot(sector_id)
    sid = np.asarray(sector_id, dtype=np.int64)
    budget = w.sum(axis=1)
    frozen = np.zeros_like(w, dtype=bool)
    max_w = np.inf if limits.max_weight is None else limits.max_weight
    max_s = np.inf if limits.max_sector_weight is None else limits.max_sector_weight
    for _ in range(n + onehot.shape[1] + 2):
        over_name = w > max_w + _EPS
        sec_tot = w @ onehot
        over_sec = sec_tot > max_s + _EPS
        if not (over_name.any() or over_sec.any()):
            break
        w = np.where(over_name, max_w, w)
        sec_tot = w @ onehot
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(sec_tot > max_s, max_s / sec_tot, 1.0)
        w = w * factor[:, sid]
        sec_tot = w @ onehot
        frozen |= (w >= max_w - _EPS) | (sec_tot >= max_s - _EPS)[:, sid]
        excess = budget - w.sum(axis=1)
        free = ~frozen & (w > 0)
        free_tot = np.sum(np.where(free, w, 0.0), axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            grow = np.where(free_tot > 0, excess / free_tot, 0.0)
        w = np.where(free, w * (1.0 + grow[:, None]), w)
    # remove residual breaches of order _EPS exactly (to cash)
    w = clip_to_limits(w, sid, replace(limits, max_total_risk=None))
    w = w.reshape(shape)
    return _cap_total_risk(w, cov, limits.max_total_risk)


# --------------------------------------------------------------------------------------------
# smooth transitions


def smooth_transition(
    prev: np.ndarray,
    new: np.ndarray,
    transition: Transition,
    sector_id: np.ndarray,
    limits: RiskLimits,
    cov: np.ndarray | None = None,
    drifted: np.ndarray | None = None,
) -> np.ndarray:
    """One rebalance of the transition rules (module docstring, step 3; no spreading), batched.

    Parameters
    ----------
    prev : (..., N) previous final targets (zeros for a book in cash); ``max_change`` is measured
        from them.
    new : (..., N) new targets within the limits.
    transition, sector_id, limits, cov : settings, (N,) sector codes, (..., N, N) covariances or None.
    drifted : (..., N) the book's weights just before this trade: ``prev`` as traded, drifted with
        the returns since (:func:`drift_weights`). The ``min_change`` band is measured from them and
        a held name keeps them. None: the book is ``prev`` itself (a single step with no time
        between the trades, as in :func:`reallocate_sleeves`).

    Returns
    -------
    (..., N) the targets actually set.
    """
    onehot = None if limits.max_sector_weight is None else _sector_onehot(sector_id)
    out, _ = _transition_step(prev, new, transition, onehot, limits, cov, drifted)
    return out


def _transition_step(
    prev: np.ndarray,
    new: np.ndarray,
    transition: Transition,
    onehot: np.ndarray | None,
    limits: RiskLimits,
    cov: np.ndarray | None,
    drifted: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`smooth_transition` (``onehot``: sector one-hot, None without a sector cap) and the
    (..., N) bool mask of the names the band holds."""
    prev = np.asarray(prev, dtype=np.float64)
    new = np.asarray(new, dtype=np.float64)
    book = prev if drifted is None else np.asarray(drifted, dtype=np.float64)
    delta = new - prev
    if transition.max_change is not None:
        biggest = np.max(np.abs(delta), axis=-1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where(biggest > transition.max_change, transition.max_change / biggest, 1.0)
        new = prev + frac * delta
    if transition.min_change <= 0:
        return new, np.zeros(new.shape, dtype=bool)
    hold = (book > 0) & (new > 0) & (np.abs(new - book) < transition.min_change * book)
    return _hold(new, book, hold, onehot, limits, cov), hold


def _hold(target: np.ndarray, book: np.ndarray, hold: np.ndarray, onehot: np.ndarray | None,
          limits: RiskLimits, cov: np.ndarray | None) -> np.ndarray:
    """Held names keep their weight in ``book``, the others take ``target``; an excess over
    ``max(sum(target), 1)`` is taken from the names that trade, pro rata (a shortfall stays in cash);
    then limits are re-checked, cutting to cash (``onehot``: sector one-hot, None without a sector cap)."""
    out = np.where(hold, book, target)
    # held names may add up to more than a fully invested book: take the excess from the traders
    excess = np.maximum(out.sum(axis=-1, keepdims=True) - np.maximum(target.sum(axis=-1, keepdims=True), 1.0), 0.0)
    if np.any(excess > 0):
        trades = ~hold & (out > 0)
        traded_total = np.sum(np.where(trades, out, 0.0), axis=-1, keepdims=True)
        ratio = np.zeros_like(traded_total)
        np.divide(excess, traded_total, out=ratio, where=traded_total > 0)
        out = np.where(trades, out * np.maximum(1.0 - ratio, 0.0), out)
    return _clip(out, onehot, limits, cov)


def drift_weights(
    weights: np.ndarray, returns: np.ndarray, start: int, end: int, cash_rate_daily: float = 0.0
) -> np.ndarray:
    """Weights traded at the close of row ``start``, drifted to the close of row ``end`` (before any
    trade there), exactly as :func:`alloc_assets.core.portfolio.backtest.run_backtest` drifts them.

    ``w_i <- w_i G_i / (sum_j w_j G_j + cash G_cash)`` with ``G_i`` the growth of name ``i`` over
    rows ``start + 1 .. end``, ``cash = 1 - sum(w)`` and ``G_cash = (1 + cash_rate_daily) ** (end -
    start)``; the arithmetic is the engine's, operation for operation, so a name whose target is set
    to its drifted weight has a turnover of exactly 0 there.
    """
    w = np.asarray(weights, dtype=np.float64)
    length = end - start
    if length <= 0:
        return w.copy()
    growth_m1 = np.cumprod(1.0 + returns[start + 1 : end + 1], axis=0)  # (L, N)
    growth_m1 -= 1.0
    value_m1 = growth_m1 @ w  # (L,)
    if cash_rate_daily != 0.0:  # at 0 the engine adds exact zeros
        value_m1 += (1.0 - w.sum()) * ((1.0 + cash_rate_daily) ** np.arange(1, length + 1) - 1.0)
    return (1.0 + growth_m1[-1]) * w / (1.0 + value_m1[-1])


def spread_path(
    rebalance_idx: np.ndarray, targets: np.ndarray, spread_days: int, n_days: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Daily target path of changes spread over ``spread_days`` trading days (module docstring).

    Returns
    -------
    trade_idx (M,), trade_target (M, N), trade_source (M,) (row of ``rebalance_idx`` per trade).
    """
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    tgt = np.asarray(targets, dtype=np.float64)
    if spread_days <= 1:
        return idx.copy(), tgt.copy(), np.arange(idx.size)
    nxt = np.append(idx[1:], n_days)
    days, rows, src = [], [], []
    position = np.zeros(tgt.shape[1])
    for k, r in enumerate(idx):
        steps = int(min(spread_days, nxt[k] - r))
        frac = np.arange(1, steps + 1)[:, None] / spread_days
        path = position + frac * (tgt[k] - position)
        days.append(r + np.arange(steps))
        rows.append(path)
        src.append(np.full(steps, k))
        position = path[-1]
    return np.concatenate(days), np.concatenate(rows), np.concatenate(src)


# --------------------------------------------------------------------------------------------
# raw weights per kind


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / x.sum(axis=-1, keepdims=True)


def _momentum_weights(returns: np.ndarray, rebalance_idx: np.ndarray, first: int, profile: StrategyProfile) -> tuple[np.ndarray, np.ndarray]:
    """(R, N) momentum weights and (R,) bool "has enough history"."""
    r = np.where(np.isfinite(returns), returns, 0.0)
    r[:first] = 0.0
    log_wealth = np.cumsum(np.log1p(r), axis=0)  # log wealth at each close, relative to the start
    n = returns.shape[1]
    start = rebalance_idx - profile.momentum_lookback
    ready = start >= first - 1
    start_c = np.clip(start, 0, None)
    score = log_wealth[np.clip(rebalance_idx - profile.momentum_skip, 0, None)] - log_wealth[start_c]
    top = max(1, int(np.ceil(profile.momentum_top_fraction * n)))
    order = np.argsort(-score, axis=1, kind="stable")[:, :top]
    w = np.zeros((rebalance_idx.size, n))
    np.put_along_axis(w, order, 1.0 / top, axis=1)
    return w, ready


def _vol_target_weights(cov: np.ndarray, var: np.ndarray, valid: np.ndarray, profile: StrategyProfile) -> np.ndarray:
    vol = np.where(valid, np.sqrt(var * PERIODS_PER_YEAR), np.inf)
    kind = profile.vol_weighting
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if kind is VolWeighting.INVERSE_VOL:
            base = 1.0 / vol
        elif kind is VolWeighting.INVERSE_VOL_SQUARED:
            base = 1.0 / vol**2
        elif kind is VolWeighting.LINEAR_DECAY:
            rank = np.argsort(np.argsort(vol, axis=1, kind="stable"), axis=1, kind="stable")
            base = np.where(valid, vol.shape[1] - rank, 0).astype(np.float64)
        else:
            median = np.nanmedian(np.where(valid, vol, np.nan), axis=1, keepdims=True)
            base = np.where(valid, 1.0 / (1.0 + np.exp(SIGMOID_STEEPNESS * (vol / median - 1.0))), 0.0)
    base = _normalise(base)
    book_vol = ex_ante_volatility(base, cov)
    with np.errstate(divide="ignore"):
        exposure = np.minimum(1.0, profile.target_vol / book_vol)
    return base * exposure[:, None]


# below this Ledoit-Wolf intensity a covariance is checked for singularity before the ERC solve
_SHRINK_CHECK = 1e-10
# smallest eigenvalue of the correlation matrix (names with variance) below which it is singular
_SINGULAR_EIG = 1e-10


def _erc_weights(cov: np.ndarray, valid: np.ndarray, shrink: np.ndarray) -> np.ndarray:
    """ERC of the names with variance, (R, N). With a positive Ledoit-Wolf intensity the covariance
    is positive definite. Where the intensity is (about) 0 (degenerate windows only: every name's
    centred return has the same size every day) it is the sample covariance, which may be singular
    along a long-only portfolio, and then no ERC exists: such a date takes the ERC of the diagonal,
    i.e. inverse volatility."""
    check = np.flatnonzero(shrink < _SHRINK_CHECK)
    if check.size:
        c = cov[check]
        v = valid[check]
        sd = np.sqrt(np.where(v, np.einsum("rii->ri", c), 1.0))
        corr = np.where(v[:, :, None] & v[:, None, :], c / sd[:, :, None] / sd[:, None, :], 0.0)
        corr[:, np.arange(c.shape[1]), np.arange(c.shape[1])] = 1.0
        singular = check[np.linalg.eigvalsh(corr)[:, 0] < _SINGULAR_EIG]
        if singular.size:
            cov = cov.copy()
            cov[singular] = np.einsum("rii,ij->rij", cov[singular], np.eye(cov.shape[1]))
    return risk_parity_weights(cov, mask=valid)


def raw_weights(returns: np.ndarray, rebalance_idx: np.ndarray, profile: StrategyProfile) -> np.ndarray:
    """Step 1 only: the profile's raw weights (R, N) at the rebalance rows, before limits.

    Parameters
    ----------
    returns : (T, N) simple daily returns (leading NaN row allowed).
    rebalance_idx : (R,) rebalance rows.
    profile : the strategy profile.
    """
    r = np.asarray(returns, dtype=np.float64)
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    first = _first_valid_row(r)
    n = r.shape[1]
    equal = np.full((idx.size, n), 1.0 / n)
    kind = profile.kind
    if kind is StrategyKind.EQUAL_WEIGHT:
        return equal

    def cov_based(window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Ledoit-Wolf covariances, sample variances, shrinkage intensities, rows ready, and names
        with a positive variance (a stale price series has none; such a name gets no weight from
        the covariance-based kinds on that date)."""
        cov, var, n_obs, shrink = _trailing_moments(r, idx, window)
        ready = n_obs >= max(profile.min_history, 2)
        cov = np.where(ready[:, None, None], cov, np.eye(n))
        var = np.where(ready[:, None], var, 1.0)
        valid = var > 0
        ready &= valid.any(axis=1)
        valid |= ~ready[:, None]
        shrink = np.where(ready, shrink, 1.0)
        return cov, var, shrink, ready, valid

    if kind is StrategyKind.VOL_TARGET:
        cov, var, _, ready, valid = cov_based(profile.vol_window)
        return np.where(ready[:, None], _vol_target_weights(cov, var, valid, profile), equal)
    if kind is StrategyKind.MOMENTUM:
        w, ready = _momentum_weights(r, idx, first, profile)
        return np.where(ready[:, None], w, equal)
    cov, var, shrink, ready, valid = cov_based(profile.lookback)
    sd = np.sqrt(var)
    if kind is StrategyKind.INVERSE_VOL:
        with np.errstate(divide="ignore"):
            w = _normalise(np.where(valid, 1.0 / sd, 0.0))
    elif kind is StrategyKind.RISK_PARITY:
        w = _erc_weights(cov, valid, shrink)
    elif kind is StrategyKind.PERFORMANCE_WEIGHTED:
        means = np.zeros((idx.size, n))
        for k, e in enumerate(idx):
            lo = max(first, e - profile.lookback + 1)
            if e >= lo:
                means[k] = r[lo : e + 1].mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpe = np.where(valid, np.maximum(means / sd * np.sqrt(PERIODS_PER_YEAR), 0.0), 0.0)
        total = sharpe.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            w = np.where(total > 0, sharpe / total, 1.0 / n)
    elif kind is StrategyKind.HYBRID:
        rp = _erc_weights(cov, valid, shrink)
        mom, mom_ready = _momentum_weights(r, idx, first, profile)
        mom = np.where(mom_ready[:, None], mom, equal)
        a = profile.hybrid_risk_parity_share
        w = a * rp + (1.0 - a) * mom
    else:  # pragma: no cover - every kind is handled above
        raise ValueError(f"unhandled strategy kind {kind}")
    return np.where(ready[:, None], w, equal)


def weights_raw(
    returns: np.ndarray,
    rebalance_idx: np.ndarray,
    profile: StrategyProfile = DEFAULT_PROFILE,
    sector_id: np.ndarray | None = None,
    cash_rate_annual: float = 0.0,
) -> StrategyWeights:
    """Final (unscaled) targets of a profile: raw weights, risk limits, smooth transition.

    Parameters
    ----------
    returns : (T, N) simple daily returns (``PricePanel.returns()``; a leading NaN row is fine).
    rebalance_idx : (R,) rebalance rows (``rebalance_indices(dates, profile.frequency)``).
    profile : the strategy profile.
    sector_id : (N,) sector codes (:func:`sector_ids`), or None (each name its own sector).
    cash_rate_annual : annual rate of the cash remainder, used only to drift the book between trade
        dates for the ``min_change`` band; pass the backtest's own rate (default 0, the backtest
        settings' default) for the held names to have exactly zero turnover there.

    Returns
    -------
    StrategyWeights (targets at rebalance dates and, when spreading, the daily trade path).
    """
    r = np.asarray(returns, dtype=np.float64)
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    n = r.shape[1]
    sid = np.arange(n) if sector_id is None else np.asarray(sector_id, dtype=np.int64)
    if sid.shape != (n,):
        raise ValueError(f"sector_id shape {sid.shape} != ({n},)")
    fitted, notes = limits_for_universe(profile.limits, n, int(np.unique(sid).size))
    if notes:
        profile = dataclasses.replace(profile, limits=fitted)
    raw = raw_weights(r, idx, profile)
    risk_cov = None
    if profile.limits.max_total_risk is not None and idx.size:
        risk_cov, n_obs = trailing_covariances(r, idx, profile.lookback)
        # too little history to judge risk: no cap (zero covariance gives zero ex-ante vol)
        risk_cov = np.where((n_obs >= max(profile.min_history, 2))[:, None, None], risk_cov, 0.0)
    limited = apply_risk_limits(raw, sid, profile.limits, risk_cov)
    out = _transition_path(r, idx, limited, profile.transition, sid, profile.limits, risk_cov,
                           daily_rate(cash_rate_annual, PERIODS_PER_YEAR))
    return dataclasses.replace(out, limits=profile.limits, limit_notes=notes)


def _transition_path(
    r: np.ndarray,
    idx: np.ndarray,
    limited: np.ndarray,
    transition: Transition,
    sid: np.ndarray,
    limits: RiskLimits,
    risk_cov: np.ndarray | None,
    cash_rate_daily: float,
) -> StrategyWeights:
    """Step 3 over all rebalances, following the traded book through its drift (module docstring)."""
    n = r.shape[1]
    onehot = None if limits.max_sector_weight is None else _sector_onehot(sid)
    final = np.empty_like(limited)
    prev = np.zeros(n)  # previous final target: max_change is measured from it
    book = np.zeros(n)  # weights traded at the last trade date
    last = -1  # row of the last trade (-1: none yet, the book is cash)
    spread = transition.spread_days
    nxt = np.append(idx[1:], r.shape[0])
    position = np.zeros(n)  # where the spread path stands
    days: list[int] = []
    rows: list[np.ndarray] = []
    src: list[int] = []
    for k, day in enumerate(idx):
        cov_k = None if risk_cov is None else risk_cov[k]
        drifted = np.zeros(n) if last < 0 else drift_weights(book, r, last, int(day), cash_rate_daily)
        prev, hold = _transition_step(prev, limited[k], transition, onehot, limits, cov_k, drifted)
        final[k] = prev
        if spread <= 1:
            book, last = prev, int(day)
            continue
        # day j of the spread targets start + (j + 1) / n (target - start); held names keep their
        # drifted weight on every day of it
        for j in range(int(min(spread, nxt[k] - day))):
            d = int(day) + j
            point = position + (j + 1) / spread * (prev - position)
            if hold.any():
                here = drifted if j == 0 else drift_weights(book, r, last, d, cash_rate_daily)
                point = _hold(point, here, hold, onehot, limits, cov_k)
            days.append(d)
            rows.append(point)
            src.append(k)
            book, last = point, d
        position = book
    if spread <= 1 or not days:
        return StrategyWeights(idx, final, idx.copy(), final.copy(), np.arange(idx.size))
    trade_idx, trade_source = np.asarray(days, dtype=np.int64), np.asarray(src, dtype=np.int64)
    return StrategyWeights(idx, final, trade_idx, np.vstack(rows), trade_source)


def profile_weights(
    panel, profile: StrategyProfile = DEFAULT_PROFILE, cash_rate_annual: float = 0.0
) -> StrategyWeights:
    """:func:`weights_raw` on a :class:`~alloc_assets.core.market.panel.PricePanel` with its own calendar and
    sectors (``cash_rate_annual``: see :func:`weights_raw`)."""
    idx = rebalance_indices(panel.dates, profile.frequency)
    return weights_raw(panel.returns(), idx, profile, sector_ids(panel.symbols, panel.sectors), cash_rate_annual)


# --------------------------------------------------------------------------------------------
# batched reallocation of many strategy sleeves


@dataclass(frozen=True)
class SleeveInputs:
    """Inputs of :func:`reallocate_sleeves` for S sleeves over one N-name universe.

    cov : (C, N, N) distinct covariance matrices; cov_index : (S,) which one each sleeve uses;
    universe : (S, N) bool, the names each sleeve may hold; prev : (S, N) current targets.
    """

    cov: np.ndarray
    cov_index: np.ndarray
    universe: np.ndarray
    prev: np.ndarray


def reallocate_sleeves(
    cov: np.ndarray,
    universe: np.ndarray | None,
    prev: np.ndarray | None,
    sector_id: np.ndarray,
    limits: RiskLimits = RiskLimits(),
    transition: Transition = Transition(),
    cov_index: np.ndarray | None = None,
) -> np.ndarray:
    """New targets of many risk-parity sleeves at once (the ``reallocation_10000_strategies`` core).

    Per sleeve: risk parity on its own universe and covariance (batched Newton), risk limits with
    redistribution, then one smooth-transition step from ``prev`` (max change, min-change threshold,
    limits re-checked to cash). Spreading over days does not apply to a single step.

    Parameters
    ----------
    cov : (S, N, N) covariances, or (C, N, N) with ``cov_index`` (S,) picking one per sleeve.
    universe : (S, N) bool names each sleeve may hold, or None (all).
    prev : (S, N) current targets, or None (from cash).
    sector_id : (N,) sector codes.

    Returns
    -------
    (S, N) targets.
    """
    c = np.asarray(cov, dtype=np.float64)
    if cov_index is not None:
        c = c[np.asarray(cov_index)]
    s, n = c.shape[0], c.shape[-1]
    p = np.zeros((s, n)) if prev is None else np.asarray(prev, dtype=np.float64)
    w = risk_parity_weights(c, mask=universe)
    w = apply_risk_limits(w, sector_id, limits, c)
    return smooth_transition(p, w, transition, sector_id, limits, c)


def sleeve_inputs(
    returns: np.ndarray,
    rebalance_idx: np.ndarray,
    sector_id: np.ndarray,
    n_sleeves: int = 10_000,
    lookback: int = 126,
    min_names: int = 8,
    seed: int = 0,
    limits: RiskLimits = RiskLimits(),
) -> SleeveInputs:
    """A reproducible set of sleeves from real history: each sleeve draws a universe of
    ``min_names..N`` names and a rebalance date, and starts from the risk-parity targets of the
    same universe at the previous rebalance date (so the transition rules have work to do)."""
    rng = np.random.default_rng(seed)
    r = np.asarray(returns, dtype=np.float64)
    idx = np.asarray(rebalance_idx, dtype=np.int64)
    idx = idx[idx >= lookback]
    cov, _ = trailing_covariances(r, idx, lookback)
    n = r.shape[1]
    size = rng.integers(min_names, n + 1, size=n_sleeves)
    keys = rng.random((n_sleeves, n))
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    universe = rank < size[:, None]
    cov_index = rng.integers(1, idx.size, size=n_sleeves)
    prev = reallocate_sleeves(cov, universe, None, sector_id, limits, Transition(min_change=0.0), cov_index - 1)
    return SleeveInputs(cov=cov, cov_index=cov_index, universe=universe, prev=prev)
