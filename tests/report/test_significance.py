"""Stationary block bootstrap of metric deltas and the sub-period table.

References are independent of the code under test: ``alloc_assets.core.report.metrics`` and empyrical on
each resampled series, ``arch.bootstrap.StationaryBootstrap`` iterated by hand, closed forms
(identical books, the geometric block-length law), and plain slicing.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from alloc_assets.core.report import metrics as m
from alloc_assets.core.report import bootstrap as bootstrap_module
from alloc_assets.core.report.block_length import default_block_length
from alloc_assets.core.report.bootstrap import DELTA_METRICS, bootstrap_deltas, path_metrics, stationary_bootstrap_indices
from alloc_assets.core.report.significance_md import significance_table_md, subperiods_table_md
from alloc_assets.core.report.subperiods import subperiod_table

arch_bootstrap = pytest.importorskip("arch.bootstrap")
empyrical = pytest.importorskip("empyrical")

METRIC_FUNCS = {
    "sharpe": lambda r, rf: m.sharpe_ratio(r, rf),
    "max_drawdown": lambda r, rf: m.max_drawdown(r),
    "calmar": lambda r, rf: m.calmar_ratio(r),
}


def _books(t: int, seed: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.standard_t(5, t) * 0.009 + 3e-4
    return {
        "baseline": base,
        "scaled": 0.8 * base + rng.normal(1e-4, 0.002, t),
        "exposure_matched": 0.8 * base + rng.normal(0.0, 0.0005, t),
    }


PAIRS = [("scaled", "baseline"), ("scaled", "exposure_matched"), ("exposure_matched", "baseline")]


def _arch_indices(t: int, n: int, block: int, seed: int) -> np.ndarray:
    bs = arch_bootstrap.StationaryBootstrap(block, np.zeros(t), seed=np.random.default_rng(seed))
    rows = []
    for _ in bs.bootstrap(n):
        rows.append(np.array(bs.index, copy=True))
    return np.vstack(rows)


def _close(a, b, tol=1e-12) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if not (math.isfinite(a) and math.isfinite(b)):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


# ------------------------------------------------------------------------------------------------
# vectorised measures
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("risk_free", [0.0, 1.5e-4])
def test_path_metrics_equal_metrics_and_empyrical_on_resampled_draws(risk_free):
    r = _books(600)["scaled"]
    idx = stationary_bootstrap_indices(600, 4, block_length=7, seed=11)
    paths = r[idx]
    got = path_metrics(paths, risk_free)
    for k in range(paths.shape[0]):
        s = paths[k]
        for name, f in METRIC_FUNCS.items():
            assert _close(float(got[name][k]), f(s, risk_free)), (name, k)
        assert got["sharpe"][k] == pytest.approx(empyrical.sharpe_ratio(s, risk_free=risk_free), rel=1e-12, abs=1e-12)
        assert got["max_drawdown"][k] == pytest.approx(empyrical.max_drawdown(s), rel=1e-12, abs=1e-12)
        assert got["calmar"][k] == pytest.approx(empyrical.calmar_ratio(s), rel=1e-10, abs=1e-12)


def test_path_metrics_undefined_cases_follow_metrics():
    paths = np.array([
        [0.01, 0.01, 0.01, 0.01],  # zero dispersion, no drawdown
        [0.01, 0.02, 0.0, 0.03],  # no drawdown -> Calmar nan
        [-0.02, 0.01, 0.01, 0.01],  # first-day loss is a drawdown from wealth 1
        [-0.5, -0.6, -0.7, 0.2],  # deep loss
    ])
    got = path_metrics(paths)
    for k, s in enumerate(paths):
        for name, f in METRIC_FUNCS.items():
            assert _close(float(got[name][k]), float(f(s, 0.0))), (name, k)
    assert got["max_drawdown"][2] == pytest.approx(-0.02, abs=1e-15)
    assert math.isnan(got["calmar"][1]) and got["sharpe"][0] == math.inf


# ------------------------------------------------------------------------------------------------
# index law
# ------------------------------------------------------------------------------------------------


def test_indices_are_arch_stationary_bootstrap_stream():
    idx = stationary_bootstrap_indices(300, 7, block_length=6, seed=5)
    assert idx.shape == (7, 300) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, _arch_indices(300, 7, 6, 5))


def test_index_law_mean_block_length_and_circular_wrap():
    t, n, block = 2000, 200, 8
    idx = stationary_bootstrap_indices(t, n, block_length=block, seed=123)
    assert idx.min() >= 0 and idx.max() < t
    cont = idx[:, 1:] == (idx[:, :-1] + 1) % t
    # a day starts a new block w.p. p = 1/block, at a uniform day, which by chance (1/t) may be the next one
    p_break = (1.0 / block) * (1.0 - 1.0 / t)
    trials = cont.size
    breaks = trials - int(cont.sum())
    se = math.sqrt(trials * p_break * (1.0 - p_break))
    assert abs(breaks - trials * p_break) < 5.0 * se
    mean_block = idx.size / (n + breaks)  # every row starts with a block
    assert abs(mean_block - block) < 0.15 * block
    # complete interior blocks: geometric lengths with mean `block` and P(L = 1) = 1/block
    lengths = []
    for row in cont:
        starts = np.flatnonzero(~row) + 1
        lengths.extend(np.diff(starts).tolist())
    lengths = np.asarray(lengths)
    se_len = math.sqrt(block * (block - 1)) / math.sqrt(lengths.size)
    assert abs(lengths.mean() - block) < 5.0 * se_len
    assert abs(np.mean(lengths == 1) - 1.0 / block) < 5.0 * math.sqrt((1 / block) * (1 - 1 / block) / lengths.size)
    # circular: after the last day a block continues at day 0 (a moving-block bootstrap never would)
    at_end = idx[:, :-1] == t - 1
    assert at_end.sum() > 50
    assert np.mean(idx[:, 1:][at_end] == 0) > 0.7
    # each position's marginal is uniform over the days
    assert abs(idx.mean() - (t - 1) / 2) < 5.0 * (t / math.sqrt(12)) * math.sqrt(block / n / t * 2)


def test_default_block_length_rule():
    books = _books(1500)
    ar = np.empty(1500)
    rng = np.random.default_rng(0)
    e = rng.normal(0, 0.01, 1500)
    ar[0] = e[0]
    for i in range(1, 1500):
        ar[i] = 0.8 * ar[i - 1] + e[i]
    for first in (books["baseline"], ar):
        b_sb = float(arch_bootstrap.optimal_block_length(first)["stationary"].iloc[0])
        expected = max(5, math.ceil(b_sb))
        res = bootstrap_deltas({"first": first, "other": books["scaled"]}, [("other", "first")], n_draws=5)
        assert res["block_length"] == expected and res["block_length_rule"] == "politis_white_first_book"
    assert default_block_length(ar) > 5  # strong autocorrelation -> long blocks
    assert default_block_length(np.zeros(100)) == 5  # undefined estimate -> the floor


# ------------------------------------------------------------------------------------------------
# the bootstrap of the deltas
# ------------------------------------------------------------------------------------------------


def test_bootstrap_deltas_equal_a_hand_loop_over_arch_and_metrics():
    t, n, block, seed, level, rf = 250, 150, 6, 9, 0.8, 1e-4
    books = _books(t)
    res = bootstrap_deltas(books, PAIRS, n_draws=n, seed=seed, risk_free=rf, block_length=block, level=level)
    bs = arch_bootstrap.StationaryBootstrap(block, np.zeros(t), seed=np.random.default_rng(seed))
    per_draw = {name: {k: [] for k in METRIC_FUNCS} for name in books}
    for _ in bs.bootstrap(n):
        ix = bs.index
        for name, r in books.items():
            for k, f in METRIC_FUNCS.items():
                per_draw[name][k].append(f(r[ix], rf))
    assert res["n_draws"] == n and res["block_length"] == block and res["block_length_rule"] == "given"
    for p in res["pairs"]:
        a, b = p["a"], p["b"]
        assert p["label"] == f"{a} - {b}"
        for k, f in METRIC_FUNCS.items():
            d = np.asarray(per_draw[a][k]) - np.asarray(per_draw[b][k])
            d = d[np.isfinite(d)]
            s = p["deltas"][k]
            lo, hi = np.percentile(d, [10.0, 90.0])
            assert s["n_valid"] == d.size
            assert _close(s["point"], f(books[a], rf) - f(books[b], rf), 1e-11)
            assert _close(s["mean"], float(d.mean()), 1e-11)
            assert _close(s["std_error"], float(d.std(ddof=1)), 1e-10)
            assert _close(s["ci_lower"], float(lo), 1e-10) and _close(s["ci_upper"], float(hi), 1e-10)
            assert s["p_positive"] == pytest.approx(np.mean(d > 0), abs=1.5 / d.size)


def test_same_seed_bit_identical_different_seed_differs_chunking_irrelevant(monkeypatch):
    books = _books(400)
    one = bootstrap_deltas(books, PAIRS, n_draws=60, seed=4, block_length=5)
    two = bootstrap_deltas(books, PAIRS, n_draws=60, seed=4, block_length=5)
    other = bootstrap_deltas(books, PAIRS, n_draws=60, seed=5, block_length=5)
    assert json.dumps(one) == json.dumps(two)
    assert one["pairs"] != other["pairs"] and one["point"] == other["point"]
    monkeypatch.setattr(bootstrap_module, "_CHUNK_ELEMENTS", 400 * 7)  # chunks of 7 draws
    assert json.dumps(bootstrap_deltas(books, PAIRS, n_draws=60, seed=4, block_length=5)) == json.dumps(one)


def test_identical_books_give_exact_zero_deltas():
    r = _books(300)["baseline"]
    res = bootstrap_deltas({"baseline": r, "scaled": r.copy()}, [("scaled", "baseline")], n_draws=50, block_length=5)
    for s in res["pairs"][0]["deltas"].values():
        assert s["point"] == 0.0 and s["mean"] == 0.0 and s["std_error"] == 0.0
        assert s["ci_lower"] == 0.0 and s["ci_upper"] == 0.0 and s["p_positive"] == 0.0


def test_constant_daily_excess_is_significant():
    rng = np.random.default_rng(21)
    a = rng.normal(2e-4, 0.01, 500)
    b = a + 5e-4 + rng.normal(0.0, 1e-5, 500)  # +12.6 % a year, same risk
    res = bootstrap_deltas({"a": a, "b": b}, [("b", "a")], n_draws=300, seed=1, block_length=5)
    s = res["pairs"][0]["deltas"]["sharpe"]
    # closed form on the original series: excess mean / (almost the same) std * sqrt(252)
    approx = 5e-4 / np.std(a, ddof=1) * math.sqrt(252)
    assert s["point"] == pytest.approx(approx, rel=0.02)
    assert s["ci_lower"] > 0.0 and s["p_positive"] == 1.0 and s["n_valid"] == 300


def test_ci_contains_point_and_levels_nest():
    books = _books(500, seed=8)
    narrow = bootstrap_deltas(books, PAIRS, n_draws=400, seed=2, block_length=6, level=0.5)
    wide = bootstrap_deltas(books, PAIRS, n_draws=400, seed=2, block_length=6, level=0.95)
    for pn, pw in zip(narrow["pairs"], wide["pairs"]):
        for k in DELTA_METRICS:
            sn, sw = pn["deltas"][k], pw["deltas"][k]
            assert sw["ci_lower"] <= sw["point"] <= sw["ci_upper"], (pw["label"], k)
            assert sw["ci_lower"] <= sn["ci_lower"] <= sn["ci_upper"] <= sw["ci_upper"]
            assert sn["mean"] == sw["mean"] and 0.0 <= sw["p_positive"] <= 1.0
    assert narrow["level"] == 0.5 and wide["level"] == 0.95


def test_result_is_json_ready_and_validates_input():
    books = _books(200)
    res = bootstrap_deltas(books, PAIRS, n_draws=20, block_length=5)
    text = json.dumps(res, allow_nan=False)
    assert json.loads(text) == res
    assert res["method"] == "stationary_block_bootstrap" and res["books"] == list(books)
    assert set(res["point"]["scaled"]) == {"sharpe", "max_drawdown", "calmar"}
    with pytest.raises(KeyError):
        bootstrap_deltas(books, [("scaled", "nope")], n_draws=5, block_length=5)
    with pytest.raises(ValueError):
        bootstrap_deltas({"a": np.zeros(10), "b": np.zeros(9)}, [("a", "b")], n_draws=5, block_length=5)
    with pytest.raises(ValueError):
        bootstrap_deltas(books, PAIRS, n_draws=5, block_length=5, level=1.0)


def test_significance_markdown():
    res = bootstrap_deltas(_books(200), PAIRS, n_draws=20, block_length=5, level=0.9)
    md = significance_table_md(res)
    lines = md.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    assert len(table) == 2 + len(PAIRS) * 3
    assert "90 % CI" in table[0] and "20 draws" in lines[0] and "block length 5" in lines[0]
    assert sum("scaled - baseline" in ln for ln in table) == 3


# ------------------------------------------------------------------------------------------------
# sub-periods
# ------------------------------------------------------------------------------------------------


def test_subperiod_thirds_cover_window_once_with_metrics_values():
    t = 301
    dates = np.arange(np.datetime64("2001-01-01"), np.datetime64("2001-01-01") + t)
    books = _books(t)
    rows = subperiod_table(dates, books, n_parts=3, risk_free=1e-4)
    assert [r["n_days"] for r in rows] == [101, 100, 100]
    covered = []
    for r in rows:
        lo = int(np.flatnonzero(dates == np.datetime64(r["start"]))[0])
        hi = int(np.flatnonzero(dates == np.datetime64(r["end"]))[0]) + 1
        assert hi - lo == r["n_days"]
        covered.extend(range(lo, hi))
        for name, ret in books.items():
            s = ret[lo:hi]
            v = r["books"][name]
            assert v["cagr"] == m.cagr(s) and v["sharpe"] == m.sharpe_ratio(s, 1e-4)
            assert v["max_drawdown"] == m.max_drawdown(s) and v["calmar"] == m.calmar_ratio(s)
        assert set(r["delta_vs_baseline"]) == {"scaled", "exposure_matched"}
        d = r["delta_vs_baseline"]["scaled"]
        assert d["sharpe"] == r["books"]["scaled"]["sharpe"] - r["books"]["baseline"]["sharpe"]
    assert covered == list(range(t))  # no gap, no overlap, in order
    assert rows[0]["start"] == "2001-01-01" and rows[-1]["end"] == str(dates[-1])
    json.dumps(rows, allow_nan=False)


def test_subperiod_without_baseline_and_nan_to_none():
    dates = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-07"))
    rows = subperiod_table(dates, {"up": np.full(6, 0.01)}, n_parts=2)
    assert [r["n_days"] for r in rows] == [3, 3]
    assert rows[0]["delta_vs_baseline"] == {}
    assert rows[0]["books"]["up"]["calmar"] is None and rows[0]["books"]["up"]["max_drawdown"] == 0.0
    md = subperiods_table_md(rows)
    assert "n/a" in md and md.count("\n") == 3


def test_subperiods_markdown_lists_books_and_deltas():
    t = 90
    dates = np.arange(np.datetime64("2010-01-01"), np.datetime64("2010-01-01") + t)
    rows = subperiod_table(dates, _books(t), n_parts=3)
    table = subperiods_table_md(rows).splitlines()
    assert len(table) == 2 + 3 * (3 + 2)
    assert sum("scaled - baseline" in ln for ln in table) == 3
    assert table[2].startswith("| 1: 2010-01-01 to 2010-01-30 |")


def test_politis_white_block_length_equals_arch():
    from alloc_assets.core.report.block_length import politis_white_block_length

    rng = np.random.default_rng(11)
    for x in (rng.normal(size=2000), np.convolve(rng.normal(size=3000), np.ones(8) / 8, mode="same"),
              0.01 * rng.standard_t(4, size=8313)):
        ref = float(arch_bootstrap.optimal_block_length(x)["stationary"].iloc[0])
        assert politis_white_block_length(x) == pytest.approx(ref, rel=1e-12)
