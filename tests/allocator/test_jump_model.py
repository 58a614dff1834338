"""Jump-model regime signal: no look-ahead (truncated and perturbed futures), recovery of a synthetic
two-regime series, features against the closed-form EWMA, determinism, state ordering, the
pre-fit rows and the scalar mapping. Short synthetic series only (the bundled-data timing is a
separate smoke run, not a test)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("jumpmodels")

from alloc_assets.core.allocator import jump_model as jm  # noqa: E402
from alloc_assets.core.allocator import jump_fit  # noqa: E402
from alloc_assets.core.allocator.jump_features import (  # noqa: E402
    EXAMPLE_V0_FEATURES,
    SHU_YU_MULVEY_2024_FEATURES,
    FeatureSpec,
    jump_features,
)
from alloc_assets.core.allocator.jump_fit import fit_jump_model, online_inference  # noqa: E402
from alloc_assets.core.allocator.jump_model import jump_model_scalars, switches_per_year  # noqa: E402
from tests.allocator.reference_jump_model import walk_forward_jump_model  # noqa: E402

N_DAYS = 1300
MIN_TRAIN = 400
FAST = dict(min_train_days=MIN_TRAIN, refit="semiannual", n_init=2)


def two_regime_series(
    n: int,
    seed: int,
    calm_days: tuple[int, int] = (200, 400),
    stress_days: tuple[int, int] = (60, 120),
    drift: tuple[float, float] = (0.0006, -0.0015),
    vol: tuple[float, float] = (0.007, 0.022),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Business dates, simple returns (row 0 NaN) and the true regime (0 calm, 1 stressed).

    Calm stretches (length uniform in ``calm_days``, daily drift ``drift[0]``, vol ``vol[0]``)
    alternate with stressed stretches (``stress_days``, ``drift[1]``, ``vol[1]``), starting calm;
    returns are Gaussian, independent given the regime."""
    rng = np.random.default_rng(seed)
    truth: list[int] = []
    s = 0
    while len(truth) < n:
        lo, hi = calm_days if s == 0 else stress_days
        truth += [s] * int(rng.integers(lo, hi + 1))
        s = 1 - s
    regime = np.array(truth[:n], dtype=np.int64)
    r = np.where(regime == 0, drift[0], drift[1]) + np.where(regime == 0, vol[0], vol[1]) * rng.standard_normal(n)
    r[0] = np.nan
    dates = pd.bdate_range("2001-01-01", periods=n).to_numpy().astype("datetime64[D]")
    return dates, r, regime


@pytest.fixture(scope="module")
def synth():
    return two_regime_series(N_DAYS, seed=7)


@pytest.fixture(scope="module")
def full_run(synth):
    dates, r, _ = synth
    return walk_forward_jump_model(dates, r, **FAST)


def _assert_rows_equal(a, b, upto: int) -> None:
    """Every output row with index <= upto identical (bit for bit)."""
    sl = slice(0, upto + 1)
    assert np.array_equal(a.dates[sl], b.dates[sl])
    assert np.array_equal(a.state[sl], b.state[sl])
    assert np.array_equal(a.bear_prob[sl], b.bear_prob[sl], equal_nan=True)
    assert np.array_equal(a.fit_date[sl].view(np.int64), b.fit_date[sl].view(np.int64))  # NaT-safe
    assert np.array_equal(a.fitted[sl], b.fitted[sl])
    assert np.array_equal(a.features[sl], b.features[sl], equal_nan=True)
    cutoff = a.dates[upto]
    fa = [f for f in a.fits if f.fit_date <= cutoff]
    fb = [f for f in b.fits if f.fit_date <= cutoff]
    assert fa == fb


# --------------------------------------------------------------------------------------------------
# no look-ahead


def test_no_look_ahead_truncated_samples(synth, full_run):
    dates, r, _ = synth
    fit_idx = [int(np.searchsorted(dates, f.fit_date)) for f in full_run.fits]
    assert len(fit_idx) >= 4
    i1, i2 = fit_idx[1], fit_idx[2]
    ks = [
        fit_idx[0] - 1,  # last day before the first fit
        i1,  # a refit date itself (the fit sees data strictly before it; the row is online)
        i1 + 1,  # the day right after a refit
        (i1 + i2) // 2,  # mid-period
        i2 - 1,  # last day of a period
    ]
    for k in ks:
        trunc = walk_forward_jump_model(dates[: k + 1], r[: k + 1], **FAST)
        assert len(trunc) == k + 1
        _assert_rows_equal(trunc, full_run, k)


