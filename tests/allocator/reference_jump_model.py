"""The jump model's walk-forward with the ``jumpmodels`` package end to end: the reference that
``core.allocator.jump_model.cached_walk_forward`` is tested (and benchmarked) against.

Each refit trains the package's model on the usable rows before its fit date (warm-started from
the previous refit's centres unless ``warm_start=False``) and infers the period with the package's
online method; see docs/notes/allocator.md for the rules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alloc_assets.core.allocator.jump_features import EXAMPLE_V0_FEATURES, FeatureSpec, jump_features, usable_rows
from alloc_assets.core.allocator.jump_fit import (
    DEFAULT_CLIP_MUL,
    DEFAULT_N_INIT,
    DEFAULT_PENALTY,
    DEFAULT_RANDOM_STATE,
    FittedJumpModel,
    fit_jump_model,
    online_inference,
)
from alloc_assets.core.allocator.jump_model import DEFAULT_MIN_TRAIN_DAYS, DEFAULT_REFIT, refit_indices
from alloc_assets.core.allocator.regime_config import Cadence


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
    _, first_usable = usable_rows(r, x, features)

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


