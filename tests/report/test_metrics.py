"""Metrics against independent references: empyrical-reloaded and quantstats (test-only deps)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from alloc_assets.core.report import calendar_returns as cr
from alloc_assets.core.report import metrics as m
from alloc_assets.core.market.panel import load_bundled_panel

empyrical = pytest.importorskip("empyrical")
qs_stats = pytest.importorskip("quantstats.stats")

TOL = 1e-8


def _series_cases() -> dict[str, pd.Series]:
    rng = np.random.default_rng(7)
    cases = {}
    # a long random walk over real NYSE sessions starting mid-month (partial first month)
    dates = pd.bdate_range("2003-01-15", periods=1500)
    cases["random_partial_first_month"] = pd.Series(rng.normal(3e-4, 0.012, len(dates)), index=dates)
    # first-day loss: a drawdown must count from wealth 1 before the first return
    dates = pd.bdate_range("2010-03-01", periods=400)
    r = rng.normal(2e-4, 0.01, len(dates))
    r[0] = -0.04
    cases["first_day_loss"] = pd.Series(r, index=dates)
    # fat tails, quarter boundaries, a losing drift
    dates = pd.bdate_range("1999-11-17", periods=900)
    cases["student_t_losing"] = pd.Series(rng.standard_t(3, len(dates)) * 0.008 - 2e-4, index=dates)
    # the bundled S&P 500 index, 33 years of real returns
    panel = load_bundled_panel()
    bench = panel.benchmark
    cases["sp500"] = pd.Series(bench[1:] / bench[:-1] - 1.0, index=pd.DatetimeIndex(panel.dates[1:]))
    return cases


CASES = _series_cases()


@pytest.fixture(params=sorted(CASES))
def series(request) -> pd.Series:
    return CASES[request.param]


def _qs_prepared_ok(s: pd.Series) -> bool:
    # quantstats treats a non-negative series with max > 1 as prices; none of ours is
    return not (s.min() >= 0 and s.max() > 1)


def test_cagr_matches_empyrical_and_quantstats(series):
    got = m.cagr(series.to_numpy())
    assert got == pytest.approx(empyrical.cagr(series), abs=TOL, rel=TOL)
    assert got == pytest.approx(qs_stats.cagr(series), abs=TOL, rel=TOL)


def test_annual_volatility_matches(series):
    got = m.annual_volatility(series.to_numpy())
    assert got == pytest.approx(empyrical.annual_volatility(series), abs=TOL)
    assert got == pytest.approx(qs_stats.volatility(series), abs=TOL)


def test_sharpe_matches(series):
    got = m.sharpe_ratio(series.to_numpy())
    assert got == pytest.approx(empyrical.sharpe_ratio(series), abs=TOL)
    assert got == pytest.approx(qs_stats.sharpe(series), abs=TOL)


def test_sharpe_with_daily_risk_free_matches_both_conventions(series):
    annual = 0.03
    daily = m.daily_rate(annual)
    got = m.sharpe_ratio(series.to_numpy(), risk_free=daily)
    assert got == pytest.approx(empyrical.sharpe_ratio(series, risk_free=daily), abs=TOL)
    # quantstats takes the annual rate and de-annualises it the same way
    assert got == pytest.approx(qs_stats.sharpe(series, rf=annual, periods=252), abs=TOL)


def test_sortino_matches(series):
    got = m.sortino_ratio(series.to_numpy())
    assert got == pytest.approx(empyrical.sortino_ratio(series), abs=TOL)
    assert got == pytest.approx(qs_stats.sortino(series), abs=TOL)
    dd = m.downside_deviation(series.to_numpy())
    assert dd == pytest.approx(empyrical.downside_risk(series), abs=TOL)


def test_max_drawdown_matches(series):
    got = m.max_drawdown(series.to_numpy())
    assert got == pytest.approx(empyrical.max_drawdown(series), abs=TOL)
    assert got == pytest.approx(qs_stats.max_drawdown(series), abs=TOL)
    assert got < 0


def test_first_day_loss_is_a_drawdown():
    s = CASES["first_day_loss"]
    dd = m.drawdown_series(s.to_numpy())
    assert dd[0] == pytest.approx(-0.04, abs=1e-15)
    np.testing.assert_allclose(dd, empyrical.stats.drawdown_series(s).to_numpy(), atol=1e-12)


def test_calmar_matches(series):
    got = m.calmar_ratio(series.to_numpy())
    assert got == pytest.approx(empyrical.calmar_ratio(series), abs=TOL)
    assert got == pytest.approx(qs_stats.calmar(series), abs=TOL)


def test_var_cvar_match_empyrical_and_quantstats_historical(series):
    r = series.to_numpy()
    assert m.value_at_risk(r) == pytest.approx(empyrical.value_at_risk(r, 0.05), abs=1e-12)
    assert m.value_at_risk(r) == pytest.approx(series.quantile(0.05), abs=1e-12)
    assert m.conditional_value_at_risk(r) == pytest.approx(empyrical.conditional_value_at_risk(r, 0.05), abs=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qs_cvar = qs_stats.cvar(series, method="historical")
    assert m.conditional_value_at_risk(r) == pytest.approx(qs_cvar, abs=1e-12)
    assert m.conditional_value_at_risk(r) <= m.value_at_risk(r) < 0


def test_worst_month_and_quarter_by_calendar(series):
    r, d = series.to_numpy(), series.index
    assert cr.worst_month(r, d) == pytest.approx(empyrical.aggregate_returns(series, "monthly").min(), abs=TOL)
    assert cr.worst_quarter(r, d) == pytest.approx(empyrical.aggregate_returns(series, "quarterly").min(), abs=TOL)
    assert cr.worst_month(r, d) == pytest.approx(qs_stats.worst(series, aggregate="ME"), abs=TOL)
    assert cr.worst_quarter(r, d) == pytest.approx(qs_stats.worst(series, aggregate="QE"), abs=TOL)


def test_period_returns_partial_first_month_is_its_own_group():
    dates = pd.DatetimeIndex(["2020-01-30", "2020-01-31", "2020-02-03", "2020-03-31", "2020-04-01"])
    r = np.array([0.01, -0.02, 0.03, -0.05, 0.02])
    months = cr.period_returns(r, dates, "month")
    np.testing.assert_allclose(months, [1.01 * 0.98 - 1, 0.03, -0.05, 0.02])
    quarters = cr.period_returns(r, dates, cr.CalendarPeriod.QUARTER)
    np.testing.assert_allclose(quarters, [1.01 * 0.98 * 1.03 * 0.95 - 1, 0.02])


def test_two_dimensional_inputs_give_one_value_per_column():
    cols = [CASES["random_partial_first_month"].to_numpy()[:400], CASES["first_day_loss"].to_numpy()]
    x = np.column_stack(cols)
    for fn in (m.cagr, m.annual_volatility, m.sharpe_ratio, m.sortino_ratio, m.max_drawdown):
        np.testing.assert_allclose(fn(x), [fn(c) for c in cols], rtol=1e-14)


def test_turnover_is_annualised_one_way():
    daily = np.zeros(252)
    daily[100] = 2.0  # sell everything and buy something else once: 2.0 traded, 1.0 one way
    assert m.annual_turnover(daily) == pytest.approx(1.0)


def test_compute_metrics_has_exactly_the_contract_keys():
    s = CASES["random_partial_first_month"]
    out = m.compute_metrics(s.to_numpy(), s.index, turnover=np.full(len(s), 0.01))
    assert list(out) == list(m.METRIC_KEYS) == [
        "cagr", "ann_vol", "sharpe", "sortino", "max_drawdown", "calmar",
        "worst_month", "worst_quarter", "var_95", "cvar_95", "turnover",
    ]
    assert all(type(v) is float for v in out.values())
    assert out["turnover"] == pytest.approx(0.5 * 0.01 * 252)
    assert np.isnan(m.compute_metrics(s.to_numpy(), s.index)["turnover"])


def test_compute_metrics_rejects_nan():
    with pytest.raises(ValueError, match="position 2"):
        m.compute_metrics(np.array([0.0, 0.01, np.nan]), pd.bdate_range("2020-01-01", periods=3))


def test_undefined_measures_are_nan():
    flat = np.zeros(10)
    assert np.isnan(m.calmar_ratio(flat))
    assert m.max_drawdown(flat) == 0.0
    assert np.isnan(m.sharpe_ratio(flat))
    assert np.isnan(m.cagr(np.zeros(0)))
    assert np.isnan(m.sharpe_ratio(np.array([0.01])))


def test_risk_free_enters_sharpe_and_sortino_like_empyrical():
    import empyrical

    from alloc_assets.core.report.metrics import compute_metrics, daily_rate

    rng = np.random.default_rng(11)
    r = rng.normal(4e-4, 0.012, 600)
    dates = np.arange(np.datetime64("2010-01-04"), np.datetime64("2010-01-04") + 600).astype("datetime64[D]")
    rf = daily_rate(0.03)
    m = compute_metrics(r, dates, risk_free=rf)
    np.testing.assert_allclose(m["sharpe"], empyrical.sharpe_ratio(r, risk_free=rf), rtol=1e-12)
    np.testing.assert_allclose(m["sortino"], empyrical.sortino_ratio(r, required_return=rf), rtol=1e-12)
