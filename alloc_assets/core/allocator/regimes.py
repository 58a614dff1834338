"""Market regimes from the latent state: ``compute_regimes(state, config, carry)`` gives, for each
date t, P(regime_t | data through t) over NORMAL, ELEVATED, STRESS, CRISIS and a label with
hysteresis (pure; numpy/scipy only, no Dagster import).

Methods: the stress score (default; ``core.allocator.stress_score``), a 4-state diagonal Gaussian
HMM (``core.allocator.hmm``) refitted by EM on an expanding window at each ``refit`` period start
and forward-filtered (states ordered by volatility; the stress-score probabilities stand in before
the first fit), or the jump model's online states (bull -> NORMAL, bear -> CRISIS). Label: with
``Q_k = P(regime >= k)`` and the current label L, ``candidate = max(max{k : Q_k >= enter},
max{k <= L : Q_k >= exit})``; the label moves to it after ``min_dwell_days`` in the current label,
except that an escalation into CRISIS is never held back. Every method is a recursion with a
JSON-serialisable carry: one call over a history and day-by-day calls give identical numbers, and
a row never depends on data after its date. Full description: docs/notes/allocator.md.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from alloc_assets.core.allocator.feature_config import StateFrame
from alloc_assets.core.allocator.hmm import HMMParams, filter_step, fit_hmm, log_emissions
from alloc_assets.core.allocator.regime_config import (
    CARRY_VERSION,
    HMMConfig,
    HysteresisConfig,
    RegimeConfig,
    RegimeFrame,
    RegimeMethod,
    refresh_mask,
)
from alloc_assets.core.allocator.stress_score import initial_score_carry, _score_rows, _transformed
from alloc_assets.core.market.calendar import rebalance_mask
from alloc_assets.core.regime import REGIMES, Regime



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


def regimes_in_pieces(state: StateFrame, cfg: RegimeConfig, carry: dict | None, start: dt.date,
                      jump_states: np.ndarray | None = None) -> tuple[pd.DataFrame, dict[dt.date, dict]]:
    """Regimes for the rows after the carry, computed piece by piece between month ends so that the
    carry at every month end from ``start`` on (and at the last date) is returned: a later run can
    resume from any of them. One pass in total; the pieces give the same rows as one call."""
    dates = state.dates
    begin = 0 if carry is None else int(np.searchsorted(dates, np.datetime64(carry["last_date"], "D"), side="right"))
    todo = dates[begin:]
    mask = rebalance_mask(todo, "monthly")
    mask[-1] = True
    cuts = begin + np.flatnonzero(mask)
    hmm = cfg.method.value == "hmm"
    frames, checkpoints, cur, lo = [], {}, carry, begin
    for cut in cuts:
        first_row = 0 if hmm else lo
        piece = state.slice(first_row, int(cut) + 1)
        js = None if jump_states is None else jump_states[first_row:int(cut) + 1]
        frame, cur = compute_regimes(piece, cfg, cur, js)
        frames.append(frame.to_pandas())
        day = dt.date.fromisoformat(str(dates[cut]))
        if day >= start or cut == cuts[-1]:
            checkpoints[day] = cur
        lo = int(cut) + 1
    return pd.concat(frames, ignore_index=True), checkpoints

