"""Controls: references from pandas' rolling/expanding standard deviations and
closed forms; truncation shows no look-ahead."""

import numpy as np
import pandas as pd
import pytest

from alloc_assets.core.report.controls import exposure_matched_scalar, regime_scalar, vol_cap_scalar


def _returns(n=1500, seed=5):
    rng = np.random.default_rng(seed)
    vol = np.where((np.arange(n) // 250) % 2 == 0, 0.008, 0.025)
    return rng.normal(0.0003, vol)


def test_vol_cap_equals_pandas_rolling_over_expanding_volatility():
    r = _returns()
    first = 10
    r[: first + 1] = 0.0  # cash before the first trade (ignored by the cap)
    got = vol_cap_scalar(r, first, floor=0.3, window=21, min_history=252)
    x = pd.Series(r[first + 1:])
    ref = (x.expanding().std() / x.rolling(21).std()).clip(0.3, 1.0).to_numpy().copy()
    ref[:251] = 1.0
    np.testing.assert_allclose(got[first + 1:], ref, rtol=1e-9, atol=1e-12)
    assert (got[: first + 1] == 1.0).all()
    assert got.min() == pytest.approx(0.3) or got.min() > 0.3
    assert (got[780:1000] < 1).mean() > 0.5  # a high-volatility year (days 750-999) is cut
    assert (got[1030:1250] < 1).mean() < 0.1  # the calm year after it is not


def test_vol_cap_has_no_look_ahead():
    r = _returns()
    full = vol_cap_scalar(r, 0, floor=0.55)
    for k in (300, 777, 1201):
        part = vol_cap_scalar(r[: k + 1], 0, floor=0.55)
        np.testing.assert_array_equal(part, full[: k + 1])


def test_exposure_matched_and_regime_mapping():
    s = np.array([1.0, 1.0, 0.5, 0.7, 1.0])
    assert exposure_matched_scalar(s, 2) == pytest.approx((0.5 + 0.7 + 1.0) / 3)
    assert regime_scalar(np.array([0, 1, 1, 0]), 0.0).tolist() == [1.0, 0.0, 0.0, 1.0]
