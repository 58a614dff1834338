"""Per-path JAX metrics against the report's NumPy functions (``alloc_assets.core.report.metrics``) and
independent NumPy versions of the two simulation-only measures."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from alloc_assets.core.report import metrics as core
from alloc_assets.sim.engine import metrics as sim
from tests.sim.reference_numpy_kernel import path_metrics_np


@pytest.fixture(scope="module")
def returns() -> np.ndarray:
    rng = np.random.default_rng(8)
    t = 400
    vol = np.where((np.arange(t) > 150) & (np.arange(t) < 200), 0.04, 0.01)[:, None]
    r = rng.normal(0.0004, 1.0, (t, 6)) * vol
    r[:, 4] = np.abs(r[:, 4])  # never below a previous peak: no drawdown
    r[200:, 5] = -0.002  # falls and never recovers
    return r


@pytest.fixture(scope="module")
def jax_metrics(returns):
    with jax.enable_x64(True):
        out = jax.jit(sim.path_metrics)(jnp.asarray(returns), 0.0001)
        return {k: np.asarray(v) for k, v in out.items()}


def test_report_measures_equal_the_numpy_functions(returns, jax_metrics):
    rf = 0.0001
    for j in range(returns.shape[1]):
        r = returns[:, j]
        expected = {
            "annual_return": core.cagr(r),
            "annual_volatility": core.annual_volatility(r),
            "sharpe": core.sharpe_ratio(r, rf),
            "max_drawdown": core.max_drawdown(r),
            "var_95": core.value_at_risk(r),
            "cvar_95": core.conditional_value_at_risk(r),
            "worst_day": float(r.min()),
        }
        for name, value in expected.items():
            assert jax_metrics[name][j] == pytest.approx(value, rel=1e-10, abs=1e-14), (name, j)


def test_recovery_and_volatility_clusters_against_plain_loops(returns, jax_metrics):
    for j in range(returns.shape[1]):
        r = returns[:, j]
        wealth, peak, worst, trough, peak_at = 1.0, 1.0, 0.0, -1, 1.0
        for t, x in enumerate(r):
            wealth *= 1 + x
            peak = max(peak, wealth)
            if wealth / peak - 1 < worst:
                worst, trough, peak_at = wealth / peak - 1, t, peak
        w = np.cumprod(1 + r)
        after = np.flatnonzero((np.arange(r.size) > trough) & (w >= peak_at))
        expected = 0.0 if worst == 0 else (after[0] - trough if after.size else np.nan)
        np.testing.assert_equal(jax_metrics["recovery_days"][j], expected)
        rolling = pd.Series(r).rolling(21).std(ddof=1).to_numpy()[20:]
        share = np.mean(rolling > 1.5 * r.std(ddof=1))
        assert jax_metrics["vol_cluster_share"][j] == pytest.approx(share, abs=1e-12)
    assert jax_metrics["recovery_days"][4] == 0.0 and np.isnan(jax_metrics["recovery_days"][5])
    assert jax_metrics["vol_cluster_share"][0] > 0.05  # the volatile stretch is found


def test_numpy_kernel_metrics_agree(returns, jax_metrics):
    ref = path_metrics_np(returns, 0.0001)
    assert tuple(ref) == sim.PATH_METRICS
    for name in sim.PATH_METRICS:
        np.testing.assert_allclose(jax_metrics[name], ref[name], rtol=1e-10, atol=1e-14, equal_nan=True, err_msg=name)


def test_float32_metrics_stay_close(returns, jax_metrics):
    out = jax.jit(sim.path_metrics)(jnp.asarray(returns, jnp.float32), 0.0001)
    for name in ("annual_return", "annual_volatility", "sharpe", "max_drawdown", "cvar_95"):
        np.testing.assert_allclose(np.asarray(out[name]), jax_metrics[name], rtol=2e-3, atol=2e-5, err_msg=name)


def test_drawdown_series_equals_the_report_function():
    """The JAX drawdown recursion (wealth, running peak from 1) gives the report's drawdown series."""
    r = np.random.default_rng(3).normal(0.0003, 0.015, size=(300, 5))
    with jax.enable_x64(True):
        got = np.asarray(jax.jit(sim.drawdown_series)(jnp.asarray(r, dtype=jnp.float64)))
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, core.drawdown_series(r), rtol=0, atol=1e-12)
