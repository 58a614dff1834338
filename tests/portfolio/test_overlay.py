"""The overlay acts at its own cadence on the drifted book.

References are closed forms computed here by hand (drift of a two-asset book, the cost of the
overlay trade), or the engine's original construction (scalar x target at the strategy's trades),
which the overlay must reproduce exactly when the overlay dates are strategy trade dates.
"""

import numpy as np
import pandas as pd
import pytest

from alloc_assets.core.portfolio.backtest import overlay_trades, run_backtest, run_overlay, scalar_in_force
from alloc_assets.core.market.calendar import rebalance_indices
from alloc_assets.core.allocator.scalars import applied_scalars


def _dates(n: int, start: str = "2021-01-04") -> np.ndarray:
    return pd.bdate_range(start, periods=n).to_numpy().astype("datetime64[D]")


def test_monthly_overlay_with_monthly_strategy_reproduces_scalar_times_target_exactly():
    rng = np.random.default_rng(3)
    n_days, n = 260, 4
    dates = _dates(n_days)
    returns = rng.normal(0.0004, 0.012, (n_days, n))
    idx = rebalance_indices(dates, "monthly")
    target = rng.dirichlet(np.ones(n), idx.size) * 0.9
    risk = np.clip(1.0 - np.abs(rng.normal(0, 0.3, n_days)), 0.55, 1.0)
    table = applied_scalars(dates, risk, "monthly")
    a_dates, a_vals = table["date"].to_numpy().astype("datetime64[D]"), table["risk_scalar_applied"].to_numpy()
    base = run_backtest(returns, idx, target, None, 7.0, 0.02)
    daily = scalar_in_force(dates, a_dates, a_vals)
    over, trades = run_overlay(returns, base, idx, daily, 7.0, 0.02)
    # the original construction: the scalar of the latest overlay date on or before each strategy trade
    s_trade = a_vals[np.searchsorted(a_dates, dates[idx], side="right") - 1]
    legacy = run_backtest(returns, idx, target * s_trade[:, None], None, 7.0, 0.02)
    assert np.array_equal(trades.idx, idx) and trades.strategy.all()
    for field in ("portfolio_return", "equity", "turnover", "cost", "weights"):
        assert np.array_equal(getattr(over, field), getattr(legacy, field)), field


def test_an_overlay_change_between_rebalances_scales_the_drifted_book_at_its_close():
    # two assets bought at (0.6, 0.4) on day 0, no cash rate; the scalar drops to 0.5 from day 3
    r = np.array([[0.0, 0.0], [0.10, -0.05], [0.02, 0.03], [-0.04, 0.01], [0.05, 0.02], [0.01, -0.01]])
    idx = np.array([0])
    target = np.array([[0.6, 0.4]])
    base = run_backtest(r, idx, target, None, 10.0, 0.0)
    daily = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])
    over, trades = run_overlay(r, base, idx, daily, 10.0, 0.0)
    assert trades.idx.tolist() == [0, 3] and trades.strategy.tolist() == [True, False]
    # by hand: the drifted strategy weights at the close of day 3
    value = np.array([0.6, 0.4]) * np.prod(1 + r[1:4], axis=0)
    drifted = value / value.sum()
    np.testing.assert_allclose(over.weights[3], 0.5 * drifted, rtol=0, atol=1e-15)
    # the overlay trade sells half of the (identical) drifted book: turnover 0.5, cost 0.5 x 10 bp
    assert over.turnover[3] == pytest.approx(0.5, abs=1e-15)
    assert over.cost[3] == pytest.approx(0.5 * 10 / 1e4, abs=1e-18)
    # day 4: half the drifted book earns the asset returns, the other half sits in cash at 0
    assert over.portfolio_return[4] == pytest.approx(0.5 * drifted @ r[4], abs=1e-15)
    # before the change both books are the same; the cost is charged on the overlay day
    np.testing.assert_array_equal(over.portfolio_return[:3], base.portfolio_return[:3])
    assert over.portfolio_return[3] == pytest.approx(base.portfolio_return[3] - 0.5 * 10 / 1e4, abs=1e-15)


def test_weekly_cadence_acts_within_the_month_and_lags_one_overlay_date():
    dates = _dates(120)
    risk = np.ones(120)
    risk[45:] = 0.55  # computed from the close of day 45
    table = applied_scalars(dates, risk, "weekly")
    a_dates, a_vals = table["date"].to_numpy().astype("datetime64[D]"), table["risk_scalar_applied"].to_numpy()
    daily = scalar_in_force(dates, a_dates, a_vals)
    weekly_ends = rebalance_indices(dates, "weekly")
    first_computed = weekly_ends[weekly_ends >= 45][0]  # the first overlay date that sees the low scalar
    acts = weekly_ends[weekly_ends > first_computed][0]  # ... acts one overlay date later
    assert daily[acts] == 0.55 and daily[acts - 1] == 1.0
    idx = rebalance_indices(dates, "monthly")
    base_w = np.tile([0.5, 0.5], (120, 1))
    trades = overlay_trades(base_w, idx, daily)
    overlay_only = trades.idx[~trades.strategy]
    assert overlay_only.tolist() == [acts] and acts not in idx


def test_overlay_rejects_bad_scalars_and_does_nothing_before_the_first_trade():
    w = np.zeros((5, 2))
    with pytest.raises(ValueError):
        overlay_trades(w, np.array([1]), np.array([1.0, np.nan, 1, 1, 1]))
    t = overlay_trades(w, np.array([2]), np.array([0.5, 0.7, 0.7, 0.9, 0.9]))
    assert t.idx.tolist() == [2, 3]  # the change on day 1 is folded into the first trade
