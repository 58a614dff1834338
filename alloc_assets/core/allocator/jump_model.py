"""The statistical jump model as a regime signal on one index: walk-forward refits, cached by their
training data, with online (causal) inference in numpy (pure; no Dagster import).

A peer's model (Nystrup et al.'s jump model as packaged in ``jumpmodels``, applied to equity
indices by Shu, Yu & Mulvey 2024) used as a control and as a regime method. Refits on the first
trading day of each ``refit`` period (semiannual by default) once ``min_train_days`` usable rows
lie before it, on an expanding window; state 0 is bull, 1 bear, and a state dated t uses returns
through t only. ``cached_walk_forward`` keeps each refit as a record keyed by a hash of the
settings and its training returns, so a daily run fits only what the cache lacks; its online pass
is the package's forward value recursion (``V_t = L_t + min_j (V_{t-1,j} + Lambda_j)``, ``L`` half
the squared distance to each centre) for all periods at once. The package end to end
(``tests/allocator/reference_jump_model.py``) is the reference it is tested against. Defaults,
timings and sources: docs/notes/allocator.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from alloc_assets.core.allocator.jump_features import EXAMPLE_V0_FEATURES, FeatureSpec, jump_features, usable_rows
from alloc_assets.core.allocator.jump_fit import (
    DEFAULT_CLIP_MUL,
    DEFAULT_N_INIT,
    DEFAULT_PENALTY,
    DEFAULT_RANDOM_STATE,
    FIT_RECORD_VERSION,
    FittedJumpModel,
    fast_fit_record,
    fit_jump_model,
    fit_record,
    warm_model,
)
from alloc_assets.core.allocator.regime_config import Cadence, period_index

DEFAULT_MIN_TRAIN_DAYS = 252 * 5
DEFAULT_REFIT = Cadence.SEMIANNUAL
TRADING_DAYS_PER_YEAR = 252.0


def refit_indices(dates: np.ndarray, refit: Cadence | str, first_usable: int, min_train_days: int) -> np.ndarray:
    """Row indices i of the refits: first trading day of a ``refit`` period (the period of
    ``dates[i]`` differs from that of ``dates[i-1]``) with ``i - first_usable >= min_train_days``."""
    dates = np.asarray(dates).astype("datetime64[D]")
    if len(dates) < 2:
        return np.zeros(0, dtype=np.int64)
    per = period_index(dates, Cadence(refit))
    idx = np.flatnonzero(per[1:] != per[:-1]) + 1
    return idx[idx - first_usable >= min_train_days].astype(np.int64)



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
    """The discrete walk-forward of the reference ``walk_forward_jump_model``
    (tests/allocator/reference_jump_model.py; warm starts included) with
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
    start, first = usable_rows(r, x, features)
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
                prev = None if previous is None else FittedJumpModel(None, None, warm_model(previous, n_states))
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
