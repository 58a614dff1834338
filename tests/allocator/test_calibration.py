"""Stage 7: walk-forward regime calibration for behaviour (targets vs achieved)."""

import numpy as np
import pandas as pd
import pytest

from alloc_assets.core.allocator.calibration import TARGET_SHARES, calibration_summary, targets_markdown, walk_forward_calibration
from alloc_assets.core.allocator.regime_config import HysteresisConfig


def _inputs(n=252 * 8, seed=0, flip=False):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2001-01-01", periods=n).to_numpy().astype("datetime64[D]")
    score = rng.normal(size=n)
    score[:30] = np.nan  # not warm yet
    if flip:  # P(ELEVATED or worse) alternating around the thresholds every day
        q1 = np.where(np.arange(n) % 2 == 0, 0.9, 0.1)
    else:
        q1 = np.full(n, 0.1)
    probs = np.column_stack([1 - q1, q1, np.zeros(n), np.zeros(n)])
    labels = np.where(q1 > 0.5, "ELEVATED", "NORMAL")
    return dates, score, probs, labels, np.zeros((n, 3))


def test_thresholds_come_from_the_past_only_and_hit_the_shares():
    dates, score, probs, labels, lt = _inputs()
    rows = walk_forward_calibration(dates, score, probs, labels, lt)
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    starts = [int(np.flatnonzero(years == y)[0]) for y in np.unique(years)]
    eligible = [int(years[i]) for i in starts if np.isfinite(score[:i]).sum() >= 504]
    assert [r.year for r in rows] == eligible and len(rows) >= 4
    for r in rows:
        first = int(np.flatnonzero(years == r.year)[0])
        past = score[:first][np.isfinite(score[:first])]
        assert r.thresholds == pytest.approx(tuple(np.sort(past)[np.int64(np.floor(q * (past.size - 1)))] +
                                                   (q * (past.size - 1) % 1) * (np.sort(past)[min(int(np.floor(q * (past.size - 1))) + 1, past.size - 1)]
                                                                               - np.sort(past)[np.int64(np.floor(q * (past.size - 1)))])
                                                   for q in (0.7, 0.9, 0.98)))
        assert r.history_days == past.size
    # changing the future does not move a year's thresholds
    late = score.copy()
    late[-300:] += 10
    again = walk_forward_calibration(dates, late, probs, labels, lt)
    assert [r.thresholds for r in again[:-2]] == [r.thresholds for r in rows[:-2]]
    summary = calibration_summary(rows)
    got = list(summary["score_shares_achieved"].values())
    assert got == pytest.approx(list(TARGET_SHARES), abs=0.03)  # iid scores: the targets out of sample


def test_dwell_is_the_smallest_that_keeps_transitions_under_20_a_year():
    dates, score, probs, labels, lt = _inputs(flip=True)
    rows = walk_forward_calibration(dates, score, probs, labels, lt, HysteresisConfig(enter=0.6, exit=0.4))
    # a daily flip: a label held d days may change on the next day whose candidate differs, so the
    # label changes every d days for odd d and every d + 1 days for even d (the flip's parity)
    period = {d: d if d % 2 else d + 1 for d in range(1, 21)}
    expected = min(d for d in period if 252 / period[d] < 20)
    assert expected == 12 and {r.dwell for r in rows} == {expected}
    assert all(r.past_transitions_per_year < 20 for r in rows)
    assert calibration_summary(rows)["years_over_transition_target"] == [r.year for r in rows]  # the layer's own labels flip


def test_targets_markdown_rows():
    summary = {"target_shares": {"normal": 0.7, "crisis": 0.02}, "score_shares_achieved": {"normal": 0.6912, "crisis": 0.0251},
               "label_shares_achieved": {"normal": 0.7, "crisis": 0.01}, "target_transitions_per_year": 20,
               "label_transitions_per_year": 6.25}
    md = targets_markdown(summary, has_rows=True).split("\n")
    assert md[2] == "| normal | 70 % | 69.1 % | 70.0 % |"
    assert md[3] == "| crisis | 2 % | 2.5 % | 1.0 % |"
    assert md[4] == "| transitions a year | 20 | | 6.2 |"
    assert len(targets_markdown({}, has_rows=False).split("\n")) == 2
