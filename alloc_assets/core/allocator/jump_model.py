"""A statistical jump model (JM) regime signal on one index, walk-forward and strictly causal
(pure; numpy/pandas + the ``jumpmodels`` package, no Dagster import).

A peer's regime model, used as a control for the regime governor and as a third regime method:
Nystrup et al.'s statistical jump model as packaged by Yizhan Shu (``jumpmodels`` 0.1.1) and
applied to equity indices by Shu, Yu & Mulvey (2024), "Downside risk reduction using
regime-switching signals: a statistical jump model approach", J. Asset Management 25(5).
Every value dated t uses returns through the close of t only.

Features (``jump_features``)
----------------------------
From simple daily returns ``r_t`` of the index, with pandas' exponentially weighted mean with a
halflife ``h`` (``Series.ewm(halflife=h).mean()``, ``adjust=True``, which is causal):

    EWM_h(x)_t = sum_{i=0..n} w^i x_{t-i} / sum_{i=0..n} w^i,   w = 2^(-1/h) = 1 - alpha,

n = t - (first day with a return); i.e. an expanding, normalised, geometrically weighted mean.

* ``ret_h``      = EWM_h(r)_t                              (EWM average return)
* ``dd_log_h``   = log DD_h,t,  DD_h,t = sqrt(EWM_h(min(r, 0)^2)_t)   (log downside deviation)
* ``sortino_h``  = EWM_h(r)_t / DD_h,t                    (EWM Sortino-like ratio; 0 target, no rf)

These are exactly the formulas of the package authors' example (``examples/nasdaq/feature.py``
of github.com/Yizhan-Oliver-Shu/jump-models, feature version ``"v0"``; the example is not shipped
in the wheel). Two presets:

* ``EXAMPLE_V0_FEATURES`` (default): all three features at halflives 5, 20 and 60 days (9 features),
  the package example's set.
* ``SHU_YU_MULVEY_2024_FEATURES``: ``dd_log_10``, ``sortino_20``, ``sortino_60``, the three-feature
  set of the 2024 article as we read it (the article computes them on excess returns; we have no
  risk-free series here, so on raw returns).

Model and walk-forward (``walk_forward_jump_model``)
-----------------------------------------------------
* Refit dates: the first trading day of each calendar period of ``refit`` (``Cadence``: monthly,
  quarterly, semiannual, annual; anchored to the calendar, so never more often than monthly) once
  at least ``min_train_days`` usable feature rows lie strictly before it. A feature row is usable
  from ``warmup_days`` returns after the first return on, and once all features are finite (log DD
  needs one negative return).
* Training window: expanding, all usable rows strictly before the refit date. The preprocessing is
  the package example's: ``DataClipperStd(mul=clip_mul)`` (winsorise each feature at its training
  mean +/- 3 standard deviations) then ``StandardScalerPD`` (standardise), both fitted on the
  training window only and then applied, fixed, to later rows.
* Fit: ``JumpModel(n_components=n_states, jump_penalty=penalty, cont=continuous,
  random_state=random_state, n_init=n_init).fit(Z_train, r_train, sort_by=sort_by)``.
  ``warm_start=True`` (default): each refit runs on a copy of the previous refit's model, so the
  package's ``init_centers`` adds the previous centres as one more initialisation besides the
  ``n_init`` k-means++ draws (refits then depend on earlier refits too, all on data before their
  own fit date); ``warm_start=False``: a fresh instance per refit. ``sort_by="ret"`` (default) is
  the package's ordering by decreasing mean daily return of the training days assigned to each
  state by the in-sample fit: state 0 is the bull state (higher mean return), state 1 the bear
  state (lower mean return). ``"cumret"`` (the package example's choice, mean return x frequency)
  and ``"vol"`` are also accepted; on the bundled S&P 500 "ret" and "cumret" pick the same bear
  state at every refit.
* Inference for the days of a refit period [fit date, next fit date): only the package's online
  method ``predict_proba_online`` (``predict_online`` is its argmax; we take the argmax with the
  package's own ``reduce_proba_to_labels``, which is what ``predict_online`` does). It runs the
  jump model's forward dynamic programme from the start of the training window through the end of
  the period, so each new period continues from the state history instead of starting cold; only
  the rows from the fit date on are kept. Row t of the forward value matrix depends on rows <= t
  only, so a state dated t uses data through t only. ``predict``/``predict_proba`` (Viterbi over
  the whole path, smoothing) are never used.
* Before the first fit: state 0 (fully invested), ``bear_prob`` NaN, ``fit_date`` NaT,
  ``fitted`` False.

Jump penalty: fixed ex ante at ``DEFAULT_PENALTY`` = 50.0, the value the package's example uses
for the discrete JM with the ``EXAMPLE_V0_FEATURES`` set (Nasdaq-100, trained 2007-2021). It was
not tuned on our sample; the 2024 article selects the penalty by time-series cross-validation of
strategy performance, which we do not do. For the continuous JM (``continuous=True``) the same
example uses 600.0 (``DEFAULT_CONTINUOUS_PENALTY``); pass it explicitly.

``bear_prob``: the online probability of the bear state from ``predict_proba_online``. For the
discrete JM (default) it is 0 or 1 (hard assignment); ``continuous=True`` (the CJM) gives graded
probabilities.

Speed and the defaults (bundled S&P 500, 8,313 days 1990-2022, first refit mid-1995, one core of
a shared machine, measured when this module was written). The package's fit is a Python-level
dynamic programme: about 0.7-0.9 ms per training day with ``n_init=10`` (3.5-4.5 s per refit on
average, up to about 10 s on 8,000 days), about 0.13 ms per training day with ``n_init=2`` plus the
warm start; one online pass costs about 10 ms per 1,000 days. Whole walk-forward, wall clock:
annual/``n_init=10`` 95-122 s; annual/3 23 s; annual/5 44 s; semiannual/2 36 s; semiannual/3
60 s; quarterly/1 69 s; monthly (about 330 refits) would take several minutes at any ``n_init``.
Hence ``DEFAULT_REFIT`` = semiannual (the first trading day of January and July) with
``DEFAULT_N_INIT`` = 2 plus the warm start: under 60 s, and at the 27 January refits it reaches the
objective of annual refits with ``n_init=10`` (or a lower one) 23 times, the other 4 within 2.4 in
about 10^4. Pass ``refit="monthly"``/``n_init=10`` where time allows.

Determinism: ``random_state`` must be an int (the package re-seeds its k-means++ initialisation
from it at each fit), so the same inputs give bit-identical outputs.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from alloc_assets.core.allocator.regimes import Cadence, period_index

if TYPE_CHECKING:  # the package (and scikit-learn under it) costs seconds to import: imported when fitting
    from jumpmodels.jump import JumpModel
    from jumpmodels.preprocess import DataClipperStd, StandardScalerPD

BULL = 0
BEAR = 1

DEFAULT_PENALTY = 50.0
DEFAULT_CONTINUOUS_PENALTY = 600.0
DEFAULT_MIN_TRAIN_DAYS = 252 * 5
DEFAULT_REFIT = Cadence.SEMIANNUAL
DEFAULT_N_INIT = 2
DEFAULT_RANDOM_STATE = 0
DEFAULT_CLIP_MUL = 3.0
SORT_CHOICES = ("ret", "cumret", "vol")

TRADING_DAYS_PER_YEAR = 252.0


# --------------------------------------------------------------------------------------------------
# features


@dataclass(frozen=True)
class FeatureSpec:
    """Which features at which halflives (in trading days).

    return_halflives : EWM average return ``ret_h``.
    dd_halflives : log EWM downside deviation ``dd_log_h``.
    sortino_halflives : EWM Sortino-like ratio ``sortino_h``.
    warmup_days : returns observed before a feature row may be used for training or inference
        (default: the longest halflife).
    """

    return_halflives: tuple[float, ...] = (5.0, 20.0, 60.0)
    dd_halflives: tuple[float, ...] = (5.0, 20.0, 60.0)
    sortino_halflives: tuple[float, ...] = (5.0, 20.0, 60.0)
    warmup_days: int | None = None

    def __post_init__(self) -> None:
        hls = self.return_halflives + self.dd_halflives + self.sortino_halflives
        if not hls:
            raise ValueError("FeatureSpec needs at least one feature")
        if any(not (h > 0) for h in hls):
            raise ValueError(f"halflives must be > 0, got {hls}")

    @property
    def halflives(self) -> tuple[float, ...]:
        return tuple(sorted(set(self.return_halflives + self.dd_halflives + self.sortino_halflives)))

    @property
    def warmup(self) -> int:
        return int(np.ceil(max(self.halflives))) if self.warmup_days is None else int(self.warmup_days)

    @property
    def names(self) -> tuple[str, ...]:
        """Column order: by halflife, then ret, dd_log, sortino (the package example's order)."""
        out: list[str] = []
        for h in self.halflives:
            tag = f"{h:g}"
            if h in self.return_halflives:
                out.append(f"ret_{tag}")
            if h in self.dd_halflives:
                out.append(f"dd_log_{tag}")
            if h in self.sortino_halflives:
                out.append(f"sortino_{tag}")
        return tuple(out)


EXAMPLE_V0_FEATURES = FeatureSpec()
SHU_YU_MULVEY_2024_FEATURES = FeatureSpec(return_halflives=(), dd_halflives=(10.0,), sortino_halflives=(20.0, 60.0))


def _first_finite(returns: np.ndarray) -> int:
    finite = np.isfinite(returns)
    if not finite.any():
        return len(returns)
    start = int(np.argmax(finite))
    if not finite[start:].all():
        raise ValueError("returns must be finite after the first finite value (only a leading run of NaN is allowed)")
    return start


def _usable_rows(r: np.ndarray, x: np.ndarray, features: FeatureSpec) -> tuple[int, int]:
    """``(start, first)``: the first finite return, and the first feature row a fit may use
    (``warmup`` returns after it, every feature finite); ``len(r)`` when there is none."""
    t_len = len(r)
    start = _first_finite(r)
    row_ok = np.isfinite(x).all(axis=1)
    cand = np.flatnonzero(row_ok & (np.arange(t_len) >= start + features.warmup))
    first = int(cand[0]) if len(cand) else t_len
    if first < t_len and not row_ok[first:].all():
        raise ValueError("a feature row became non-finite after the first usable row")
    return start, first


def jump_features(returns: np.ndarray, spec: FeatureSpec = EXAMPLE_V0_FEATURES) -> tuple[np.ndarray, tuple[str, ...]]:
    """Feature matrix (T, F) and column names; row t uses ``returns[: t + 1]`` only.

    ``returns``: simple daily returns, a leading run of NaN allowed (e.g. the first day of a
    close-to-close series); those rows are NaN. Rows before the first negative return have
    ``dd_log = -inf`` and a non-finite Sortino ratio (``walk_forward_jump_model`` skips them).
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError("returns must be 1-D")
    names = spec.names
    out = np.full((len(r), len(names)), np.nan)
    start = _first_finite(r)
    if start == len(r):
        return out, names
    s = pd.Series(r[start:])
    neg_sq = np.minimum(s, 0.0) ** 2
    cols: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for h in spec.halflives:
            tag = f"{h:g}"
            mean = s.ewm(halflife=h).mean().to_numpy()
            dd = np.sqrt(neg_sq.ewm(halflife=h).mean().to_numpy())
            cols[f"ret_{tag}"] = mean
            cols[f"dd_log_{tag}"] = np.log(dd)
            cols[f"sortino_{tag}"] = mean / dd
    for j, name in enumerate(names):
        out[start:, j] = cols[name]
    return out, names


# --------------------------------------------------------------------------------------------------
# one fit, online inference


@dataclass(frozen=True)
class FittedJumpModel:
    """A fitted clipper + scaler + ``JumpModel``, states already ordered (0 bull ... n-1 bear)."""

    clipper: DataClipperStd
    scaler: StandardScalerPD
    model: JumpModel

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Clip then standardise with the training-window parameters (elementwise, row by row)."""
        return np.asarray(self.scaler.transform(self.clipper.transform(np.asarray(x, dtype=np.float64))), dtype=np.float64)


def fit_jump_model(
    x_train: np.ndarray,
    r_train: np.ndarray,
    *,
    penalty: float = DEFAULT_PENALTY,
    n_states: int = 2,
    continuous: bool = False,
    clip_mul: float = DEFAULT_CLIP_MUL,
    n_init: int = DEFAULT_N_INIT,
    random_state: int = DEFAULT_RANDOM_STATE,
    max_iter: int = 1000,
    tol: float = 1e-8,
    sort_by: str = "ret",
    previous: FittedJumpModel | None = None,
) -> FittedJumpModel:
    """Fit clipper and scaler on ``x_train`` (rows = training days), then the jump model on the
    scaled rows, ordering the states with ``sort_by`` on the same days' returns ``r_train``.

    ``previous``: a model fitted earlier (warm start). The fit then runs on a copy of its
    ``JumpModel``, which the package's ``init_centers`` uses as one more initialisation (its
    ``centers_``) besides the ``n_init`` k-means++ draws; ``previous`` itself is not modified."""
    x_train = np.asarray(x_train, dtype=np.float64)
    r_train = np.asarray(r_train, dtype=np.float64)
    if x_train.ndim != 2 or len(x_train) != len(r_train):
        raise ValueError(f"x_train {x_train.shape} and r_train {r_train.shape} disagree")
    if not (np.isfinite(x_train).all() and np.isfinite(r_train).all()):
        raise ValueError("training rows must be finite")
    if sort_by not in SORT_CHOICES:
        raise ValueError(f"sort_by must be one of {SORT_CHOICES}, got {sort_by!r}")
    if not isinstance(random_state, (int, np.integer)):
        raise TypeError("random_state must be an int (determinism)")
    from jumpmodels.jump import JumpModel
    from jumpmodels.preprocess import DataClipperStd, StandardScalerPD

    clipper = DataClipperStd(mul=clip_mul).fit(x_train)
    scaler = StandardScalerPD().fit(clipper.transform(x_train))
    z = np.asarray(scaler.transform(clipper.transform(x_train)), dtype=np.float64)
    params = dict(
        n_components=n_states,
        jump_penalty=float(penalty),
        cont=bool(continuous),
        random_state=int(random_state),
        max_iter=max_iter,
        tol=tol,
        n_init=n_init,
    )
    if previous is None:
        model = JumpModel(**params)
    else:
        model = copy.deepcopy(previous.model).set_params(**params)
    model.fit(z, r_train, sort_by=sort_by)
    return FittedJumpModel(clipper, scaler, model)


def online_inference(fitted: FittedJumpModel, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Online states (T,) int and state probabilities (T, K) for the rows of ``x`` taken in order
    from its first row: ``predict_proba_online`` and its argmax (= ``predict_online``). Row t
    depends on rows 0..t of ``x`` only."""
    from jumpmodels.utils import reduce_proba_to_labels

    z = fitted.transform(x)
    proba = np.asarray(fitted.model.predict_proba_online(z), dtype=np.float64)
    states = np.asarray(reduce_proba_to_labels(proba), dtype=np.int64)
    return states, proba


# --------------------------------------------------------------------------------------------------
# walk-forward


@dataclass(frozen=True)
class JumpFit:
    """One refit. ``fit_date`` is the first day it is used; it was trained on usable rows
    ``train_start .. train_end`` (all strictly before ``fit_date``). Per-state statistics are over
    the training days with the in-sample labels: ``mean_return``/``vol`` (daily, the package's
    ``ret_``/``vol_``), ``frequency`` (share of training days). ``centers`` are in the scaled
    feature space. ``fit_seconds`` is wall-clock time (excluded from equality)."""

    fit_date: np.datetime64
    train_start: np.datetime64
    train_end: np.datetime64
    n_train: int
    mean_return: tuple[float, ...]
    vol: tuple[float, ...]
    frequency: tuple[float, ...]
    centers: tuple[tuple[float, ...], ...]
    objective: float
    fit_seconds: float = field(compare=False, default=0.0)


@dataclass(frozen=True, eq=False)
class JumpModelResult:
    """Walk-forward jump-model rows.

    dates : (T,) ``datetime64[D]``.
    state : (T,) int8, 0 = bull (higher training mean return) ... n_states-1 = bear; 0 before the
        first fit.
    bear_prob : (T,) float64, online probability of the bear state (0/1 for the discrete JM), NaN
        before the first fit.
    fit_date : (T,) ``datetime64[D]``, the refit in force (NaT before the first fit).
    fitted : (T,) bool, a fitted model produced the row.
    features : (T, F) raw (unscaled) features, ``feature_names`` their names.
    fits : the refits, in order.
    """

    dates: np.ndarray
    state: np.ndarray
    bear_prob: np.ndarray
    fit_date: np.ndarray
    fitted: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    fits: tuple[JumpFit, ...]
    penalty: float
    n_states: int
    refit: str
    first_usable: int

    def __len__(self) -> int:
        return len(self.dates)

    def to_frame(self) -> pd.DataFrame:
        """``date, state, bear_prob, fit_date, fitted`` then the raw features."""
        df = pd.DataFrame(
            {
                "date": pd.to_datetime(self.dates),
                "state": self.state,
                "bear_prob": self.bear_prob,
                "fit_date": pd.to_datetime(self.fit_date),
                "fitted": self.fitted,
            }
        )
        for j, name in enumerate(self.feature_names):
            df[name] = self.features[:, j]
        return df


def refit_indices(dates: np.ndarray, refit: Cadence | str, first_usable: int, min_train_days: int) -> np.ndarray:
    """Row indices i of the refits: first trading day of a ``refit`` period (the period of
    ``dates[i]`` differs from that of ``dates[i-1]``) with ``i - first_usable >= min_train_days``."""
    dates = np.asarray(dates).astype("datetime64[D]")
    if len(dates) < 2:
        return np.zeros(0, dtype=np.int64)
    per = period_index(dates, Cadence(refit))
    idx = np.flatnonzero(per[1:] != per[:-1]) + 1
    return idx[idx - first_usable >= min_train_days].astype(np.int64)


def walk_forward_jump_model(
    dates: np.ndarray,
    returns: np.ndarray,
    *,
    penalty: float = DEFAULT_PENALTY,
    n_states: int = 2,
    min_train_days: int = DEFAULT_MIN_TRAIN_DAYS,
    refit: Cadence | str = DEFAULT_REFIT,
    features: FeatureSpec = EXAMPLE_V0_FEATURES,
    continuous: bool = False,
    clip_mul: float = DEFAULT_CLIP_MUL,
    n_init: int = DEFAULT_N_INIT,
    random_state: int = DEFAULT_RANDOM_STATE,
    sort_by: str = "ret",
    warm_start: bool = True,
) -> JumpModelResult:
    """Expanding-window, periodically refitted jump model with online inference (module docstring).

    ``dates``: (T,) strictly increasing trading days; ``returns``: (T,) simple daily returns of the
    index dated like ``dates`` (return of day t = close t / close t-1 - 1; a leading NaN allowed).
    """
    dates = np.asarray(dates).astype("datetime64[D]")
    r = np.asarray(returns, dtype=np.float64)
    t_len = len(dates)
    if r.shape != (t_len,):
        raise ValueError(f"returns shape {r.shape} != ({t_len},)")
    if t_len > 1 and not (np.diff(dates.astype(np.int64)) > 0).all():
        raise ValueError("dates must be strictly increasing")
    if n_states < 2:
        raise ValueError("n_states must be >= 2")
    if min_train_days < max(n_states, 2):
        raise ValueError("min_train_days too small")
    refit = Cadence(refit)

    x, names = jump_features(r, features)
    _, first_usable = _usable_rows(r, x, features)

    state = np.zeros(t_len, dtype=np.int8)
    bear_prob = np.full(t_len, np.nan)
    fit_date = np.full(t_len, np.datetime64("NaT"), dtype="datetime64[D]")
    fitted = np.zeros(t_len, dtype=bool)
    fits: list[JumpFit] = []

    starts = refit_indices(dates, refit, first_usable, min_train_days) if first_usable < t_len else np.zeros(0, np.int64)
    bounds = list(starts) + [t_len]
    fm: FittedJumpModel | None = None
    for k, i in enumerate(starts):
        j = int(bounds[k + 1])
        i = int(i)
        t0 = time.perf_counter()
        fm = fit_jump_model(
            x[first_usable:i],
            r[first_usable:i],
            penalty=penalty,
            n_states=n_states,
            continuous=continuous,
            clip_mul=clip_mul,
            n_init=n_init,
            random_state=random_state,
            sort_by=sort_by,
            previous=fm if warm_start else None,
        )
        seconds = time.perf_counter() - t0
        # online pass from the start of the training window through the end of the period
        s_online, p_online = online_inference(fm, x[first_usable:j])
        keep = slice(i - first_usable, j - first_usable)
        state[i:j] = s_online[keep]
        bear_prob[i:j] = p_online[keep, n_states - 1]
        fit_date[i:j] = dates[i]
        fitted[i:j] = True
        m = fm.model
        freq = np.asarray(m.proba_, dtype=np.float64).mean(axis=0)
        fits.append(
            JumpFit(
                fit_date=dates[i],
                train_start=dates[first_usable],
                train_end=dates[i - 1],
                n_train=i - first_usable,
                mean_return=tuple(float(v) for v in np.atleast_1d(m.ret_)),
                vol=tuple(float(v) for v in np.atleast_1d(m.vol_)),
                frequency=tuple(float(v) for v in freq),
                centers=tuple(tuple(float(v) for v in row) for row in m.centers_),
                objective=float(m.val_),
                fit_seconds=seconds,
            )
        )

    return JumpModelResult(
        dates=dates,
        state=state,
        bear_prob=bear_prob,
        fit_date=fit_date,
        fitted=fitted,
        features=x,
        feature_names=names,
        fits=tuple(fits),
        penalty=float(penalty),
        n_states=int(n_states),
        refit=refit.value,
        first_usable=first_usable,
    )


# --------------------------------------------------------------------------------------------------
# scalars, diagnostics


def jump_model_scalars(states: np.ndarray, floor: float, bull_scalar: float = 1.0, n_states: int = 2) -> np.ndarray:
    """Exposure scalar per day: state 0 (bull) -> ``bull_scalar``, state ``n_states-1`` (bear) ->
    ``floor`` (0 allowed), intermediate states linearly in between. Float64 array like ``states``."""
    s = np.asarray(states)
    if not (0.0 <= floor <= bull_scalar):
        raise ValueError(f"need 0 <= floor <= bull_scalar, got floor={floor}, bull_scalar={bull_scalar}")
    if n_states < 2:
        raise ValueError("n_states must be >= 2")
    if s.size and (not np.issubdtype(s.dtype, np.integer) or s.min() < 0 or s.max() > n_states - 1):
        raise ValueError(f"states must be integers in [0, {n_states - 1}]")
    levels = np.linspace(bull_scalar, floor, n_states)
    levels[0], levels[-1] = bull_scalar, floor
    return levels[s.astype(np.int64)].astype(np.float64)


def switches_per_year(states: np.ndarray, mask: np.ndarray | None = None) -> float:
    """State changes per 252 trading days over the rows selected by ``mask`` (default all)."""
    s = np.asarray(states)
    if mask is not None:
        s = s[np.asarray(mask, dtype=bool)]
    if len(s) < 2:
        return 0.0
    return float(np.count_nonzero(s[1:] != s[:-1]) * TRADING_DAYS_PER_YEAR / (len(s) - 1))


# --------------------------------------------------------------------------------------------------
# the production path: fits cached by their training data, online inference in numpy
#
# ``walk_forward_jump_model`` above is the reference (the package end to end). A daily run must not
# pay seconds of scikit-learn import and a refit of every period: ``cached_walk_forward`` keeps each
# refit as a plain record (clip bounds, scaler, ordered centres) keyed by a hash of the settings and
# of its training returns, fits with the package only what the cache lacks, and runs the online
# inference (the package's forward value recursion, ``dp(..., return_value_mx=True)``: ``V_0 = L_0``,
# ``V_t = L_t + min_j (V_{t-1, j} + Lambda_{j, .})``, state = argmin ``V_t``, ``L`` = half the squared
# distance to each centre) for all periods at once in numpy. Tests check it equals the reference.

FIT_RECORD_VERSION = 1


def _record(clipper, scaler, centers, penalty: float, ret, vol, objective: float) -> dict[str, Any]:
    sc = scaler.scaler
    return {
        "version": FIT_RECORD_VERSION,
        "lb": np.asarray(clipper.lb, dtype=np.float64).tolist(),
        "ub": np.asarray(clipper.ub, dtype=np.float64).tolist(),
        "mean": np.asarray(sc.mean_, dtype=np.float64).tolist(),
        "scale": np.asarray(sc.scale_, dtype=np.float64).tolist(),
        "centers": np.asarray(centers, dtype=np.float64).tolist(),
        "penalty": float(penalty),
        "mean_return": np.atleast_1d(np.asarray(ret, dtype=np.float64)).tolist(),
        "vol": np.atleast_1d(np.asarray(vol, dtype=np.float64)).tolist(),
        "objective": float(objective),
    }


def fit_record(fitted: FittedJumpModel) -> dict[str, Any]:
    """A fitted model as plain JSON-able numbers: what online inference and a warm start need."""
    m = fitted.model
    return _record(fitted.clipper, fitted.scaler, m.centers_, m.jump_penalty, m.ret_, m.vol_, m.val_)


def _warm_model(record: Mapping[str, Any], n_states: int):
    """A package model holding only a previous fit's centres (what its ``init_centers`` reuses)."""
    from jumpmodels.jump import JumpModel

    m = JumpModel(n_components=n_states)
    m.centers_ = np.asarray(record["centers"], dtype=np.float64)
    return m


def _two_state_e_step(x: np.ndarray, centers: np.ndarray, penalty: float) -> tuple[np.ndarray, np.ndarray, float] | None:
    """The package's discrete E step (``do_E_step``: loss ``0.5 * cdist(x, centers, "sqeuclidean")``,
    the forward value recursion, the traceback) for two states, step for step with the same float
    operations but on Python floats instead of one numpy call per day (about ten times faster).
    ``None`` when a centre is undefined (the package's own step handles that case)."""
    from scipy.spatial.distance import cdist

    if not np.isfinite(centers).all():
        return None
    loss = 0.5 * cdist(x, centers, "sqeuclidean")
    l0, l1 = loss[:, 0].tolist(), loss[:, 1].tolist()
    n = len(l0)
    v0s, v1s = [0.0] * n, [0.0] * n
    v0, v1 = l0[0], l1[0]
    v0s[0], v1s[0] = v0, v1
    lam = float(penalty)
    for t in range(1, n):
        # values[t] = loss[t] + (values[t-1][:, None] + penalty_mx).min(axis=0); penalty_mx[k, k] = 0.0
        a0, b0 = v0 + 0.0, v1 + lam
        a1, b1 = v0 + lam, v1 + 0.0
        v0, v1 = l0[t] + (a0 if a0 <= b0 else b0), l1[t] + (a1 if a1 <= b1 else b1)
        v0s[t], v1s[t] = v0, v1
    assign = [0] * n
    last = 0 if v0 <= v1 else 1
    assign[-1] = last
    value = v0 if last == 0 else v1
    for t in range(n - 1, 0, -1):
        k = assign[t]
        c0 = v0s[t - 1] + (0.0 if k == 0 else lam)
        c1 = v1s[t - 1] + (lam if k == 0 else 0.0)
        assign[t - 1] = 0 if c0 <= c1 else 1
    labels = np.asarray(assign, dtype=int)
    proba = np.zeros((n, 2))
    proba[np.arange(n), labels] = 1.0
    return proba, labels, float(value)


def fast_fit_record(x_train: np.ndarray, r_train: np.ndarray, *, penalty: float = DEFAULT_PENALTY,
                    clip_mul: float = DEFAULT_CLIP_MUL, n_init: int = DEFAULT_N_INIT,
                    random_state: int = DEFAULT_RANDOM_STATE, max_iter: int = 1000, tol: float = 1e-8,
                    sort_by: str = "ret", previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`fit_record` of :func:`fit_jump_model` for the two-state discrete model, computed with
    the package's own pieces (clipper, scaler, k-means++ initialisation, M step, clustering test,
    state ordering) and its coordinate-descent loop as written in ``JumpModel.fit``, with the E step
    of :func:`_two_state_e_step`. ``previous`` (a record) adds its centres as one more start, as the
    package's ``init_centers`` does with a warm model. Tests check it equals the package's fit."""
    from jumpmodels.base import init_centers_kmeans_plusplus, sort_states_from_ret
    from jumpmodels.jump import do_E_step, jump_penalty_to_mx
    from jumpmodels.preprocess import DataClipperStd, StandardScalerPD
    from jumpmodels.utils import is_same_clustering, weighted_mean_cluster

    x_train = np.asarray(x_train, dtype=np.float64)
    r_train = np.asarray(r_train, dtype=np.float64)
    clipper = DataClipperStd(mul=clip_mul).fit(x_train)
    scaler = StandardScalerPD().fit(clipper.transform(x_train))
    z = np.asarray(scaler.transform(clipper.transform(x_train)), dtype=np.float64)
    pen_mx = jump_penalty_to_mx(float(penalty), 2)
    starts = init_centers_kmeans_plusplus(z, 2, n_init, int(random_state))
    if previous is not None and np.asarray(previous["centers"]).shape == (2, z.shape[1]):
        starts.append(np.asarray(previous["centers"], dtype=np.float64))

    def e_step(c):
        out = _two_state_e_step(z, c, penalty)
        return out if out is not None else do_E_step(z, c, pen_mx)

    best_val, best = np.inf, {"labels_": None}
    for centers in np.array(starts):
        labels_pre, val_pre = None, np.inf
        proba, labels, val = e_step(centers)
        it = 0
        while it < max_iter and not is_same_clustering(labels, labels_pre) and val_pre - val > tol:
            it += 1
            labels_pre, val_pre = labels, val
            centers = weighted_mean_cluster(z, proba)
            proba, labels, val = e_step(centers)
        if not is_same_clustering(best["labels_"], labels) and val < best_val:
            best_val = val
            best = {"centers_": centers, "labels_": labels, "proba_": proba}
    sort_states_from_ret(r_train, z, best, sort_by=sort_by)
    return _record(clipper, scaler, best["centers_"], penalty, best["ret_"], best["vol_"], best_val)


def fit_key(settings: Mapping[str, Any], returns: np.ndarray, fit_date) -> str:
    """Cache key of one refit: the settings, the fit date and the exact training returns."""
    h = hashlib.sha256(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    h.update(str(np.datetime64(fit_date, "D")).encode())
    h.update(np.ascontiguousarray(returns, dtype=np.float64).tobytes())
    return h.hexdigest()[:32]


def online_states_many(x: np.ndarray, records: list[Mapping[str, Any]], n_states: int = 2) -> np.ndarray:
    """Online states (T, P) of P fitted models over the same feature rows ``x`` (T, F), each from
    the first row: the package's ``predict_online`` for every record at once."""
    t_len = x.shape[0]
    if not records:
        return np.zeros((t_len, 0), dtype=np.int64)
    lb = np.array([r["lb"] for r in records])
    ub = np.array([r["ub"] for r in records])
    mean = np.array([r["mean"] for r in records])
    scale = np.array([r["scale"] for r in records])
    centers = np.array([r["centers"] for r in records])  # (P, K, F)
    pen = np.array([r["penalty"] for r in records])[:, None, None] * (1.0 - np.eye(n_states))[None]  # (P, K, K)
    z = (np.clip(x[:, None, :], lb[None], ub[None]) - mean[None]) / scale[None]  # (T, P, F)
    loss = 0.5 * ((z[:, :, None, :] - centers[None]) ** 2).sum(axis=-1)  # (T, P, K)
    loss = np.where(np.isnan(loss), np.inf, loss)  # an empty state's NaN centre is unreachable (the package's rule)
    values = np.empty_like(loss)
    values[0] = loss[0]
    for t in range(1, t_len):
        values[t] = loss[t] + (values[t - 1][:, :, None] + pen).min(axis=1)
    return values.argmin(axis=2)


def cached_walk_forward(
    dates: np.ndarray,
    returns: np.ndarray,
    cache: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    penalty: float = DEFAULT_PENALTY,
    n_states: int = 2,
    min_train_days: int = DEFAULT_MIN_TRAIN_DAYS,
    refit: Cadence | str = DEFAULT_REFIT,
    features: FeatureSpec = EXAMPLE_V0_FEATURES,
    clip_mul: float = DEFAULT_CLIP_MUL,
    n_init: int = DEFAULT_N_INIT,
    random_state: int = DEFAULT_RANDOM_STATE,
    sort_by: str = "ret",
) -> tuple[np.ndarray, np.ndarray, dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The discrete walk-forward of :func:`walk_forward_jump_model` (warm starts included) with
    refits taken from ``cache`` where their key is there.

    Returns
    -------
    state : (T,) int8, 0 bull / 1 bear, 0 before the first fit.
    fit_date : (T,) datetime64[D], the refit in force (NaT before the first).
    new : key -> record of the refits fitted now (to add to the cache).
    fits : one ``{key, fit_date, n_train, ...record}`` per refit, in order.
    """
    dates = np.asarray(dates).astype("datetime64[D]")
    r = np.asarray(returns, dtype=np.float64)
    t_len = len(dates)
    refit = Cadence(refit)
    x, _ = jump_features(r, features)
    start, first = _usable_rows(r, x, features)
    starts = refit_indices(dates, refit, first, min_train_days) if first < t_len else np.zeros(0, np.int64)
    settings = {"penalty": penalty, "n_states": n_states, "min_train_days": min_train_days, "refit": refit.value,
                "features": features.names, "warmup": features.warmup, "clip_mul": clip_mul, "n_init": n_init,
                "random_state": random_state, "sort_by": sort_by, "version": FIT_RECORD_VERSION}
    cache = dict(cache or {})
    new: dict[str, dict[str, Any]] = {}
    records, fits = [], []
    previous: Mapping[str, Any] | None = None
    for i in map(int, starts):
        # the key hashes every return the training features depend on (the EWMs start at the
        # first return, before the first usable row) and where the usable rows start
        key = fit_key({**settings, "first_usable": first - start}, r[start:i], dates[i])
        rec = cache.get(key)
        if rec is None:
            if n_states == 2:
                rec = fast_fit_record(x[first:i], r[first:i], penalty=penalty, clip_mul=clip_mul, n_init=n_init,
                                      random_state=random_state, sort_by=sort_by, previous=previous)
            else:
                prev = None if previous is None else FittedJumpModel(None, None, _warm_model(previous, n_states))
                rec = fit_record(fit_jump_model(x[first:i], r[first:i], penalty=penalty, n_states=n_states, clip_mul=clip_mul,
                                                n_init=n_init, random_state=random_state, sort_by=sort_by, previous=prev))
            new[key] = rec
        records.append(rec)
        fits.append({"key": key, "fit_date": str(dates[i]), "n_train": i - first, **rec})
        previous = rec
    state = np.zeros(t_len, dtype=np.int8)
    fit_date = np.full(t_len, np.datetime64("NaT"), dtype="datetime64[D]")
    if records:
        online = online_states_many(x[first:], records, n_states)  # (T - first, P)
        bounds = list(starts) + [t_len]
        for p, i in enumerate(starts):
            j = bounds[p + 1]
            state[i:j] = online[i - first: j - first, p]
            fit_date[i:j] = dates[i]
    return state, fit_date, new, fits
