"""Drawdown episodes (core.episodes): reference values by construction and from quantstats."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alloc_assets.core.report.episodes import (
    Episode,
    drawdown_episodes,
    episodes_table_md,
    find_drawdown_episodes,
    window_drawdown,
)


def _dates(n: int, start: str = "2020-01-06") -> np.ndarray:
    """Business days (Mon-Fri) from ``start``."""
    return np.busday_offset(np.datetime64(start, "D"), np.arange(n), roll="forward")


# Two drawdowns by construction:
#   idx   0    1    2    3    4    5     6    7
#   eq  1.1  1.2  1.0  0.9  1.1  1.25  1.0  0.8
# 1) peak 1 (1.2), trough 3 (0.9), recovery 5 (1.25 >= 1.2): depth 0.9/1.2 - 1 = -0.25
# 2) peak 5 (1.25), trough 7 (0.8), not recovered:            depth 0.8/1.25 - 1 = -0.36
TWO = np.array([1.1, 1.2, 1.0, 0.9, 1.1, 1.25, 1.0, 0.8])
# "scaled": window [1, 5] -> max 1.1 until idx 4, min 0.99 -> 0.99/1.1 - 1 = -0.1;
#           window [5, 7] -> 1.12, 1.08, 1.0                -> 1.0/1.12 - 1
SCALED = np.array([1.05, 1.1, 1.0, 0.99, 1.05, 1.12, 1.08, 1.0])
# "vol_cap" makes a new high inside window 1 (1.3 at idx 2), then falls to 1.0:
#           window [1, 5] -> 1.0/1.3 - 1 (not 0, the drop is measured from its own in-window high);
#           window [5, 7] -> 1.0, 0.9, 0.9 -> -0.1
VOL_CAP = np.array([1.0, 1.0, 1.3, 1.04, 1.0, 1.0, 0.9, 0.9])


def test_two_known_drawdowns_by_construction():
    d = _dates(TWO.size)
    assert find_drawdown_episodes(d, TWO) == [(1, 3, 5), (5, 7, None)]

    eps = drawdown_episodes(d, TWO, {"scaled": SCALED, "vol_cap": VOL_CAP}, np.ones(TWO.size))
    assert len(eps) == 2
    e1, e2 = eps
    assert (e1.peak_idx, e1.trough_idx, e1.recovery_idx) == (1, 3, 5)
    assert (e1.peak, e1.trough, e1.recovery) == (d[1], d[3], d[5])
    assert e1.depths["baseline"] == pytest.approx(0.9 / 1.2 - 1.0)
    assert e1.depths["scaled"] == pytest.approx(0.99 / 1.1 - 1.0)
    assert e1.depths["vol_cap"] == pytest.approx(1.0 / 1.3 - 1.0)
    assert e1.length_days == 4

    assert (e2.peak_idx, e2.trough_idx, e2.recovery_idx) == (5, 7, None)
    assert e2.recovery is None and not e2.recovered
    assert e2.depths["baseline"] == pytest.approx(-0.36)
    assert e2.depths["scaled"] == pytest.approx(1.0 / 1.12 - 1.0)
    assert e2.depths["vol_cap"] == pytest.approx(-0.1)
    assert e2.length_days == 2

    # The scalar never falls below 1: no de-risking, share undefined.
    for e in eps:
        assert e.first_derisk_date is None
        assert e.derisk_days_from_peak is None and e.derisk_days_from_trough is None
        assert e.derisk_before_trough_share is None


def test_drawdown_from_initial_wealth_on_day_zero():
    # Wealth 1.0 before day 0; day 0 already loses: the peak is the initial wealth (peak_idx -1).
    eq = np.array([0.9, 0.8, 1.0, 1.1])
    other = np.array([0.95, 0.9, 1.0, 1.0])
    d = _dates(eq.size)
    assert find_drawdown_episodes(d, eq) == [(-1, 1, 2)]
    (e,) = drawdown_episodes(d, eq, {"scaled": other}, np.array([0.5, 1.0, 1.0, 1.0]))
    assert e.peak == d[0] and e.trough == d[1] and e.recovery == d[2]
    assert e.depths["baseline"] == pytest.approx(-0.2)
    assert e.depths["scaled"] == pytest.approx(-0.1)   # from its initial wealth 1.0
    assert e.length_days == 3                           # 2 - (-1)
    assert e.first_derisk_date == d[0]
    assert e.derisk_days_from_peak == 1 and e.derisk_days_from_trough == -1
    assert e.derisk_before_trough_share == pytest.approx(1.0)


def test_derisk_offsets_and_share_by_hand():
    #   idx  0    1    2    3    4    5    6    7    8    9    10   11
    eq = np.array([1.0, 1.05, 1.1, 1.0, 0.95, 0.9, 0.8, 0.85, 0.95, 1.05, 1.12, 1.0])
    # peak 2 (1.1), trough 6 (0.8, depth -3/11), recovery 10 (1.12); idx 11 is a 10.7 % dip (no episode)
    s = np.array([0.7, 0.7, 1.0, 1.0 - 1e-12, 0.8, 0.8, 0.5, 0.5, 0.9, 1.0, 1.0, 0.5])
    # Before the peak (idx 0, 1) and after the recovery (idx 11) do not count. idx 3 is within 1e-9
    # of 1: not a de-risking date (its cut of 1e-12 is negligible in the share).
    # first de-risk: idx 4 -> 2 days after the peak, 2 days before the trough.
    # cuts in [2, 10]: 0.2 + 0.2 (idx 4, 5, before the trough) + 0.5 + 0.5 + 0.1 = 1.5 -> 0.4 / 1.5
    d = _dates(eq.size)
    (e,) = drawdown_episodes(d, eq, {}, s)
    assert (e.peak_idx, e.trough_idx, e.recovery_idx) == (2, 6, 10)
    assert e.depths == {"baseline": pytest.approx(0.8 / 1.1 - 1.0)}
    assert e.first_derisk_date == d[4]
    assert e.derisk_days_from_peak == 2
    assert e.derisk_days_from_trough == -2
    assert e.derisk_before_trough_share == pytest.approx(0.4 / 1.5, rel=1e-9)


def test_derisk_only_after_the_trough():
    eq = np.array([1.0, 1.2, 0.9, 0.8, 1.0, 1.3])   # peak 1, trough 3, recovery 5
    s = np.array([1.0, 1.0, 1.0, 1.0, 0.6, 0.6])    # cuts on idx 4 and 5 (recovery day counts)
    (e,) = drawdown_episodes(_dates(eq.size), eq, {}, s)
    assert (e.peak_idx, e.trough_idx, e.recovery_idx) == (1, 3, 5)
    assert e.derisk_days_from_peak == 3 and e.derisk_days_from_trough == 1
    assert e.derisk_before_trough_share == 0.0


def test_threshold_is_respected():
    d = _dates(5)
    eq14 = np.array([1.0, 1.1, 1.1 * 0.86, 1.0, 1.2])   # -14 %: not an episode at 15 %
    assert find_drawdown_episodes(d, eq14) == []
    assert drawdown_episodes(d, eq14, {}, np.ones(5)) == []
    assert find_drawdown_episodes(d, eq14, threshold=0.13) == [(1, 2, 4)]
    eq16 = np.array([1.0, 1.1, 1.1 * 0.84, 1.0, 1.2])   # -16 %: an episode
    (e,) = drawdown_episodes(d, eq16, {}, np.ones(5))
    assert e.depths["baseline"] == pytest.approx(-0.16)


def test_no_drawdown_gives_nothing():
    d = _dates(6)
    assert find_drawdown_episodes(d, np.array([1.0, 1.0, 1.1, 1.2, 1.2, 1.3])) == []
    assert drawdown_episodes(d, np.linspace(1.0, 2.0, 6), {"scaled": np.ones(6)}, np.ones(6)) == []
    assert find_drawdown_episodes(d[:0], np.array([])) == []
    assert episodes_table_md([]) == "No drawdown episodes."


def test_bad_inputs_raise():
    d = _dates(3)
    with pytest.raises(ValueError):
        find_drawdown_episodes(d, np.array([1.0, 0.9]))
    with pytest.raises(ValueError):
        find_drawdown_episodes(d, np.array([1.0, np.nan, 0.9]))
    with pytest.raises(ValueError):
        drawdown_episodes(d, np.ones(3), {"baseline": np.ones(3)}, np.ones(3))
    with pytest.raises(ValueError):
        drawdown_episodes(d, np.ones(3), {}, np.ones(2))


def test_to_json_and_markdown_table():
    d = _dates(TWO.size)
    s = np.array([1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 1.0, 1.0])
    eps = drawdown_episodes(d, TWO, {"vol_cap": VOL_CAP, "scaled": SCALED}, s)
    j = eps[0].to_json()
    json.dumps(j)   # plain types only
    assert j["peak"] == "2020-01-07" and j["trough"] == "2020-01-09" and j["recovery"] == "2020-01-13"
    assert j["recovery_idx"] == 5 and j["first_derisk_date"] == "2020-01-08"
    assert j["derisk_days_from_peak"] == 1 and j["derisk_days_from_trough"] == -1
    assert j["derisk_before_trough_share"] == pytest.approx(0.5)   # cuts 0.5 (idx 2) of 1.0 (idx 2, 3)
    assert set(j["depths"]) == {"baseline", "scaled", "vol_cap"}
    assert all(isinstance(v, float) for v in j["depths"].values())
    j2 = eps[1].to_json()
    assert j2["recovery"] is None and j2["recovery_idx"] is None and j2["derisk_before_trough_share"] is None

    md = episodes_table_md(eps).splitlines()
    assert len(md) == 4
    header = [c.strip() for c in md[0].strip("|").split("|")]
    assert header[:6] == ["peak", "trough", "recovery", "baseline depth", "scaled depth", "vol_cap depth"]
    row1 = [c.strip() for c in md[2].strip("|").split("|")]
    assert row1 == ["2020-01-07", "2020-01-09", "2020-01-13", "-25.0 %", "-10.0 %", "-23.1 %", "-1", "50.0 %"]
    row2 = [c.strip() for c in md[3].strip("|").split("|")]
    assert row2[2] == "not recovered" and row2[3] == "-36.0 %" and row2[4] == "-10.7 %"
    assert row2[-2:] == ["n/a", "n/a"]


def test_non_finite_other_curve_depth_is_nan_and_null_in_json():
    d = _dates(TWO.size)
    bad = SCALED.copy()
    bad[2] = np.nan
    e1, e2 = drawdown_episodes(d, TWO, {"scaled": bad}, np.ones(TWO.size))
    assert np.isnan(e1.depths["scaled"]) and e1.to_json()["depths"]["scaled"] is None
    assert e2.depths["scaled"] == pytest.approx(1.0 / 1.12 - 1.0)   # NaN lies outside window 2


@pytest.mark.parametrize("seed", [3, 6])
def test_matches_quantstats_drawdown_details_on_a_random_walk(seed):
    pd = pytest.importorskip("pandas")
    qs_stats = pytest.importorskip("quantstats.stats")

    rng = np.random.default_rng(seed)
    r = rng.normal(0.0004, 0.015, 2000)
    other_r = 0.6 * r + rng.normal(0.0, 0.004, r.size)
    idx = pd.bdate_range("2005-01-03", periods=r.size)
    dates = idx.values.astype("datetime64[D]")
    equity = np.cumprod(1.0 + r)
    other = np.cumprod(1.0 + other_r)

    # quantstats: wealth 1.0 before the first day (phantom baseline for returns); 'start' is the first
    # day under water (the day after our peak), 'valley' the lowest day, 'end' the last day under water
    # (the day before our recovery, or the last date when still under water); 'max drawdown' in percent.
    det = qs_stats.drawdown_details(qs_stats.to_drawdown_series(pd.Series(r, index=idx)))
    deep = det[det["max drawdown"] < -15.0].reset_index(drop=True)
    assert len(deep) >= 2

    pos = {str(x.date()): i for i, x in enumerate(idx)}
    eps = drawdown_episodes(dates, equity, {"scaled": other}, np.ones(r.size))
    assert len(eps) == len(deep)
    for e, (_, q) in zip(eps, deep.iterrows()):
        assert e.peak_idx + 1 == pos[q["start"]]
        assert str(e.trough) == q["valley"]
        if e.recovery_idx is None:
            assert q["end"] == str(idx[-1].date())
        else:
            assert e.recovery_idx - 1 == pos[q["end"]]
        assert 100.0 * e.depths["baseline"] == pytest.approx(q["max drawdown"], rel=1e-9)

        # the other book's depth over [peak, recovery-or-end], from quantstats on that window's
        # returns (its phantom baseline 1.0 plays the curve's value on the peak date)
        end = r.size - 1 if e.recovery_idx is None else e.recovery_idx
        w = np.concatenate(([1.0], other))[e.peak_idx + 1: end + 2]
        win_r = pd.Series(w[1:] / w[:-1] - 1.0, index=idx[e.peak_idx + 1: end + 1])
        ref = float(qs_stats.to_drawdown_series(win_r).min())
        assert e.depths["scaled"] == pytest.approx(ref, rel=1e-9, abs=1e-12)
        assert window_drawdown(other, e.peak_idx, end) == e.depths["scaled"]

    assert [tuple(x) for x in find_drawdown_episodes(dates, equity)] == [
        (e.peak_idx, e.trough_idx, e.recovery_idx) for e in eps]
    assert all(isinstance(e, Episode) for e in eps)


def test_a_cut_carried_into_the_episode_dates_from_when_it_was_made():
    """A scalar already below 1 at the peak is not a cut 'at the peak'; it dates
    from the first day of its spell (negative days from the peak)."""
    from alloc_assets.core.report.episodes import drawdown_episodes

    eq = np.array([1.0, 1.05, 1.1, 1.2, 1.0, 0.9, 0.95, 1.21])  # peak on day 3, trough day 5, recovery day 7
    dates = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-09"))
    scalar = np.array([1.0, 0.85, 0.85, 0.85, 0.85, 0.7, 1.0, 1.0])  # cut on day 1, before the peak
    (ep,) = drawdown_episodes(dates, eq, {}, scalar, 0.15)
    assert (ep.peak_idx, ep.trough_idx) == (3, 5)
    assert ep.derisk_days_from_peak == 1 - 3 and ep.derisk_days_from_trough == 1 - 5
    assert ep.scalar_at_peak == 0.85 and ep.to_json()["scalar_at_peak"] == 0.85
