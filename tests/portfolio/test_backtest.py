"""The backtest engine against an independent per-day loop and closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from alloc_assets.core.portfolio.backtest import AllocatorMode, BacktestResult, run_backtest, run_two_passes, scaled_weights


def reference_loop(returns, rebalance_idx, targets, cost_bps, cash_rate_annual):
    """Plain day-by-day bookkeeping in money (not weights), written independently of the engine."""
    t_len, n = returns.shape
    rc = (1.0 + cash_rate_annual) ** (1.0 / 252) - 1.0
    trade_at = {int(i): k for k, i in enumerate(rebalance_idx)}
    holdings = np.zeros(n)  # money in each asset
    cash = 1.0
    wealth_prev = 1.0
    out_ret, out_turn, out_cost, out_w = [], [], [], []
    for t in range(t_len):
        if holdings.any():  # an all-cash book never touches asset returns (row 0 may be NaN)
            holdings = holdings * (1.0 + returns[t])
        cash = cash * (1.0 + rc)
        wealth_gross = holdings.sum() + cash
        turn = 0.0
        cost = 0.0
        if t in trade_at:
            drifted = holdings / wealth_gross
            target = targets[trade_at[t]]
            turn = float(np.abs(target - drifted).sum())
            cost = turn * cost_bps / 1e4
            wealth_net = wealth_gross - cost * wealth_prev
            holdings = target * wealth_net
            cash = wealth_net - holdings.sum()
        wealth = holdings.sum() + cash
        out_ret.append(wealth / wealth_prev - 1.0)
        out_turn.append(turn)
        out_cost.append(cost)
        out_w.append(holdings / wealth)
        wealth_prev = wealth
    return np.array(out_ret), np.array(out_turn), np.array(out_cost), np.array(out_w)


def _random_case(seed, t_len=600, n=7, every=(1, 30)):
    rng = np.random.default_rng(seed)
    returns = rng.normal(4e-4, 0.02, (t_len, n))
    returns[0] = np.nan  # like PricePanel.returns(): never used while the book is all cash
    gaps = rng.integers(every[0], every[1], size=t_len)
    idx = np.cumsum(gaps) + int(rng.integers(1, 20))
    idx = idx[idx < t_len]
    raw = rng.dirichlet(np.ones(n), size=idx.size)
    targets = raw * rng.uniform(0.5, 1.0, size=(idx.size, 1))  # some cash
    return returns, idx, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cost_bps,cash_rate", [(0.0, 0.0), (10.0, 0.03), (25.0, -0.01)])
def test_engine_equals_independent_daily_loop(seed, cost_bps, cash_rate):
    returns, idx, targets = _random_case(seed)
    res = run_backtest(returns, idx, targets, None, cost_bps, cash_rate)
    ref_ret, ref_turn, ref_cost, ref_w = reference_loop(returns, idx, targets, cost_bps, cash_rate)
    np.testing.assert_allclose(res.portfolio_return, ref_ret, atol=1e-10, rtol=0)
    np.testing.assert_allclose(res.turnover, ref_turn, atol=1e-10, rtol=0)
    np.testing.assert_allclose(res.cost, ref_cost, atol=1e-10, rtol=0)
    np.testing.assert_allclose(res.weights, ref_w, atol=1e-10, rtol=0)
    np.testing.assert_allclose(res.equity, np.cumprod(1 + ref_ret), rtol=1e-10)


def test_scalars_equal_prescaled_targets_and_loop():
    returns, idx, targets = _random_case(5)
    scalars = np.random.default_rng(5).choice([1.0, 0.85, 0.7, 0.55], size=idx.size)
    res = run_backtest(returns, idx, targets, scalars, 5.0, 0.02)
    ref_ret, *_ = reference_loop(returns, idx, targets * scalars[:, None], 5.0, 0.02)
    np.testing.assert_allclose(res.portfolio_return, ref_ret, atol=1e-10, rtol=0)


def test_daily_rebalanced_constant_weights_give_weighted_sum_of_returns():
    rng = np.random.default_rng(11)
    returns = rng.normal(0, 0.015, (300, 5))
    w = np.array([0.1, 0.3, 0.2, 0.25, 0.15])
    idx = np.arange(300)
    res = run_backtest(returns, idx, np.tile(w, (300, 1)))
    expected = returns[1:] @ w
    np.testing.assert_allclose(res.portfolio_return[1:], expected, atol=1e-15, rtol=0)
    assert res.portfolio_return[0] == 0.0  # all cash on day 0


def test_costs_lower_returns_by_exactly_bps_times_turnover():
    returns, idx, targets = _random_case(3)
    free = run_backtest(returns, idx, targets, None, 0.0)
    paid = run_backtest(returns, idx, targets, None, 20.0)
    traded = np.zeros(len(returns), dtype=bool)
    traded[idx] = True
    # the first trade day: same drifted book, so the difference is exactly the cost
    first = idx[0]
    assert free.portfolio_return[first] - paid.portfolio_return[first] == pytest.approx(20e-4 * paid.turnover[first], abs=1e-15)
    np.testing.assert_array_equal(paid.cost, paid.turnover * 20e-4)
    assert np.all(paid.cost[~traded] == 0)
    # with daily rebalancing to constant weights the books never differ: every day differs by the cost
    w = np.full((len(returns), 7), 1 / 7)
    all_idx = np.arange(len(returns))
    returns[0] = 0.0
    a = run_backtest(returns, all_idx, w, None, 0.0)
    b = run_backtest(returns, all_idx, w, None, 20.0)
    np.testing.assert_allclose(a.portfolio_return - b.portfolio_return, 20e-4 * b.turnover, atol=1e-16)
    np.testing.assert_allclose(a.turnover, b.turnover, atol=1e-16)


def test_weights_drift_between_rebalances():
    returns = np.array([[np.nan, np.nan], [0.10, -0.10], [0.0, 0.0], [0.05, 0.05]])
    res = run_backtest(returns, np.array([0]), np.array([[0.5, 0.5]]))
    np.testing.assert_allclose(res.weights[1], [0.55, 0.45])
    np.testing.assert_allclose(res.portfolio_return, [0.0, 0.0, 0.0, 0.05], atol=1e-15)
    np.testing.assert_allclose(res.equity, [1.0, 1.0, 1.0, 1.05])
    assert res.turnover[0] == 1.0


def test_cash_rate_on_the_unscaled_remainder():
    returns = np.zeros((253, 2))
    res = run_backtest(returns, np.array([0]), np.array([[0.3, 0.2]]), cash_rate_annual=0.05)
    # day 0 all in cash (one day of interest), then half the book in cash for 252 days = one year
    day0 = 1.05 ** (1 / 252)
    assert res.equity[-1] == pytest.approx(day0 * (0.5 + 0.5 * 1.05), rel=1e-12)
    np.testing.assert_allclose(res.cash_weight[0], 0.5)


def test_mode_off_scaled_pass_is_the_baseline():
    returns, idx, targets = _random_case(9)
    scalars = np.full(idx.size, 0.5)
    base, scaled = run_two_passes(returns, idx, targets, scalars, AllocatorMode.OFF, 10.0)
    np.testing.assert_array_equal(base.portfolio_return, scaled.portfolio_return)
    np.testing.assert_array_equal(scaled_weights(targets, scalars, "off"), targets)
    base, scaled = run_two_passes(returns, idx, targets, scalars, "compute", 10.0)
    _, pre = run_two_passes(returns, idx, targets, scalars, "precomputed", 10.0)
    np.testing.assert_array_equal(scaled.portfolio_return, pre.portfolio_return)
    assert scaled.weights.sum(axis=1).max() < base.weights.sum(axis=1).max()


def test_input_errors_speak():
    returns, idx, targets = _random_case(1)
    with pytest.raises(ValueError, match="strictly increasing"):
        run_backtest(returns, idx[::-1], targets)
    with pytest.raises(ValueError, match="target_weights shape"):
        run_backtest(returns, idx, targets[:, :3])
    bad = returns.copy()
    bad[idx[0] + 5, 2] = np.nan
    with pytest.raises(ValueError, match="column 2"):
        run_backtest(bad, idx, targets)
    with pytest.raises(ValueError, match="needs scalars"):
        scaled_weights(targets, None, "compute")


def test_full_history_shape():
    """(Speed is measured by ``make bench``, entry ``backtest_and_report_full_history``, not here.)"""
    rng = np.random.default_rng(0)
    returns = rng.normal(3e-4, 0.015, (8313, 20))
    idx = np.arange(20, 8313, 21)
    targets = rng.dirichlet(np.ones(20), size=idx.size)
    res = run_backtest(returns, idx, targets, np.full(idx.size, 0.8), 5.0)
    assert isinstance(res, BacktestResult) and res.weights.shape == (8313, 20)