def test_no_look_ahead_perturbed_future(synth, full_run):
    """Rewriting everything after day k (a crash, then noise) changes no row dated <= k."""
    dates, r, _ = synth
    fit_idx = [int(np.searchsorted(dates, f.fit_date)) for f in full_run.fits]
    k = fit_idx[1] + 40
    r2 = r.copy()
    rng = np.random.default_rng(99)
    r2[k + 1 :] = -0.03 + 0.05 * rng.standard_normal(len(r) - k - 1)
    other = walk_forward_jump_model(dates, r2, **FAST)
    _assert_rows_equal(other, full_run, k)
    assert not np.array_equal(other.features[k + 1 :], full_run.features[k + 1 :])


def test_online_inference_is_causal_and_smoothed_decoding_is_not(synth):
    """The package's online method gives the same row t from any prefix of the data; its
    smoothed decoder (``predict``, Viterbi over the whole path) does not, so the truncation checks
    above have the power to catch a smoothed signal. Prefixes end shortly after true switches,
    where hindsight moves the decoded switch back."""
    dates, r, truth = synth
    x, _ = jump_features(r)
    x, rr, truth = x[61:], r[61:], truth[61:]
    fm = fit_jump_model(x[:600], rr[:600], n_init=2)
    s_full, p_full = online_inference(fm, x)
    assert np.array_equal(s_full, np.asarray(fm.model.predict_online(fm.transform(x))))
    smooth_full = np.asarray(fm.model.predict(fm.transform(x)))
    switches = np.flatnonzero(np.diff(truth)) + 1
    ends = [int(k) + d for k in switches for d in (10, 25, 40) if int(k) + d < len(x)]
    assert len(ends) >= 6
    n_differ = 0
    for m in ends:
        s_m, p_m = online_inference(fm, x[:m])
        assert np.array_equal(s_m, s_full[:m]) and np.array_equal(p_m, p_full[:m])
        smooth_m = np.asarray(fm.model.predict(fm.transform(x[:m])))
        n_differ += not np.array_equal(smooth_m, smooth_full[:m])
    assert n_differ >= 1


# --------------------------------------------------------------------------------------------------
# behaviour on a synthetic two-regime series


# Long calm stretches (400-800 days, +5 bp/day, 0.7 %/day) and stressed stretches (120-240 days,
# -20 bp/day, 1.8 %/day); 3,000 days, first fit after 1,250 usable days (several stressed episodes
# in the training window), annual refits.
RECOVERY = dict(calm_days=(400, 800), stress_days=(120, 240), drift=(0.0005, -0.002), vol=(0.007, 0.018))


def test_recovers_synthetic_regimes_and_switches_rarely():
    agree, model_sw, true_sw = [], [], []
    for seed in (0, 1, 2):
        dates, r, truth = two_regime_series(3000, seed, **RECOVERY)
        res = walk_forward_jump_model(dates, r, min_train_days=1250, refit="annual", n_init=2)
        live = res.fitted
        assert live.sum() > 1400
        agree.append(float(np.mean(res.state[live] == truth[live])))
        model_sw.append(switches_per_year(res.state, live))
        true_sw.append(switches_per_year(truth, live))
        # the bear state of every fit is the one with the lower mean (and here higher-vol) training return
        for f in res.fits:
            assert f.mean_return[1] < f.mean_return[0] and f.vol[1] > f.vol[0]
        # bear calls far above the base rate of stress (about 25 %), most stressed days caught
        bear, stressed = res.state[live] == 1, truth[live] == 1
        assert np.mean(stressed[bear]) >= 0.4 and np.mean(bear[stressed]) >= 0.6
    # agreement on every day after the first fit, detection lags included (the exit from the bear
    # state lags by weeks to months: the 60-day-halflife downside deviation decays slowly)
    assert min(agree) >= 0.65 and np.mean(agree) >= 0.8, agree
    # few switches: at most 2.5 a year, and at most 2.5 times the true rate
    assert max(model_sw) <= 2.5 and sum(model_sw) <= 2.5 * sum(true_sw), (model_sw, true_sw)


