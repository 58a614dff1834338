"""One fit of the statistical jump model, its online inference, and a fit as a plain JSON record.

``fit_jump_model`` runs the ``jumpmodels`` package (clip, standardise, ``JumpModel.fit``; state 0
is the bull state); ``online_inference`` is the package's causal ``predict_proba_online``.
``fit_record`` keeps a fit as clip bounds, scaler and ordered centres; ``fast_fit_record`` gives the
same record for the two-state discrete model with a numpy E-step. The package (and scikit-learn)
is imported only when fitting: it costs seconds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from jumpmodels.jump import JumpModel
    from jumpmodels.preprocess import DataClipperStd, StandardScalerPD

DEFAULT_PENALTY = 50.0
DEFAULT_N_INIT = 2
DEFAULT_RANDOM_STATE = 0
DEFAULT_CLIP_MUL = 3.0
SORT_CHOICES = ("ret", "cumret", "vol")


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


def warm_model(record: Mapping[str, Any], n_states: int):
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


