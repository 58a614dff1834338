"""Risk scalars and applied scalars: reference loops, carry, the one-rebalance lag, overrides."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alloc_assets.core.market.calendar import RebalanceFrequency, sessions_between
from alloc_assets.core.allocator.scalars import (
    SOURCE_COMPUTED,
    SOURCE_MISSING,
    SOURCE_OVERRIDE,
    ApplyConfig,
    ScalarConfig,
    ScalarOverride,
    apply_config_scalars,
    applied_scalars,
    expected_scalar,
    risk_scalars,
)

DATES = sessions_between("2019-11-01", "2020-06-30").to_numpy().astype("datetime64[D]")


def _random_probs(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # regimes that drift: a random walk on logits, so the expected scalar moves fast at times
    logits = np.cumsum(rng.normal(0, 0.8, (n, 4)), axis=0)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


EXP = dict(basis="expected", quantum=0.0, deadband=0.0)  # the raw expected scalar


def _reference(probs, cfg: ScalarConfig, vol=None, prev=1.0, labels=None):
    """Plain loop over days, written from the documented rule."""
    out = []
    floor = min(cfg.multipliers) if cfg.floor is None else cfg.floor
    for t, p in enumerate(probs):
        if cfg.basis == "label":
            e = cfg.multipliers[int(labels[t])]
        else:
            e = sum(pk * mk for pk, mk in zip(p, cfg.multipliers))
            if cfg.quantum:
                e = 1.0 if e >= 1 - cfg.deadband else min(round(e / cfg.quantum) * cfg.quantum, 1.0)
        if cfg.vol_target is not None and vol is not None and vol[t] > 0:
            e = min(e, cfg.vol_target / vol[t])
        e = min(max(e, floor), 1.0)
        if cfg.max_step is not None:
            e = min(max(e, prev - cfg.max_step), prev + cfg.max_step)
        out.append(e)
        prev = e
    return np.array(out)


def test_expected_scalar_is_the_probability_weighted_map():
    p = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0.25, 0.25, 0.25, 0.25]], dtype=float)
    np.testing.assert_allclose(expected_scalar(p), [1.0, 0.55, (1 + 0.85 + 0.7 + 0.55) / 4])


@pytest.mark.parametrize(
    "cfg",
    [
        ScalarConfig(),
        ScalarConfig(basis="expected"),
        ScalarConfig(max_step=None, **EXP),
        ScalarConfig(vol_target=0.12, max_step=0.05, **EXP),
        ScalarConfig(multipliers=(1.0, 0.9, 0.6, 0.3), floor=0.4, max_step=0.1, **EXP),
        ScalarConfig(multipliers=(1.0, 0.9, 0.6, 0.3), floor=0.4, max_step=0.1),
    ],
)
def test_risk_scalars_match_reference_loop(cfg):
    probs = _random_probs(len(DATES))
    labels = probs.argmax(axis=1)
    vol = np.random.default_rng(1).uniform(0.05, 0.6, len(DATES))
    series, carry = risk_scalars(DATES, probs, cfg, realised_vol=vol, labels=labels)
    ref = _reference(probs, cfg, vol if cfg.vol_target else None, labels=labels)
    np.testing.assert_allclose(series.risk_scalar, ref, atol=1e-12)
    floor = cfg.effective_floor
    assert ((series.risk_scalar >= floor - 1e-15) & (series.risk_scalar <= 1.0)).all()
    if cfg.max_step is not None:
        steps = np.abs(np.diff(np.concatenate([[1.0], series.risk_scalar])))
        assert steps.max() <= cfg.max_step + 1e-12
        assert series.step_limited.any()
    assert carry["previous"] == series.risk_scalar[-1] and carry["last_date"] == str(DATES[-1])


def test_vol_cap_binds_and_floor_wins():
    probs = np.tile([1.0, 0, 0, 0], (5, 1))
    vol = np.array([0.10, 0.20, 0.40, np.nan, 0.0])
    series, _ = risk_scalars(DATES[:5], probs, ScalarConfig(vol_target=0.10, max_step=None), realised_vol=vol,
                             labels=np.zeros(5, dtype=int))
    np.testing.assert_allclose(series.risk_scalar, [1.0, 0.5 if 0.5 >= 0.55 else 0.55, 0.55, 1.0, 1.0])
    np.testing.assert_allclose(series.vol_cap[:3], [1.0, 0.5, 0.25])
    assert np.isnan(series.vol_cap[3:]).all()
    with pytest.raises(ValueError, match="realised_vol"):
        risk_scalars(DATES[:5], probs, ScalarConfig(vol_target=0.1), labels=np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="labels"):
        risk_scalars(DATES[:5], probs, ScalarConfig())


def test_risk_scalars_incremental_equals_batch():
    probs = _random_probs(len(DATES), seed=3)
    labels = probs.argmax(axis=1)
    batch, carry_batch = risk_scalars(DATES, probs, labels=labels)
    carry, parts = None, []
    for i in range(len(DATES)):
        carry = None if carry is None else json.loads(json.dumps(carry))
        s, carry = risk_scalars(DATES[i : i + 1], probs[i : i + 1], carry=carry, labels=labels[i : i + 1])
        parts.append(s.risk_scalar)
    assert np.array_equal(np.concatenate(parts), batch.risk_scalar)
    assert carry == carry_batch
    with pytest.raises(ValueError, match="not after"):
        risk_scalars(DATES[:3], probs[:3], carry=carry, labels=labels[:3])


def test_applied_scalar_is_the_one_computed_at_the_previous_rebalance():
    values = np.linspace(0.6, 1.0, len(DATES))
    out = applied_scalars(DATES, values, "monthly")
    idx = pd.DatetimeIndex(DATES)
    month_ends = idx.to_series().groupby([idx.year, idx.month]).max()
    assert list(out["date"]) == list(month_ends)
    assert out["source"].iloc[0] == SOURCE_MISSING and out["risk_scalar_applied"].iloc[0] == 1.0
    assert pd.isna(out["source_date"].iloc[0])
    for k in range(1, len(out)):
        prev = out["date"].iloc[k - 1]
        assert out["source_date"].iloc[k] == prev
        assert out["source"].iloc[k] == SOURCE_COMPUTED
        assert out["risk_scalar_applied"].iloc[k] == values[idx.get_loc(prev)]
    # never the scalar of the rebalance date itself
    own = values[[idx.get_loc(d) for d in out["date"]]]
    assert not np.allclose(out["risk_scalar_applied"].to_numpy()[1:], own[1:])


@pytest.mark.parametrize("frequency", [RebalanceFrequency.DAILY, RebalanceFrequency.WEEKLY])
def test_applied_scalars_other_frequencies(frequency):
    values = np.random.default_rng(5).uniform(0.55, 1.0, len(DATES))
    out = applied_scalars(DATES, values, frequency, apply_missing_scalar_as=0.8)
    assert out["risk_scalar_applied"].iloc[0] == 0.8
    idx = pd.DatetimeIndex(DATES)
    src = [idx.get_loc(d) for d in out["source_date"].iloc[1:]]
    np.testing.assert_array_equal(out["risk_scalar_applied"].to_numpy()[1:], values[src])
    if frequency is RebalanceFrequency.DAILY:
        np.testing.assert_array_equal(out["risk_scalar_applied"].to_numpy()[1:], values[:-1])


def test_overrides_missing_values_and_no_look_ahead():
    values = np.linspace(0.6, 1.0, len(DATES))
    values[np.searchsorted(DATES, np.datetime64("2020-01-31"))] = np.nan
    overrides = [
        ScalarOverride("2020-03-01", "2020-04-30", 0.5, "desk call"),
        ("2020-04-01", "2020-04-30", 0.6, "later wins"),
    ]
    out = applied_scalars(DATES, values, overrides=overrides).set_index("date")
    assert out.loc["2020-02-28", "source"] == SOURCE_MISSING  # January's scalar is missing
    assert out.loc["2020-02-28", "risk_scalar_applied"] == 1.0
    assert out.loc["2020-03-31", "source"] == SOURCE_OVERRIDE and out.loc["2020-03-31", "risk_scalar_applied"] == 0.5
    assert out.loc["2020-03-31", "reason"] == "desk call" and pd.isna(out.loc["2020-03-31", "source_date"])
    assert out.loc["2020-04-30", "risk_scalar_applied"] == 0.6 and out.loc["2020-04-30", "reason"] == "later wins"
    assert out.loc["2020-03-31", "computed_scalar"] == values[np.searchsorted(DATES, np.datetime64("2020-02-28"))]
    # rows up to a date do not depend on the data after it
    cut = int(np.searchsorted(DATES, np.datetime64("2020-03-31"))) + 1
    short = applied_scalars(DATES[:cut], values[:cut], overrides=overrides).set_index("date")
    pd.testing.assert_frame_equal(short, out.loc[: "2020-03-31"])
    with pytest.raises(ValueError, match="override scalar"):
        applied_scalars(DATES, values, overrides=[("2020-01-01", "2020-02-01", 1.5, "too much")])


def test_apply_config_and_config_validation():
    values = np.full(len(DATES), 0.7)
    a = apply_config_scalars(DATES, values, ApplyConfig(frequency=RebalanceFrequency.WEEKLY))
    b = applied_scalars(DATES, values, "weekly")
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError):
        ScalarConfig(multipliers=(1.0, 0.8, 0.6))
    with pytest.raises(ValueError):
        ScalarConfig(max_step=0.0)