def test_fit_bookkeeping_and_prefit_rows(synth, full_run):
    dates, _, _ = synth
    res = full_run
    first_usable = 1 + EXAMPLE_V0_FEATURES.warmup  # leading NaN, then 60 warm-up returns
    assert res.first_usable == first_usable
    months = dates.astype("datetime64[M]").astype(np.int64)
    half = months // 6
    period_start = np.concatenate([[False], half[1:] != half[:-1]])
    expected = [i for i in range(len(dates)) if period_start[i] and i - first_usable >= MIN_TRAIN]
    got = [int(np.searchsorted(dates, f.fit_date)) for f in res.fits]
    assert got == expected
    i0 = expected[0]
    assert (res.state[:i0] == 0).all() and not res.fitted[:i0].any()
    assert np.isnan(res.bear_prob[:i0]).all() and np.isnat(res.fit_date[:i0]).all()
    assert res.fitted[i0:].all() and not np.isnan(res.bear_prob[i0:]).any()
    for f, i in zip(res.fits, expected):
        assert f.train_start == dates[first_usable] and f.train_end == dates[i - 1] < f.fit_date
        assert f.n_train == i - first_usable
    # the fit in force on each fitted day is the latest refit on or before it
    for t in range(i0, len(dates)):
        assert res.fit_date[t] == dates[max(i for i in expected if i <= t)]
    # discrete JM: the online probability is a hard 0/1 equal to the state
    assert np.array_equal(res.bear_prob[i0:], res.state[i0:].astype(float))


def test_deterministic(synth, full_run):
    dates, r, _ = synth
    again = walk_forward_jump_model(dates, r, **FAST)
    _assert_rows_equal(again, full_run, len(dates) - 1)
    assert again.fits == full_run.fits


def test_continuous_model_probabilities_are_online(synth):
    dates, r, _ = synth
    n = 900
    kw = dict(min_train_days=MIN_TRAIN, refit="annual", n_init=1, continuous=True, penalty=600.0)
    full = walk_forward_jump_model(dates[:n], r[:n], **kw)
    live = full.fitted
    p = full.bear_prob[live]
    assert ((p >= 0) & (p <= 1)).all()
    assert ((p > 0) & (p < 1)).any()  # graded, not only hard 0/1
    assert (p[full.state[live] == 1] >= 0.5).all() and (p[full.state[live] == 0] <= 0.5).all()
    k = int(np.flatnonzero(live)[0]) + 30
    trunc = walk_forward_jump_model(dates[: k + 1], r[: k + 1], **kw)
    _assert_rows_equal(trunc, full, k)


def test_warm_start_leaves_previous_fit_untouched(synth):
    _, r, _ = synth
    x, _ = jump_features(r)
    x, rr = x[61:], r[61:]
    first = fit_jump_model(x[:500], rr[:500], n_init=1)
    centers = first.model.centers_.copy()
    labels = np.asarray(first.model.labels_).copy()
    second = fit_jump_model(x[:700], rr[:700], n_init=1, previous=first)
    assert second.model is not first.model
    assert np.array_equal(first.model.centers_, centers) and np.array_equal(np.asarray(first.model.labels_), labels)
    assert len(np.asarray(second.model.labels_)) == 700
    with pytest.raises(ValueError):
        fit_jump_model(x[:500], rr[:500], sort_by="median")
    with pytest.raises(TypeError):
        fit_jump_model(x[:500], rr[:500], random_state=None)


# --------------------------------------------------------------------------------------------------
# features


def _ewma_closed_form(x: np.ndarray, halflife: float) -> np.ndarray:
    """y_t = sum_i w^i x_{t-i} / sum_i w^i over i = 0..t, w = 2^(-1/halflife)."""
    w = 0.5 ** (1.0 / halflife)
    out = np.empty(len(x))
    for t in range(len(x)):
        weights = w ** np.arange(t, -1, -1, dtype=np.float64)  # oldest .. newest
        out[t] = float(np.dot(weights, x[: t + 1]) / weights.sum())
    return out


