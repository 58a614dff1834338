"""The latent-state encoder: reference values from plain loops and pandas, causality, carry."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alloc_assets.core.allocator.feature_config import (
    FEATURE_SPECS,
    FeatureConfig,
    IndexSource,
    StateFrame,
    feature_specs,
)
from alloc_assets.core.allocator.features import encode
from alloc_assets.core.market.panel import PricePanel

N_REF = 400  # rows checked against the reference loops


@pytest.fixture(scope="module")
def full(panel):
    state, carry = encode(panel)
    return state, carry


def _ref_ewm(x: np.ndarray, alpha: float, y0: float) -> np.ndarray:
    """Plain loop: y_t = (1 - alpha) y_{t-1} + alpha x_t."""
    out = np.empty(len(x))
    y = y0
    for t, v in enumerate(x):
        y = (1 - alpha) * y + alpha * v
        out[t] = y
    return out


def test_shapes_and_no_missing_rows(full, panel):
    state, _ = full
    assert state.values.shape == (len(panel.dates), len(state.columns))
    assert state.values.dtype == np.float64
    assert np.isfinite(state.values).all(), "every feature must be defined from the first day"
    assert state.columns == tuple(s.name for s in FEATURE_SPECS)
    assert (state.dates == panel.dates).all()


def test_first_day_priors_and_warm_flag(full):
    state, _ = full
    cfg = FeatureConfig()
    row = dict(zip(state.columns, state.values[0]))
    for h in cfg.vol_half_lives:
        assert row[f"vol_{h}d"] == pytest.approx(cfg.prior_index_vol, abs=1e-15)
    assert row["vol_shock"] == 0.0 and row["drawdown"] == 0.0 and row["trend"] == 0.0
    assert row["corr_21d"] == pytest.approx(cfg.prior_corr, abs=1e-12)
    assert row["corr_shock"] == pytest.approx(0.0, abs=1e-12)
    assert row["breadth"] == 0.5
    assert not state.warm[: cfg.warm_days].any()
    assert state.warm[cfg.warm_days :].all()


def test_volatility_matches_plain_loop(full, panel):
    state, _ = full
    cfg = FeatureConfig()
    r = np.diff(np.log(panel.benchmark[:N_REF]))
    for h in cfg.vol_half_lives:
        alpha = 1 - 0.5 ** (1 / h)
        var = _ref_ewm(r * r, alpha, cfg.prior_index_vol**2 / 252)
        ref = np.concatenate([[cfg.prior_index_vol], np.sqrt(252 * var)])
        np.testing.assert_allclose(state.column(f"vol_{h}d")[:N_REF], ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        state.column("vol_shock"), np.log(state.column("vol_10d") / state.column("vol_63d")), rtol=0, atol=1e-12
    )


def test_trend_drawdown_breadth_match_pandas(full, panel):
    state, _ = full
    bench = pd.Series(panel.benchmark)
    log_b = np.log(bench)
    ref_trend = log_b - log_b.ewm(span=200, adjust=False).mean()
    np.testing.assert_allclose(state.column("trend"), ref_trend.to_numpy(), rtol=0, atol=1e-10)
    ref_dd = bench / bench.cummax() - 1
    np.testing.assert_allclose(state.column("drawdown"), ref_dd.to_numpy(), rtol=0, atol=1e-14)
    log_p = np.log(pd.DataFrame(panel.close))
    ma = log_p.ewm(span=200, adjust=False).mean()
    ref_breadth = ((log_p > ma).astype(float) + 0.5 * (log_p == ma)).mean(axis=1)
    # a price within rounding of its average could flip; compare where the margin is clear
    clear = (np.abs(log_p - ma) > 1e-9).all(axis=1) | (np.arange(len(ma)) == 0)
    np.testing.assert_allclose(state.column("breadth")[clear], ref_breadth.to_numpy()[clear], rtol=0, atol=1e-12)
    assert clear.mean() > 0.99


def test_correlation_matches_weighted_sum(full, panel):
    """EWMA covariance written as an explicit weighted sum (not a recursion), then correlation."""
    state, _ = full
    cfg = FeatureConfig()
    r = np.diff(np.log(panel.close[:N_REF]), axis=0)  # returns of rows 1..N_REF-1
    n = r.shape[1]
    var0 = cfg.prior_stock_vol**2 / 252
    prior = np.full((n, n), cfg.prior_corr * var0)
    np.fill_diagonal(prior, var0)
    for h, col in zip(cfg.corr_half_lives, ("corr_21d", "corr_126d")):
        alpha = 1 - 0.5 ** (1 / h)
        for t in (1, 50, 120, N_REF - 1):  # row t has seen returns 1..t
            ages = np.arange(t - 1, -1, -1)  # age of return s = t - s
            w = alpha * (1 - alpha) ** ages
            cov = (1 - alpha) ** t * prior + (r[:t] * w[:, None]).T @ r[:t]
            sd = np.sqrt(np.diag(cov))
            corr = cov / np.outer(sd, sd)
            ref = corr[~np.eye(n, dtype=bool)].mean()
            assert state.column(col)[t] == pytest.approx(ref, abs=1e-12)
    np.testing.assert_allclose(state.column("corr_shock"), state.column("corr_21d") - state.column("corr_126d"), atol=1e-15)


def test_incremental_equals_batch_bit_for_bit(panel):
    stop = 700
    batch, carry_batch = encode(panel.slice(0, stop))
    # first 300 rows in uneven pieces, then one day at a time with a JSON round trip of the carry
    pieces = []
    state, carry = encode(panel.slice(0, 1))
    pieces.append(state)
    for a, b in ((1, 2), (2, 97), (97, 300)):
        state, carry = encode(panel.slice(a, b), carry)
        pieces.append(state)
    for i in range(300, stop):
        carry = json.loads(json.dumps(carry))
        state, carry = encode(panel.slice(i, i + 1), carry)
        pieces.append(state)
    inc = StateFrame.concat(pieces)
    assert np.array_equal(inc.values, batch.values)
    assert np.array_equal(inc.warm, batch.warm)
    assert carry == carry_batch


def test_row_carries_recompute_any_day(panel):
    stop = 300
    state, carry_out, carries = encode(panel.slice(0, stop), return_carries=True)
    assert len(carries) == stop and carries[-1] == carry_out
    for i in (0, 5, 62, 63, 150, stop - 2):
        row, _ = encode(panel.slice(i + 1, i + 2), json.loads(json.dumps(carries[i])))
        assert np.array_equal(row.values[0], state.values[i + 1])
        assert row.warm[0] == state.warm[i + 1]


@pytest.mark.parametrize("cut", [100, 1234, 4710])
def test_no_look_ahead(panel, full, cut):
    """Changing or removing prices after row ``cut`` changes nothing at or before it."""
    state, _ = full
    rng = np.random.default_rng(cut)
    close = panel.close.copy()
    close[cut + 1 :] *= np.exp(rng.normal(0, 0.05, close[cut + 1 :].shape))
    bench = panel.benchmark.copy()
    bench[cut + 1 :] *= 0.5
    shocked, _ = encode(PricePanel(panel.dates, panel.symbols, close, bench))
    truncated, _ = encode(panel.slice(0, cut + 1))
    assert np.array_equal(shocked.values[: cut + 1], state.values[: cut + 1])
    assert np.array_equal(truncated.values, state.values[: cut + 1])
    assert not np.array_equal(shocked.values[cut + 1 :], state.values[cut + 1 :])


def test_equal_weight_index_without_benchmark(panel):
    p = PricePanel(panel.dates[:N_REF], panel.symbols, panel.close[:N_REF], None)
    state, carry = encode(p)
    assert carry["index_source"] == IndexSource.EQUAL_WEIGHT.value
    simple = pd.DataFrame(p.close).pct_change().mean(axis=1).fillna(0.0)
    level = (1 + simple).cumprod()
    np.testing.assert_allclose(state.column("drawdown"), (level / level.cummax() - 1).to_numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="no benchmark"):
        encode(p, config=FeatureConfig(index=IndexSource.BENCHMARK))


def test_extra_inputs_pass_through_forward_filled(panel):
    p = panel.slice(0, 50)
    vix = np.full(50, np.nan)
    vix[3], vix[10], vix[11] = 20.0, 25.0, np.inf
    state, carry = encode(p, extra={"vix": vix})
    assert state.columns[-1] == "vix"
    col = state.column("vix")
    assert np.isnan(col[:3]).all() and (col[3:10] == 20.0).all() and (col[10:] == 25.0).all()
    assert feature_specs(FeatureConfig(), ("vix",))[-1].name == "vix"
    # continuing: the carry remembers the last finite value
    more, _ = encode(panel.slice(50, 52), carry, extra={"vix": np.array([np.nan, 30.0])})
    assert more.column("vix").tolist() == [25.0, 30.0]
    with pytest.raises(ValueError, match="extra inputs"):
        encode(panel.slice(50, 52), carry)


def test_errors_speak_to_the_user(panel):
    _, carry = encode(panel.slice(0, 10))
    with pytest.raises(ValueError, match="not after the carry"):
        encode(panel.slice(5, 12), carry)
    other = PricePanel(panel.dates[10:12], tuple(reversed(panel.symbols)), panel.close[10:12], panel.benchmark[10:12])
    with pytest.raises(ValueError, match="symbols"):
        encode(other, carry)
    bad = panel.close[:5].copy()
    bad[2, 3] = -1.0
    with pytest.raises(ValueError, match=panel.symbols[3]):
        encode(PricePanel(panel.dates[:5], panel.symbols, bad, panel.benchmark[:5]))


def test_feature_table_and_frame_layout(full):
    state, _ = full
    assert all(s.formula and s.window and s.units for s in FEATURE_SPECS)
    df = state.slice(0, 5).to_pandas()
    assert list(df.columns) == ["date", *state.columns, "warm"]
    assert df["warm"].dtype == bool


def test_short_series_loop_is_lfilter_step_for_step():
    """The daily-update path (a plain loop, no scipy import) equals scipy's lfilter bit for bit."""
    from scipy.signal import lfilter

    from alloc_assets.core.allocator.features import SHORT_SERIES, _first_order_loop

    rng = np.random.default_rng(3)
    for shape in [(5, SHORT_SERIES), (1,), (3, 2, 17)]:
        x = rng.normal(size=shape) * 1e-2
        z = rng.normal(size=shape[:-1])
        for gain, decay in [(0.06, 0.94), (1.0, 0.97), (0.5, 0.5)]:
            want, _ = lfilter([gain], [1.0, -decay], x, axis=-1, zi=z[..., None])
            assert np.array_equal(_first_order_loop(gain, decay, x, z), want)
