"""Regimes: HMM math against brute force, EM recovery, stress score against plain loops, hysteresis,
carry (incremental == batch), causality (including right after a refit), and the bundled-data
acceptance for both methods."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy.stats import norm

from alloc_assets.core.allocator.feature_config import StateFrame
from alloc_assets.core.allocator.features import encode
from alloc_assets.core.allocator.hmm import HMMParams, fit_hmm, forward_backward, forward_filter, log_emissions
from alloc_assets.core.market.panel import PricePanel
from alloc_assets.core.regime import PROBABILITY_COLUMNS, Regime
from alloc_assets.core.allocator.regime_config import (
    Cadence,
    HysteresisConfig,
    RegimeConfig,
    ScoreTerm,
    RegimeMethod,
    StressScoreConfig,
    Transform,
    refresh_mask,
)
from alloc_assets.core.allocator.regimes import compute_regimes, hysteresis_labels, regime_statistics
from alloc_assets.core.allocator.stress_score import histogram_thresholds, score_probabilities

SCORE = RegimeConfig(method=RegimeMethod.STRESS_SCORE)
HMM = RegimeConfig(method=RegimeMethod.HMM)


# --------------------------------------------------------------------------------------------------
# fixtures: the full history is computed once per module


@pytest.fixture(scope="module")
def state(panel) -> StateFrame:
    return encode(panel)[0]


@pytest.fixture(scope="module")
def score_run(state):
    return compute_regimes(state, SCORE)


@pytest.fixture(scope="module")
def hmm_run(state):
    return compute_regimes(state, HMM)


def _row(state: StateFrame, day: str) -> int:
    return int(np.searchsorted(state.dates, np.datetime64(day)))


# --------------------------------------------------------------------------------------------------
# HMM math


def _toy_params() -> HMMParams:
    return HMMParams(
        start=np.array([0.5, 0.3, 0.2]),
        trans=np.array([[0.90, 0.08, 0.02], [0.10, 0.85, 0.05], [0.05, 0.15, 0.80]]),
        means=np.array([[0.0, 0.0], [2.0, 1.0], [5.0, -1.0]]),
        variances=np.array([[1.0, 0.5], [1.0, 1.0], [2.0, 1.0]]),
    )


def _sample(params: HMMParams, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = params.n_states
    s = np.empty(n, dtype=int)
    s[0] = rng.choice(k, p=params.start)
    for t in range(1, n):
        s[t] = rng.choice(k, p=params.trans[s[t - 1]])
    x = params.means[s] + np.sqrt(params.variances[s]) * rng.standard_normal((n, params.means.shape[1]))
    return s, x


def _brute_force(params: HMMParams, x: np.ndarray):
    """Sum over every state path: likelihood, filtered and smoothed state probabilities."""
    n, k = len(x), params.n_states
    em = np.prod(norm.pdf(x[:, None, :], params.means[None], np.sqrt(params.variances)[None]), axis=2)
    filtered = np.zeros((n, k))
    for t in range(n):  # P(s_t | x_1..t): enumerate paths of length t + 1
        joint = np.zeros(k)
        for path in itertools.product(range(k), repeat=t + 1):
            p = params.start[path[0]] * em[0, path[0]]
            for u in range(1, t + 1):
                p *= params.trans[path[u - 1], path[u]] * em[u, path[u]]
            joint[path[-1]] += p
        filtered[t] = joint / joint.sum()
    smoothed = np.zeros((n, k))
    total = 0.0
    for path in itertools.product(range(k), repeat=n):
        p = params.start[path[0]] * em[0, path[0]]
        for u in range(1, n):
            p *= params.trans[path[u - 1], path[u]] * em[u, path[u]]
        total += p
        smoothed[np.arange(n), path] += p
    return math.log(total), filtered, smoothed / total


def test_forward_filter_and_smoother_match_brute_force():
    params = _toy_params()
    _, x = _sample(params, 6, seed=1)
    loglik, filtered, smoothed = _brute_force(params, x)
    f, ll_f = forward_filter(params, x)
    g, _, ll_b = forward_backward(params, x)
    np.testing.assert_allclose(f, filtered, atol=1e-12)
    np.testing.assert_allclose(g, smoothed, atol=1e-12)
    assert ll_f == pytest.approx(loglik, abs=1e-10) and ll_b == pytest.approx(loglik, abs=1e-10)


def test_log_emissions_match_scipy():
    params = _toy_params()
    _, x = _sample(params, 20, seed=2)
    ref = norm.logpdf(x[:, None, :], params.means[None], np.sqrt(params.variances)[None]).sum(axis=2)
    np.testing.assert_allclose(log_emissions(params, x), ref, atol=1e-12)


def test_blocked_forward_backward_matches_step_by_step_filter():
    params = _toy_params()
    _, x = _sample(params, 2000, seed=3)
    filtered, ll_f = forward_filter(params, x)
    gamma, xi_sum, ll_b = forward_backward(params, x)
    assert ll_b == pytest.approx(ll_f, rel=1e-12)
    # the last smoothed distribution is the last filtered one
    np.testing.assert_allclose(gamma[-1], filtered[-1], atol=1e-10)
    np.testing.assert_allclose(gamma.sum(axis=1), 1.0, atol=1e-12)
    assert xi_sum.sum() == pytest.approx(len(x) - 1, rel=1e-10)
    np.testing.assert_allclose(xi_sum.sum(axis=1), gamma[:-1].sum(axis=0), rtol=1e-9)


def test_em_recovers_known_parameters():
    true = _toy_params()
    s, x = _sample(true, 6000, seed=4)
    fitted, info = fit_hmm(x, n_states=3, max_iter=200, tol=1e-8)
    assert info.converged
    np.testing.assert_allclose(fitted.means, true.means, atol=0.12)
    np.testing.assert_allclose(fitted.variances, true.variances, rtol=0.15)
    np.testing.assert_allclose(fitted.trans, true.trans, atol=0.03)
    assert (np.diff(fitted.means[:, 0]) > 0).all(), "states are ordered by the mean of feature 0"
    again, _ = fit_hmm(x, n_states=3, max_iter=200, tol=1e-8)
    assert all(np.array_equal(a, b) for a, b in zip(fitted.to_dict().values(), again.to_dict().values()))


def test_em_tied_and_anchored_options():
    true = _toy_params()
    _, x = _sample(true, 3000, seed=5)
    anchor = np.array([-0.1, 2.1, 4.9])
    fitted, _ = fit_hmm(x, n_states=3, tied=True, anchor=anchor)
    np.testing.assert_array_equal(fitted.means[:, 0], anchor)
    assert np.allclose(fitted.variances, fitted.variances[0])


# --------------------------------------------------------------------------------------------------
# stress score and labels


def test_standardisation_and_contributions_match_plain_loop(state, score_run):
    frame, _ = score_run
    cfg = StressScoreConfig()
    for j, term in enumerate(cfg.terms):
        x = state.column(term.feature)
        x = np.log(x) if term.transform is Transform.LOG else x
        s0, s1, s2 = cfg.prior_days, cfg.prior_days * term.prior_mean, cfg.prior_days * (term.prior_sd**2 + term.prior_mean**2)
        for t in range(600):
            mean = s1 / s0
            sd = math.sqrt(s2 / s0 - mean * mean)
            z = min(max((x[t] - mean) / sd, -cfg.z_clip), cfg.z_clip)
            assert frame.contributions[t, j] == pytest.approx(term.weight * z, abs=1e-10)
            if state.warm[t]:
                s0, s1, s2 = s0 + 1, s1 + x[t], s2 + x[t] * x[t]
    np.testing.assert_allclose(frame.contributions.sum(axis=1), frame.score, atol=1e-12)


def test_thresholds_refresh_at_quarter_starts_from_past_scores_only(state, score_run):
    frame, _ = score_run
    cfg = StressScoreConfig()
    changes = np.flatnonzero((np.diff(frame.thresholds, axis=0) != 0).any(axis=1)) + 1
    starts = np.flatnonzero(refresh_mask(frame.dates, Cadence.QUARTERLY))
    assert set(changes) <= set(starts)
    first_data_threshold = None
    for r in starts[::7]:
        past = frame.score[:r][state.warm[:r]]
        if len(past) < cfg.min_history_days:
            np.testing.assert_allclose(frame.thresholds[r], frame.thresholds[0])
            continue
        first_data_threshold = r
        # the ceil(q n)-th past score, read at the centre of its histogram bin
        ref = np.quantile(past, cfg.quantiles, method="inverted_cdf")
        np.testing.assert_allclose(frame.thresholds[r], ref, atol=cfg.histogram_bin / 2 + 1e-12)
    assert first_data_threshold is not None


def test_histogram_quantiles_match_numpy():
    cfg = StressScoreConfig()
    rng = np.random.default_rng(0)
    scores = rng.normal(0.2, 0.7, 5000)
    lo = -cfg.z_clip * sum(abs(t.weight) for t in cfg.terms)
    nbins = int(math.ceil(-2 * lo / cfg.histogram_bin)) + 1
    hist = np.bincount(np.floor((scores - lo) / cfg.histogram_bin).astype(int), minlength=nbins)
    ref = np.quantile(scores, cfg.quantiles, method="inverted_cdf")
    np.testing.assert_allclose(histogram_thresholds(hist, cfg), ref, atol=cfg.histogram_bin / 2 + 1e-12)


def test_score_probabilities_are_an_ordered_logit():
    tau = np.array([[0.5, 1.3, 2.0]] * 5)
    s = np.array([-3.0, 0.5, 1.0, 2.0, 9.0])
    p = score_probabilities(s, tau, 0.25)
    assert ((p >= 0) & (p <= 1)).all()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    width = 0.25 * 0.8
    np.testing.assert_allclose(p[:, 3], 1 / (1 + np.exp(-(s - 2.0) / width)), atol=1e-12)
    assert p[1, 0] == pytest.approx(0.5) and p[4].argmax() == 3 and p[0].argmax() == 0


def test_hysteresis_enter_exit_and_dwell():
    cfg = HysteresisConfig(enter=0.6, exit=0.4, min_dwell_days=3)

    def probs_from_q1(q1):  # P(ELEVATED or worse) = q1, nothing beyond ELEVATED
        return np.column_stack([1 - np.asarray(q1), q1, np.zeros(len(q1)), np.zeros(len(q1))])

    q1 = [0.1, 0.55, 0.65, 0.5, 0.45, 0.41, 0.39, 0.39, 0.7, 0.7, 0.2, 0.2, 0.2, 0.2]
    labels, carry = hysteresis_labels(probs_from_q1(q1), cfg)
    # 0.55 < enter: stays NORMAL; 0.65 enters; 0.5, 0.45, 0.41 >= exit: stays; 0.39 leaves (after 4
    # days); 0.7 on row 8 is blocked (2 days at NORMAL), allowed on row 9 (3 days); the drop to 0.2
    # on row 10 waits until row 12
    assert labels.tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]
    assert carry == {"label": 0, "dwell": 2}
    # split in two with the carry: the same labels
    first, mid = hysteresis_labels(probs_from_q1(q1[:7]), cfg)
    second, _ = hysteresis_labels(probs_from_q1(q1[7:]), cfg, mid)
    assert np.concatenate([first, second]).tolist() == labels.tolist()
    # a straight jump to CRISIS, and a step down through STRESS when only P(stress or worse) holds
    p = np.array([[0.0, 0.0, 0.1, 0.9]] * 3 + [[0.2, 0.3, 0.45, 0.05]] * 4)
    labels, _ = hysteresis_labels(p, cfg)
    assert labels.tolist() == [3, 3, 3, 2, 2, 2, 2]



def test_dwell_never_delays_an_escalation_into_crisis():
    cfg = HysteresisConfig(enter=0.6, exit=0.4, min_dwell_days=5)
    elevated = [0.2, 0.7, 0.05, 0.05]  # P(ELEVATED or worse) = 0.8: enters ELEVATED
    crisis = [0.0, 0.1, 0.2, 0.7]  # P(CRISIS) = 0.7 >= enter
    stress = [0.1, 0.2, 0.65, 0.05]  # P(STRESS or worse) = 0.7, P(CRISIS) < exit
    p = np.array([elevated, crisis, crisis, stress, stress])
    labels, _ = hysteresis_labels(p, cfg)
    # day 1 enters CRISIS one day after entering ELEVATED; leaving CRISIS still waits for the dwell
    assert labels.tolist() == [1, 3, 3, 3, 3]
    # an escalation to STRESS (not CRISIS) still waits for the dwell
    p = np.array([elevated, stress, stress])
    assert hysteresis_labels(p, cfg)[0].tolist() == [1, 1, 1]


def test_exogenous_score_term_missing_values_contribute_nothing(panel):
    vix = np.full(800, np.nan)
    vix[300:] = np.linspace(12.0, 40.0, 500)
    st, _ = encode(panel.slice(0, 800), extra={"vix": vix})
    terms = StressScoreConfig().terms + (ScoreTerm("vix", 0.1, Transform.LOG, prior_mean=math.log(20.0), prior_sd=0.3),)
    cfg = RegimeConfig(score=StressScoreConfig(terms=terms))
    frame, carry = compute_regimes(st, cfg)
    assert (frame.contributions[:300, -1] == 0).all() and (frame.contributions[301:, -1] != 0).all()
    assert np.isfinite(frame.probs).all()
    json.dumps(carry)


def test_regime_statistics_counts():
    dates = np.arange(10).astype("datetime64[D]")
    stats = regime_statistics(dates, np.array([0, 0, 1, 1, 2, 1, 0, 0, 0, 3]))
    assert stats["transitions"] == 5
    assert stats["days"] == {"NORMAL": 5, "ELEVATED": 3, "STRESS": 1, "CRISIS": 1}
    assert stats["matrix"][1][2] == 1 and stats["matrix"][0][3] == 1
    assert stats["per_year"] == pytest.approx(5 / (10 / 252))


def test_refresh_mask_is_anchored_to_the_calendar():
    d = np.array(["2008-06-27", "2008-06-30", "2008-07-01", "2008-07-02", "2009-01-02"], dtype="datetime64[D]")
    assert refresh_mask(d, Cadence.SEMIANNUAL).tolist() == [False, False, True, False, True]
    assert refresh_mask(d[2:], Cadence.SEMIANNUAL, previous_date="2008-06-30").tolist() == [True, False, True]
    assert refresh_mask(d[3:], Cadence.QUARTERLY, previous_date="2008-07-01").tolist() == [False, True]


# --------------------------------------------------------------------------------------------------
# both methods: probabilities, carry, causality


@pytest.mark.parametrize("run", ["score_run", "hmm_run"])
def test_probabilities_are_distributions(run, request):
    frame, carry = request.getfixturevalue(run)
    assert ((frame.probs >= 0) & (frame.probs <= 1)).all()
    np.testing.assert_allclose(frame.probs.sum(axis=1), 1.0, atol=1e-9)
    assert set(np.unique(frame.label)) <= {int(r) for r in Regime}
    json.dumps(carry)  # the carry is JSON-serialisable
    df = frame.to_pandas()
    assert list(df.columns[:6]) == ["date", "regime", *PROBABILITY_COLUMNS]


def test_hmm_walk_forward_bookkeeping(state, hmm_run, score_run):
    frame, carry = hmm_run
    fitted = frame.source == "hmm"
    first = int(np.argmax(fitted))
    assert (frame.source[:first] == "hmm_prior").all() and fitted[first:].all()
    # before the first fit the HMM method reports the stress-score probabilities
    assert np.array_equal(frame.probs[:first], score_run[0].probs[:first])
    # fits only on the first trading day of January and July, with >= min_history_days warm days before
    fit_days = np.unique(frame.fit_dates[fitted])
    months = (fit_days.astype("datetime64[M]").astype(int) % 12) + 1
    assert set(months) == {1, 7}
    assert all(refresh_mask(state.dates, Cadence.SEMIANNUAL)[_row(state, str(d))] for d in fit_days)
    assert state.warm[: _row(state, str(fit_days[0]))].sum() >= HMM.hmm.min_history_days
    assert carry["hmm"]["fit_date"] == str(fit_days[-1])
    means = np.array(carry["hmm"]["params"]["means"])
    assert (np.diff(means[:, 0]) > 0).all(), "states ordered by volatility"


def _incremental(state: StateFrame, config: RegimeConfig, start: int, stop: int, full_history: bool):
    """Batch up to ``start``, then one day at a time (carry through JSON) up to ``stop``."""
    frame, carry = compute_regimes(state.slice(0, start), config)
    probs, labels = [frame.probs], [frame.label]
    for i in range(start, stop):
        carry = json.loads(json.dumps(carry))
        chunk = state.slice(0, i + 1) if full_history else state.slice(i, i + 1)
        frame, carry = compute_regimes(chunk, config, carry)
        probs.append(frame.probs)
        labels.append(frame.label)
    return np.vstack(probs), np.concatenate(labels), carry


def test_incremental_equals_batch_stress_score(state, score_run):
    frame, carry = score_run
    # the stretch crosses quarter starts (threshold refreshes) and the 2008 crisis
    start, stop = _row(state, "2008-08-01"), _row(state, "2009-01-20")
    probs, labels, carry_inc = _incremental(state, SCORE, start, stop, full_history=False)
    assert np.abs(probs - frame.probs[:stop]).max() <= 1e-12
    assert np.array_equal(labels, frame.label[:stop])
    assert carry_inc["score"]["thresholds"] == compute_regimes(state.slice(0, stop), SCORE)[1]["score"]["thresholds"]


def test_incremental_equals_batch_hmm_across_refits(state, hmm_run):
    frame, _ = hmm_run
    # crosses the refits of 2008-07-01 and 2009-01-02
    start, stop = _row(state, "2008-06-10"), _row(state, "2009-01-10")
    probs, labels, carry = _incremental(state, HMM, start, stop, full_history=True)
    assert np.abs(probs - frame.probs[:stop]).max() <= 1e-12
    assert np.array_equal(labels, frame.label[:stop])
    assert carry["hmm"]["fit_date"] == "2009-01-02"
    with pytest.raises(ValueError, match="whole history"):
        compute_regimes(state.slice(stop, stop + 1), HMM, carry)


@pytest.mark.parametrize("day", ["1995-06-15", "2008-07-01", "2008-07-02"])
def test_no_look_ahead_truncation(state, score_run, hmm_run, day):
    """Rows at or before a date do not change when the data after it is removed (2008-07-01 is a
    refit date of the HMM; 2008-07-02 the day after)."""
    cut = _row(state, day) + 1
    for config, (frame, _) in ((SCORE, score_run), (HMM, hmm_run)):
        short, _ = compute_regimes(state.slice(0, cut), config)
        assert np.array_equal(short.probs, frame.probs[:cut])
        assert np.array_equal(short.label, frame.label[:cut])
        assert np.array_equal(short.score, frame.score[:cut])


def test_no_look_ahead_perturbed_prices_after_a_refit(panel, state, score_run, hmm_run):
    """End to end from prices: a crash injected after the day following a refit changes nothing up to it."""
    cut = _row(state, "2008-07-02") + 1
    close, bench = panel.close.copy(), panel.benchmark.copy()
    close[cut:] *= np.exp(np.random.default_rng(7).normal(0, 0.04, close[cut:].shape))
    bench[cut:] *= 0.6
    shocked_state, _ = encode(PricePanel(panel.dates, panel.symbols, close, bench))
    for config, (frame, _) in ((SCORE, score_run), (HMM, hmm_run)):
        shocked, _ = compute_regimes(shocked_state, config)
        assert np.array_equal(shocked.probs[:cut], frame.probs[:cut])
        assert np.array_equal(shocked.label[:cut], frame.label[:cut])
        assert not np.array_equal(shocked.probs[cut:], frame.probs[cut:])


def test_deterministic(state, score_run):
    frame, carry = score_run
    again, carry2 = compute_regimes(state, SCORE)
    assert np.array_equal(again.probs, frame.probs) and carry2 == carry
    short = state.slice(0, _row(state, "1993-01-10"))
    a, ca = compute_regimes(short, HMM)
    b, cb = compute_regimes(short, HMM)
    assert np.array_equal(a.probs, b.probs) and ca == cb and ca["hmm"]["n_fits"] >= 1


def test_carry_must_match_the_method(state, score_run):
    _, carry = score_run
    with pytest.raises(ValueError, match="does not match"):
        compute_regimes(state, HMM, carry)


# --------------------------------------------------------------------------------------------------
# acceptance on the bundled data with the defaults


def _share(frame, start: str, end: str, cond) -> float:
    m = (frame.dates >= np.datetime64(start)) & (frame.dates <= np.datetime64(end))
    return float(cond(frame.label[m]).mean())


@pytest.mark.parametrize("run", ["score_run", "hmm_run"])
def test_acceptance_on_bundled_data(run, request):
    frame, _ = request.getfixturevalue(run)
    stats = regime_statistics(frame.dates, frame.label)
    gfc = _share(frame, "2008-10-01", "2008-12-31", lambda l: l >= Regime.STRESS)
    covid = _share(frame, "2020-03-09", "2020-04-09", lambda l: l >= Regime.STRESS)
    calm = _share(frame, "2017-01-01", "2017-12-31", lambda l: l == Regime.NORMAL)
    print(
        f"\n{run}: share {json.dumps({k: round(v, 3) for k, v in stats['share'].items()})}, "
        f"transitions/year {stats['per_year']:.2f}, 2008Q4 stress+ {gfc:.2f}, 2020 stress+ {covid:.2f}, 2017 normal {calm:.2f}"
    )
    assert gfc > 0.5 and covid > 0.5 and calm > 0.5
    assert stats["per_year"] < 20
    # occupation near the 70/20/8/2 target (not strict): mostly calm, crisis rare
    assert stats["share"]["NORMAL"] > 0.45 and stats["share"]["CRISIS"] < 0.10