def test_features_match_closed_form_ewma():
    rng = np.random.default_rng(3)
    r = 0.01 * rng.standard_normal(300)
    r[:2] = np.nan
    r[2:6] = [0.01, 0.02, 0.005, -0.01]  # first negative return on row 5
    x, names = jump_features(r, EXAMPLE_V0_FEATURES)
    assert names == ("ret_5", "dd_log_5", "sortino_5", "ret_20", "dd_log_20", "sortino_20", "ret_60", "dd_log_60", "sortino_60")
    assert np.isnan(x[:2]).all()
    tail = r[2:]
    neg_sq = np.where(tail < 0, tail, 0.0) ** 2
    for h in (5, 20, 60):
        m = _ewma_closed_form(tail, h)
        dd = np.sqrt(_ewma_closed_form(neg_sq, h))
        np.testing.assert_allclose(x[2:, names.index(f"ret_{h}")], m, rtol=1e-11, atol=1e-15)
        got_dd = x[2:, names.index(f"dd_log_{h}")]
        assert np.isneginf(got_dd[:3]).all()  # no negative return yet: DD = 0
        np.testing.assert_allclose(got_dd[3:], np.log(dd[3:]), rtol=1e-11)
        np.testing.assert_allclose(x[5:, names.index(f"sortino_{h}")], m[3:] / dd[3:], rtol=1e-10)
    # an independent pandas computation of the same quantity (adjust=True EWM)
    ref = pd.Series(tail).ewm(halflife=20).mean().to_numpy()
    np.testing.assert_allclose(x[2:, names.index("ret_20")], ref, rtol=1e-12)


def test_feature_presets_and_prefix_identity():
    rng = np.random.default_rng(5)
    r = 0.01 * rng.standard_normal(200)
    x, names = jump_features(r, SHU_YU_MULVEY_2024_FEATURES)
    assert names == ("dd_log_10", "sortino_20", "sortino_60")
    x2, _ = jump_features(r[:120], SHU_YU_MULVEY_2024_FEATURES)
    assert np.array_equal(x2, x[:120], equal_nan=True)
    with pytest.raises(ValueError):
        jump_features(np.array([np.nan, 0.01, np.nan, 0.02]))
    with pytest.raises(ValueError):
        FeatureSpec(return_halflives=(), dd_halflives=(), sortino_halflives=())


# --------------------------------------------------------------------------------------------------
# scalars


