"""Verdict rules, the report dict and its renderings, and the figures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alloc_assets.core.report import figures as fg
from alloc_assets.core.report import rendering as rd
from alloc_assets.core.report import report as rp
from alloc_assets.core.report import verdict as vd
from alloc_assets.core.portfolio.backtest import run_two_passes
from alloc_assets.core.report.metrics import METRIC_KEYS, drawdown_series

T = vd.VerdictThresholds()


def _metrics(**over):
    base = dict(cagr=0.10, ann_vol=0.16, sharpe=0.70, sortino=1.0, max_drawdown=-0.40, calmar=0.25,
                worst_month=-0.15, worst_quarter=-0.20, var_95=-0.015, cvar_95=-0.025, turnover=0.5)
    base.update(over)
    return base


def _evidence(scaled=None, scalars=None, conditions=None, per_year=5.0, mode="compute", controls=None):
    s = np.array([1.0] * 8 + [0.7, 0.55]) if scalars is None else np.asarray(scalars, dtype=float)
    c = np.array(["calm"] * 8 + ["crisis", "crisis"]) if conditions is None else np.asarray(conditions, dtype=object)
    return vd.VerdictEvidence(_metrics(), _metrics(**(scaled or {})), s, c, per_year, mode, controls or {})


MATCHED_WORSE = {"exposure_matched": _metrics(max_drawdown=-0.39, calmar=0.24)}


# ------------------------------------------------------------------ rules one by one


def test_maxdd_rules():
    assert vd.maxdd_reduced(_evidence({"max_drawdown": -0.37}), T).startswith("MaxDD reduced by 3.0 points")
    assert vd.maxdd_reduced(_evidence({"max_drawdown": -0.39}), T) is None
    assert "only 1.0 points" in vd.maxdd_reduction_off_target(_evidence({"max_drawdown": -0.39}), T)
    assert vd.maxdd_reduced(_evidence({"max_drawdown": -0.30}), T) is not None  # beyond target, Sharpe kept
    over = _evidence({"max_drawdown": -0.30, "sharpe": 0.5})
    assert vd.maxdd_reduced(over, T) is None and "over-de-risking" in vd.maxdd_reduction_off_target(over, T)
    assert vd.maxdd_worse(_evidence({"max_drawdown": -0.41}), T) == "MaxDD worse than baseline by 1.0 points"
    assert vd.maxdd_worse(_evidence(), T) is None


def test_tail_and_sharpe_rules():
    assert vd.tails_improved(_evidence({"worst_month": -0.10, "worst_quarter": -0.15}), T) is not None
    assert vd.tails_improved(_evidence({"worst_month": -0.10}), T) is None
    assert vd.sharpe_preserved(_evidence({"sharpe": 0.66}), T) == "Sharpe preserved (-0.04)"
    assert vd.sharpe_preserved(_evidence({"sharpe": 0.60}), T) is None
    assert vd.sharpe_dropped(_evidence({"sharpe": 0.45}), T) == "Sharpe down by 0.25 (more than 0.2)"
    assert vd.sharpe_dropped(_evidence({"sharpe": 0.55}), T) is None


def test_derisking_location_rules():
    stress = _evidence()
    assert "100 % of it" in vd.derisk_in_stress(stress, T)
    assert vd.derisk_in_calm(stress, T) is None
    calm = _evidence(scalars=[0.7, 0.7, 1, 1, 1, 1, 1, 1, 1, 0.85], conditions=["calm"] * 9 + ["crisis"])
    assert vd.derisk_in_calm(calm, T) == "de-risking in calm periods (80 % of it)"
    assert vd.derisk_in_stress(calm, T) is None
    # triggers in calm but not in crisis
    wrong = _evidence(scalars=[0.7, 1, 1, 1, 1, 1, 1, 1, 1, 1], conditions=["calm"] * 8 + ["crisis", "crisis"])
    assert vd.triggers_in_calm_not_crisis(wrong, T).startswith("triggers in normal periods but not in crises")
    assert vd.triggers_in_calm_not_crisis(_evidence(), T) is None
    # no de-risking at all: shares undefined, no rule fires
    none = _evidence(scalars=[1.0] * 10)
    assert vd.derisk_in_calm(none, T) is None and vd.derisk_in_stress(none, T) is None


def test_transition_and_thrashing_rules():
    assert vd.few_transitions(_evidence(per_year=12), T) is not None
    assert vd.many_transitions(_evidence(per_year=12), T) is None
    assert vd.many_transitions(_evidence(per_year=60), T) is not None
    assert vd.thrashing(_evidence(per_year=60), T) is None
    assert vd.thrashing(_evidence(per_year=150), T) == "thrashing: 150 regime transitions a year"
    flip = _evidence(scalars=[1, 0.85, 1, 0.85, 1, 0.85, 1, 0.85, 1, 0.85])
    assert vd.thrashing(flip, T).startswith("thrashing: the scalar changes at 100 %")
    episode = _evidence(scalars=[1, 1, 0.85, 0.7, 0.7, 0.85, 1, 1, 1, 1])
    assert vd.thrashing(episode, T) is None


def test_scalar_share_rules():
    assert vd.mostly_full_scalars(_evidence(), T) == "scalar at 1.0 at 80 % of rebalances"
    assert vd.mostly_below_one(_evidence(), T) is None
    low = _evidence(scalars=[0.85] * 7 + [1.0] * 3)
    assert vd.mostly_below_one(low, T) == "scalar below 1.0 at 70 % of rebalances"
    assert vd.mostly_full_scalars(low, T) is None


def test_return_enhancer_rule():
    assert vd.return_enhancer(_evidence(scalars=[1.0] * 9 + [1.2]), T).endswith("scalar up to 1.20 (> 1)")
    enh = _evidence({"cagr": 0.12, "ann_vol": 0.17, "max_drawdown": -0.40})
    assert "CAGR 2.0 points higher" in vd.return_enhancer(enh, T)
    assert vd.return_enhancer(_evidence({"cagr": 0.12, "ann_vol": 0.15}), T) is None


def test_verdict_status_precedence():
    better = {"max_drawdown": -0.37, "worst_month": -0.1, "worst_quarter": -0.15, "sharpe": 0.72, "calmar": 0.27}
    good = vd.verdict(_evidence(better, controls=MATCHED_WORSE))
    assert good["status"] == "good" and all(r.startswith(("good: ", "info: ")) for r in good["reasons"])
    assert good["reasons"][-1] == "info: vs exposure_matched: beats it (MaxDD -37.0 % vs -39.0 %, Calmar 0.270 vs 0.240)"
    # the same numbers without the control, or losing to it, cannot be good
    assert vd.verdict(_evidence(better))["status"] == "warning"
    matched_better = {"exposure_matched": _metrics(max_drawdown=-0.36, calmar=0.30)}
    lost = vd.verdict(_evidence(better, controls=matched_better))
    assert lost["status"] == "warning"
    assert ("warning: no better than holding less risk all the time (exposure_matched): MaxDD -37.0 % vs -36.0 %, "
            "Calmar 0.270 vs 0.300") in lost["reasons"]
    warn = vd.verdict(_evidence({"max_drawdown": -0.37, "sharpe": 0.4}))
    assert warn["status"] == "warning" and warn["reasons"][0].startswith("warning: Sharpe down")
    fail = vd.verdict(_evidence({"max_drawdown": -0.45, "sharpe": 0.4}, per_year=60))
    assert fail["status"] == "failure"
    levels = [r.split(":")[0] for r in fail["reasons"]]
    assert levels == sorted(levels, key=["failure", "warning", "good"].index)
    off = vd.verdict(_evidence(mode="off"))
    assert off["status"] == "warning" and "allocator off" in off["reasons"][0]


def test_a_late_governor_that_does_not_reduce_maxdd_is_never_good():
    """A governor that de-risks only after the trough: the same MaxDD as the baseline, every other
    sign good (Sharpe up, tails better, few transitions, beats every control on Calmar)."""
    late = {"max_drawdown": -0.40, "worst_month": -0.1, "worst_quarter": -0.15, "sharpe": 0.75, "calmar": 0.3}
    controls = {"exposure_matched": _metrics(max_drawdown=-0.42, calmar=0.2), "vol_cap": _metrics(max_drawdown=-0.35, calmar=0.31)}
    v = vd.verdict(_evidence(late, controls=controls))
    assert v["status"] == "warning"
    assert v["reasons"][0] == ("warning: allocator not protecting: MaxDD -40.0 % is the baseline's -40.0 % "
                               "(good needs a reduction of at least 2.0 points)")
    assert "info: vs vol_cap: does not beat it (MaxDD -40.0 % vs -35.0 %, Calmar 0.300 vs 0.310)" in v["reasons"]
    worse = vd.verdict(_evidence({**late, "max_drawdown": -0.41}, controls=controls))
    assert worse["status"] == "failure"


def test_market_conditions_flags_a_crash():
    rng = np.random.default_rng(0)
    r = rng.normal(4e-4, 0.008, 2000)
    r[1000:1040] = rng.normal(-0.012, 0.04, 40)  # crash: deep drawdown, high vol
    cond = vd.market_conditions(r)
    assert set(cond[1020:1040]) == {"crisis"}
    assert np.mean(cond[:900] == "calm") > 0.7


# ------------------------------------------------------------------ the report


@pytest.fixture(scope="module")
def two_pass():
    rng = np.random.default_rng(42)
    t_len, n = 1500, 6
    dates = np.busday_offset("2004-01-14", np.arange(t_len), roll="forward").astype("datetime64[D]")
    returns = rng.normal(3e-4, 0.012, (t_len, n))
    returns[700:760] += -0.006  # a bad stretch
    returns[0] = np.nan
    month = dates.astype("datetime64[M]")
    idx = np.flatnonzero(month[1:] != month[:-1])
    targets = np.full((idx.size, n), 1 / n)
    labels = np.array(["NORMAL"] * t_len, dtype=object)
    labels[650:690] = "ELEVATED"
    labels[690:760] = "CRISIS"
    labels[760:800] = "STRESS"
    scal_map = {"NORMAL": 1.0, "ELEVATED": 0.85, "STRESS": 0.7, "CRISIS": 0.55}
    scalars = np.array([1.0] + [scal_map[labels[i]] for i in idx[:-1]])
    base, scaled = run_two_passes(returns, idx, targets, scalars, "compute", cost_bps=5.0)
    return dict(dates=dates, idx=idx, base=base, scaled=scaled, scalars=scalars, labels=labels)


def _build(tp, mode="compute", **kw):
    return rp.build_report(tp["dates"], tp["base"], tp["scaled"], tp["dates"][tp["idx"]], tp["scalars"], tp["labels"],
                           profile="risk_parity", mode=mode, allocator_config={"floor": 0.55, "map": "default"}, **kw)


def test_report_has_exactly_the_contract_keys(two_pass):
    rep = _build(two_pass)
    assert tuple(rep) == rp.REPORT_KEYS
    assert set(rep["window"]) == {"start", "end"}
    assert set(rep["allocator"]) == {"mode", "config"}
    assert set(rep["metrics"]) == {"baseline", "scaled", "delta"}
    for block in rep["metrics"].values():
        assert tuple(block) == METRIC_KEYS
    assert tuple(rep["allocator_usage"]) == rp.USAGE_KEYS
    assert set(rep["regime_transitions"]) == {"count", "per_year", "matrix"}
    assert all(set(e) == {"date", "scalar", "regime"} for e in rep["top_derisk_events"])
    assert set(rep["verdict"]) == {"status", "reasons"}
    json.dumps(rep, allow_nan=False)  # strict JSON, no numpy types


def _walk(x):
    if isinstance(x, dict):
        for v in x.values():
            yield from _walk(v)
    elif isinstance(x, list):
        for v in x:
            yield from _walk(v)
    else:
        yield x


def test_report_values(two_pass):
    rep = _build(two_pass)
    assert all(type(v) in (int, float, str, bool, type(None)) for v in _walk(rep))
    assert rep["window"] == {"start": str(two_pass["dates"][0]), "end": str(two_pass["dates"][-1])}
    for k in METRIC_KEYS:
        assert rep["metrics"]["delta"][k] == pytest.approx(rep["metrics"]["scaled"][k] - rep["metrics"]["baseline"][k])
    s = two_pass["scalars"]
    u = rep["allocator_usage"]
    assert u["rebalances"] == s.size and u["scaled_rebalances"] == int(np.sum(s < 1))
    assert u["scalar_min"] == 0.55 and u["scalar_max"] == 1.0 and u["scalar_mean"] == pytest.approx(s.mean())
    dist = rep["regime_distribution"]
    assert list(dist)[:4] == list(rp.REGIMES)
    assert sum(d["days"] for d in dist.values()) == 1500
    assert dist["CRISIS"]["days"] == 70 and dist["CRISIS"]["fraction"] == pytest.approx(70 / 1500)
    tr = rep["regime_transitions"]
    assert tr["count"] == 4 and tr["per_year"] == pytest.approx(4 / (1500 / 252))
    assert sum(sum(row.values()) for row in tr["matrix"].values()) == 1499
    assert tr["matrix"]["ELEVATED"]["CRISIS"] == 1 and tr["matrix"]["NORMAL"]["NORMAL"] == (1500 - 150) - 2  # 1350 NORMAL days in two runs
    events = rep["top_derisk_events"]
    assert 0 < len(events) <= 10
    assert [e["scalar"] for e in events] == sorted(e["scalar"] for e in events)
    assert events[0]["scalar"] == 0.55 and events[0]["regime"] in rp.REGIMES
    assert rep["metrics"]["scaled"]["max_drawdown"] > rep["metrics"]["baseline"]["max_drawdown"]


def test_report_mode_off_and_bad_dates(two_pass):
    base = two_pass["base"]
    rep = rp.build_report(two_pass["dates"], base, base, two_pass["dates"][two_pass["idx"]], two_pass["scalars"],
                          two_pass["labels"], profile="risk_parity", mode="off")
    assert all(v == 0 for v in rep["metrics"]["delta"].values())
    assert rep["verdict"]["status"] == "warning" and rep["allocator"] == {"mode": "off", "config": {}}
    with pytest.raises(ValueError, match="scalar date 2030-01-01"):
        rp.build_report(two_pass["dates"], base, base, np.array(["2030-01-01"], dtype="datetime64[D]"), [0.9],
                        two_pass["labels"], profile="p", mode="compute")


def test_jsonable_handles_nan_and_numpy():
    out = rp.jsonable({"a": np.float64("nan"), "b": np.int32(3), "c": np.array([1.5, np.inf]), "d": np.datetime64("2020-01-02")})
    assert out == {"a": None, "b": 3, "c": [1.5, None], "d": "2020-01-02"}


def test_renderings(two_pass):
    rep = _build(two_pass)
    md = rd.report_markdown(rep, {"Equity": "equity.png"})
    assert "| metric | baseline | scaled | delta |" in md
    assert f"**Verdict: {rep['verdict']['status'].upper()}**" in md
    assert "![Equity](equity.png)" in md and "## Deepest de-risk events" in md
    table = rd.comparison_table(rep)
    assert len(table.splitlines()) == 2 + len(METRIC_KEYS)
    assert table.splitlines()[0].split() == ["metric", "baseline", "scaled", "delta"]
    summary = rd.run_summary(rep, ["computed"] * (len(two_pass["scalars"]) - 1) + ["missing_default"])
    assert "allocator mode     compute" in summary
    assert f"computed {len(two_pass['scalars']) - 1}, missing_default 1" in summary
    assert summary.count("  0.") == min(5, len(rep["top_derisk_events"]))


# ------------------------------------------------------------------ figures


def test_figures_render_png(two_pass, tmp_path):
    d, base, scaled = two_pass["dates"], two_pass["base"], two_pass["scaled"]
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=d.size)
    paths = fg.write_report_figures(tmp_path, d, base.equity, scaled.equity, d[two_pass["idx"]], two_pass["scalars"],
                                    two_pass["labels"], probs, floor=0.55)
    assert set(paths) == {"equity", "drawdown", "scalar", "regime_probabilities"}
    for p in paths.values():
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    with pytest.raises(ValueError, match="probabilities shape"):
        fg.regime_probability_figure(d, probs[:, :3])
    np.testing.assert_allclose(drawdown_series(np.array([0.9, 1.2, 0.6]), is_wealth=True), [-0.1, 0.0, -0.5])