def test_scalar_mapping():
    s = np.array([0, 1, 1, 0, 1], dtype=np.int8)
    np.testing.assert_array_equal(jump_model_scalars(s, 0.55), [1.0, 0.55, 0.55, 1.0, 0.55])
    np.testing.assert_array_equal(jump_model_scalars(s, 0.0), [1.0, 0.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(jump_model_scalars(s, 0.5, bull_scalar=0.9), [0.9, 0.5, 0.5, 0.9, 0.5])
    np.testing.assert_allclose(jump_model_scalars(np.array([0, 1, 2]), 0.4, n_states=3), [1.0, 0.7, 0.4])
    assert jump_model_scalars(s, 0.55).dtype == np.float64
    with pytest.raises(ValueError):
        jump_model_scalars(s, 1.2)
    with pytest.raises(ValueError):
        jump_model_scalars(s, -0.1)
    with pytest.raises(ValueError):
        jump_model_scalars(np.array([0, 2]), 0.5)


def test_switches_per_year():
    s = np.array([0] * 100 + [1] * 100 + [0] * 53)
    assert math.isclose(switches_per_year(s), 2 * 252 / 252)
    assert switches_per_year(np.zeros(10, dtype=int)) == 0.0


# ------------------------------------------------------------------ the cached production path


def test_cached_walk_forward_equals_the_package_reference(synth, full_run):
    """Empty cache: every refit is fitted (warm starts from the previous record); full cache: no
    refit at all, online inference in numpy. Both equal the package's own walk-forward."""
    dates, r = synth[0], synth[1]
    state, fit_date, new, fits = jm.cached_walk_forward(dates, r, None, **FAST)
    assert len(new) == len(fits) == len(full_run.fits) > 0
    np.testing.assert_array_equal(state, full_run.state)
    same_fit = (fit_date == full_run.fit_date) | (np.isnat(fit_date) & np.isnat(full_run.fit_date))
    assert same_fit.all()
    again, _, none_new, _ = jm.cached_walk_forward(dates, r, new, **FAST)
    assert none_new == {}
    np.testing.assert_array_equal(again, full_run.state)


def test_cached_walk_forward_has_no_look_ahead_and_refits_only_what_changed(synth, full_run):
    dates, r = synth[0], synth[1]
    _, _, cache, fits = jm.cached_walk_forward(dates, r, None, **FAST)
    for k in (MIN_TRAIN + 150, 900, len(dates) - 40):
        part, _, new, _ = jm.cached_walk_forward(dates[: k + 1], r[: k + 1], cache, **FAST)
        assert new == {}  # every refit of a prefix is already cached
        np.testing.assert_array_equal(part, full_run.state[: k + 1])
    # restating one day invalidates exactly the refits trained on it (and nothing earlier)
    day = int(np.searchsorted(dates, np.datetime64(fits[1]["fit_date"]))) - 3
    restated = r.copy()
    restated[day] *= 1.5
    _, _, new, fits2 = jm.cached_walk_forward(dates, restated, cache, **FAST)
    assert [f["key"] in cache for f in fits2] == [True] + [False] * (len(fits2) - 1)
    assert len(new) == len(fits2) - 1


def test_online_states_many_equals_predict_online(synth):
    dates, r = synth[0], synth[1]
    x, _ = jump_features(r)
    rows = x[100:]
    fm = fit_jump_model(rows[:500], r[100:600], n_init=2)
    ref, _ = online_inference(fm, rows)
    got = jm.online_states_many(rows, [jump_fit.fit_record(fm)])[:, 0]
    np.testing.assert_array_equal(got, ref)


def test_a_fully_cached_walk_forward_never_imports_the_package(synth, tmp_path):
    """A daily run with every refit cached must not pay the package's (and scikit-learn's) import."""
    import json
    import subprocess
    import sys

    dates, r = synth[0], synth[1]
    _, _, cache, _ = jm.cached_walk_forward(dates, r, None, **FAST)
    np.save(tmp_path / "d.npy", dates)
    np.save(tmp_path / "r.npy", r)
    (tmp_path / "c.json").write_text(json.dumps(cache))
    code = ("import json, sys, numpy as np\nfrom alloc_assets.core.allocator import jump_model as jm\n"
            f"d = np.load({str(tmp_path / 'd.npy')!r}); r = np.load({str(tmp_path / 'r.npy')!r})\n"
            f"c = json.loads(open({str(tmp_path / 'c.json')!r}).read())\n"
            f"_, _, new, _ = jm.cached_walk_forward(d, r, c, min_train_days={MIN_TRAIN}, refit='semiannual', n_init=2)\n"
            "assert new == {}\nprint(sorted(m for m in sys.modules if m.startswith(('jumpmodels', 'sklearn'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_fast_fit_equals_the_package_fit_bit_for_bit(synth):
    dates, r = synth[0], synth[1]
    x, _ = jump_features(r)
    rows, rets = x[100:800], r[100:800]
    ref = jump_fit.fit_record(fit_jump_model(rows, rets, n_init=3, random_state=4))
    assert jump_fit.fast_fit_record(rows, rets, n_init=3, random_state=4) == ref
    # warm start: the previous fit's centres as one more start, as the package does with a warm model
    prev_fm = fit_jump_model(rows[:500], rets[:500], n_init=2)
    warm_ref = jump_fit.fit_record(fit_jump_model(rows, rets, n_init=2, previous=prev_fm))
    assert jump_fit.fast_fit_record(rows, rets, n_init=2, previous=jump_fit.fit_record(prev_fm)) == warm_ref


def test_warmup_returns_are_in_the_key_and_nan_centres_are_unreachable(synth):
    dates, r = synth[0], synth[1]
    _, _, cache, fits = jm.cached_walk_forward(dates, r, None, **FAST)
    restated = r.copy()
    restated[5] *= 2.0  # inside the features' warm-up, before the first usable row
    _, _, new, _ = jm.cached_walk_forward(dates, restated, cache, **FAST)
    assert len(new) == len(fits)  # every refit's training features changed: nothing stale is reused
    x, _ = jump_features(r)
    rows = x[100:400]
    fm = fit_jump_model(rows, r[100:400], n_init=2)
    rec = jump_fit.fit_record(fm)
    rec["centers"][0] = [float("nan")] * len(rec["centers"][0])
    fm.model.centers_ = np.asarray(rec["centers"])
    ref, _ = online_inference(fm, rows)
    np.testing.assert_array_equal(jm.online_states_many(rows, [rec])[:, 0], ref)
    assert (ref == 1).all()
