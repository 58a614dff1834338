"""The latent market state z_t = Encoder(o_t, z_{t-1}) (pure; numpy/scipy only, no Dagster import).

The encoder is a recursion: every feature is a function of a small state (the *carry*) updated once
per trading day. ``encode(panel, carry)`` processes the rows of ``panel`` after the state in
``carry`` and returns their features and the carry after the last one (a JSON-serialisable dict, so
the asset can store it and a later run continue from it). Batch and incremental are the same
computation: the exponentially weighted averages run ``y_t = (1 - a) y_{t-1} + a x_t`` step by step
(``scipy.signal.lfilter`` seeded with the carry, or a plain loop for short series), so a history
filtered at once and day by day gives bit-identical numbers. Day one keeps the documented priors
(index volatility 16 %, stock volatility 30 %, correlation 0.30); ``warm`` is false until
``warm_days`` (63) returns have been seen. ``r_idx`` is the daily log return of the benchmark
when the panel has one, else of the equal-weight index. Features and formulas: ``feature_specs``
(``core.allocator.feature_config``) and docs/notes/allocator.md.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from alloc_assets.core.common.dates import iso_day
from alloc_assets.core.market.panel import PricePanel
from alloc_assets.core.allocator.feature_config import (
    TRADING_DAYS_PER_YEAR,
    FeatureConfig,
    IndexSource,
    StateFrame,
    hl_alpha,
    span_alpha,
    feature_specs,
)

CARRY_VERSION = 1


@dataclass
class _Chunk:
    """Per-row recursion states of a processed chunk (rows along the last axis where 2-D)."""

    last_close: np.ndarray  # (m, N)
    level: np.ndarray  # (m,)
    level_max: np.ndarray  # (m,)
    ewm_var: np.ndarray  # (H, m)
    ewm_cov_short: np.ndarray  # (P, m)
    ewm_cov_long: np.ndarray  # (P, m)
    ewm_log_index: np.ndarray  # (m,)
    ewm_log_close: np.ndarray  # (N, m)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (m,)


#: Below this many days (a daily update) the recurrence runs as a plain loop: the same arithmetic as
#: ``lfilter`` (one multiply of the input, one add of the decayed state per step) without paying
#: seconds to import ``scipy.signal`` in a fresh run process.
SHORT_SERIES = 64


def _first_order_loop(gain: float, decay: float, x: np.ndarray, state: np.ndarray) -> np.ndarray:
    """``y_t = gain * x_t + z_{t-1}``, ``z_t = decay * y_t`` along the last axis, from state ``z``:
    ``lfilter([gain], [1, -decay], x, zi=z)`` step for step."""
    y = np.empty_like(x)
    z = np.array(state, dtype=np.float64)
    for t in range(x.shape[-1]):
        yt = gain * x[..., t] + z
        y[..., t] = yt
        z = decay * yt
    return y


def _ewm(alpha: float, x: np.ndarray, y_prev: np.ndarray) -> np.ndarray:
    """EWMA along the last axis, ``y_t = (1 - alpha) y_{t-1} + alpha x_t``, seeded with ``y_prev``.

    ``lfilter`` stores its state as ``(1 - alpha) * y_{t-1}``, computed as below, so seeding from
    ``y_prev`` reproduces a longer filter run bit for bit.
    """
    decay = 1.0 - alpha
    zi = (decay * np.asarray(y_prev, dtype=np.float64))[..., None]
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1] <= SHORT_SERIES:
        return _first_order_loop(alpha, decay, x, zi[..., 0])
    from scipy.signal import lfilter  # imported when used: scipy.signal costs seconds at code-location load

    y, _ = lfilter([alpha], [1.0, -decay], x, axis=-1, zi=zi)
    return y


def _pairs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Upper-triangle pair indices (i <= j), positions of the diagonal and of the off-diagonal pairs."""
    iu, ju = np.triu_indices(n)
    return iu, ju, np.flatnonzero(iu == ju), np.flatnonzero(iu != ju)


def _prior_cov(config: FeatureConfig, n: int) -> np.ndarray:
    var = config.prior_stock_vol**2 / TRADING_DAYS_PER_YEAR
    iu, ju, _, _ = _pairs(n)
    return np.where(iu == ju, var, config.prior_corr * var)


def _use_benchmark(config: FeatureConfig, panel: PricePanel) -> bool:
    if config.index is IndexSource.EQUAL_WEIGHT:
        return False
    if config.index is IndexSource.BENCHMARK and panel.benchmark is None:
        raise ValueError("FeatureConfig.index is 'benchmark' but the panel has no benchmark series")
    return panel.benchmark is not None


def _validate(panel: PricePanel, extra: dict[str, np.ndarray]) -> None:
    bad = ~(np.isfinite(panel.close) & (panel.close > 0))
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ValueError(
            f"close prices must be finite and > 0: {panel.symbols[j]} on {iso_day(panel.dates[t])} is {panel.close[t, j]!r}; "
            "clean or forward-fill the market data before encoding"
        )
    if panel.benchmark is not None and not (np.isfinite(panel.benchmark) & (panel.benchmark > 0)).all():
        t = int(np.flatnonzero(~(np.isfinite(panel.benchmark) & (panel.benchmark > 0)))[0])
        raise ValueError(f"benchmark level must be finite and > 0: {iso_day(panel.dates[t])} is {panel.benchmark[t]!r}")
    if len(panel.dates) > 1 and not (np.diff(panel.dates.astype("datetime64[D]").astype(np.int64)) > 0).all():
        raise ValueError("panel dates must be strictly increasing")
    for name, series in extra.items():
        if np.shape(series) != (len(panel.dates),):
            raise ValueError(f"extra input {name!r} has shape {np.shape(series)}, expected ({len(panel.dates)},)")


def seed_carry(panel: PricePanel, extra: dict[str, np.ndarray], config: FeatureConfig) -> dict:
    """The carry after the first day: priors for everything that needs a return."""
    use_bench = _use_benchmark(config, panel)
    level = float(panel.benchmark[0]) if use_bench else 1.0
    close0 = panel.close[0].astype(np.float64)
    var = config.prior_index_vol**2 / TRADING_DAYS_PER_YEAR
    cov = _prior_cov(config, len(panel.symbols)).tolist()
    extra_last = {}
    for name, series in extra.items():
        v = float(series[0])
        extra_last[name] = v if math.isfinite(v) else None
    return {
        "version": CARRY_VERSION,
        "symbols": list(panel.symbols),
        "index_source": IndexSource.BENCHMARK.value if use_bench else IndexSource.EQUAL_WEIGHT.value,
        "first_date": iso_day(panel.dates[0]),
        "last_date": iso_day(panel.dates[0]),
        "n_rows": 1,
        "last_close": close0.tolist(),
        "level": level,
        "level_max": level,
        "ewm_var": [var] * len(config.vol_half_lives),
        "ewm_cov_short": cov,
        "ewm_cov_long": list(cov),
        "ewm_log_index": math.log(level),
        "ewm_log_close": np.log(close0).tolist(),
        "extra_last": extra_last,
    }


def _check_carry(carry: dict, panel: PricePanel, extra: dict[str, np.ndarray], config: FeatureConfig) -> None:
    if carry.get("version") != CARRY_VERSION:
        raise ValueError(
            f"state carry version {carry.get('version')!r} is not {CARRY_VERSION}; recompute the state from the first day"
        )
    if tuple(carry["symbols"]) != tuple(panel.symbols):
        raise ValueError(
            f"the panel's symbols {panel.symbols} differ from those the state was built on {tuple(carry['symbols'])}; "
            "a change of universe needs a full recompute"
        )
    if np.datetime64(carry["last_date"]) >= panel.dates[0].astype("datetime64[D]"):
        raise ValueError(
            f"the panel starts on {iso_day(panel.dates[0])}, not after the carry's last date {carry['last_date']}: "
            "pass only the rows that follow the carry"
        )
    use_bench = _use_benchmark(config, panel)
    if (carry["index_source"] == IndexSource.BENCHMARK.value) != use_bench:
        raise ValueError(f"the state was built on the {carry['index_source']} index; this panel would use another one")
    if set(carry["extra_last"]) != set(extra):
        raise ValueError(f"extra inputs {sorted(extra)} differ from those the state was built on {sorted(carry['extra_last'])}")
    if len(carry["ewm_var"]) != len(config.vol_half_lives):
        raise ValueError("the carry was built with another FeatureConfig (number of volatility half-lives)")


def _advance(panel: PricePanel, extra: dict[str, np.ndarray], carry: dict, config: FeatureConfig) -> _Chunk:
    """Run the recursions over all rows of ``panel`` starting from ``carry`` (the day before row 0)."""
    close = panel.close.astype(np.float64)
    prev_close = np.vstack([np.asarray(carry["last_close"], dtype=np.float64)[None, :], close[:-1]])
    log_ret = np.log(close / prev_close)  # (m, N)
    if carry["index_source"] == IndexSource.BENCHMARK.value:
        level = panel.benchmark.astype(np.float64)
    else:
        growth = 1.0 + np.mean(close / prev_close - 1.0, axis=1)
        level = np.cumprod(np.concatenate([[carry["level"]], growth]))[1:]
    prev_level = np.concatenate([[carry["level"]], level[:-1]])
    idx_ret = np.log(level / prev_level)
    level_max = np.maximum.accumulate(np.concatenate([[carry["level_max"]], level]))[1:]

    sq = idx_ret * idx_ret
    ewm_var = np.vstack([_ewm(hl_alpha(h), sq, v) for h, v in zip(config.vol_half_lives, carry["ewm_var"])])

    n = close.shape[1]
    iu, ju, _, _ = _pairs(n)
    rt = np.ascontiguousarray(log_ret.T)  # (N, m)
    prods = rt[iu] * rt[ju]  # (P, m)
    c_short, c_long = config.corr_half_lives
    ewm_cov_short = _ewm(hl_alpha(c_short), prods, carry["ewm_cov_short"])
    ewm_cov_long = _ewm(hl_alpha(c_long), prods, carry["ewm_cov_long"])

    ewm_log_index = _ewm(span_alpha(config.trend_span), np.log(level), carry["ewm_log_index"])
    ewm_log_close = _ewm(span_alpha(config.breadth_span), np.ascontiguousarray(np.log(close).T), carry["ewm_log_close"])

    extra_filled = {}
    for name, series in extra.items():
        x = np.asarray(series, dtype=np.float64)
        last = carry["extra_last"][name]
        x0 = np.concatenate([[np.nan if last is None else last], x])
        idx = np.where(np.isfinite(x0), np.arange(len(x0)), 0)
        np.maximum.accumulate(idx, out=idx)
        extra_filled[name] = x0[idx][1:]
    return _Chunk(close, level, level_max, ewm_var, ewm_cov_short, ewm_cov_long, ewm_log_index, ewm_log_close, extra_filled)


def _chunk_from_carry(carry: dict) -> _Chunk:
    """A one-row chunk holding the states stored in ``carry`` (used for the first day)."""
    col = lambda key: np.asarray(carry[key], dtype=np.float64)[:, None]  # noqa: E731
    return _Chunk(
        last_close=np.asarray(carry["last_close"], dtype=np.float64)[None, :],
        level=np.array([carry["level"]], dtype=np.float64),
        level_max=np.array([carry["level_max"]], dtype=np.float64),
        ewm_var=col("ewm_var"),
        ewm_cov_short=col("ewm_cov_short"),
        ewm_cov_long=col("ewm_cov_long"),
        ewm_log_index=np.array([carry["ewm_log_index"]], dtype=np.float64),
        ewm_log_close=col("ewm_log_close"),
        extra={k: np.array([np.nan if v is None else v], dtype=np.float64) for k, v in carry["extra_last"].items()},
    )


def _mean_offdiag_corr(cov: np.ndarray, n: int) -> np.ndarray:
    """Mean off-diagonal correlation from upper-triangle covariances (P, m) -> (m,)."""
    iu, ju, diag, off = _pairs(n)
    if len(off) == 0:
        return np.ones(cov.shape[1])
    sd = np.sqrt(cov[diag])  # (N, m), rows in symbol order since diag positions increase with i
    return _row_mean(cov[off] / (sd[iu[off]] * sd[ju[off]]))


def _row_mean(x: np.ndarray) -> np.ndarray:
    """Mean over axis 0 of (K, m), summed in the same order whatever m is (bit-identical chunks)."""
    return np.add.reduce(np.ascontiguousarray(x.T), axis=1) / x.shape[0]


def _features(chunk: _Chunk, config: FeatureConfig) -> tuple[tuple[str, ...], np.ndarray]:
    n = chunk.last_close.shape[1]
    vols = np.sqrt(TRADING_DAYS_PER_YEAR * chunk.ewm_var)  # (H, m)
    corr_s = _mean_offdiag_corr(chunk.ewm_cov_short, n)
    corr_l = _mean_offdiag_corr(chunk.ewm_cov_long, n)
    log_close = np.log(chunk.last_close.T)  # (N, m)
    above = (log_close > chunk.ewm_log_close).astype(np.float64) + 0.5 * (log_close == chunk.ewm_log_close)
    cols = [vols[i] for i in range(vols.shape[0])]
    cols += [
        np.log(vols[0] / vols[-1]),
        chunk.level / chunk.level_max - 1.0,
        corr_s,
        corr_l,
        corr_s - corr_l,
        np.log(chunk.level) - chunk.ewm_log_index,
        _row_mean(above),
    ]
    cols += [chunk.extra[k] for k in sorted(chunk.extra)]
    names = tuple(s.name for s in feature_specs(config, tuple(sorted(chunk.extra))))
    return names, np.column_stack(cols)


def _concat_chunks(chunks: list[_Chunk]) -> _Chunk:
    if len(chunks) == 1:
        return chunks[0]
    cat = lambda attr, axis: np.concatenate([getattr(c, attr) for c in chunks], axis=axis)  # noqa: E731
    return _Chunk(
        last_close=cat("last_close", 0),
        level=cat("level", 0),
        level_max=cat("level_max", 0),
        ewm_var=cat("ewm_var", 1),
        ewm_cov_short=cat("ewm_cov_short", 1),
        ewm_cov_long=cat("ewm_cov_long", 1),
        ewm_log_index=cat("ewm_log_index", 0),
        ewm_log_close=cat("ewm_log_close", 1),
        extra={k: np.concatenate([c.extra[k] for c in chunks]) for k in chunks[0].extra},
    )


class RowCarries(Sequence):
    """The carry after each encoded row, built on access (a read-only sequence of carry dicts).

    ``carries[i]`` is the state after row ``i``: ``encode(panel.slice(i + 1, i + 2), carries[i])``
    recomputes row ``i + 1`` alone.
    """

    def __init__(self, chunk: _Chunk, template: dict, dates: np.ndarray, n_rows0: int) -> None:
        self._chunk = chunk
        self._template = template
        self._days = np.datetime_as_string(dates.astype("datetime64[D]")).tolist()
        self._n_rows0 = n_rows0

    def __len__(self) -> int:
        return len(self._days)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        c, t = self._chunk, self._template
        return {
            "version": CARRY_VERSION,
            "symbols": list(t["symbols"]),
            "index_source": t["index_source"],
            "first_date": t["first_date"],
            "last_date": self._days[i],
            "n_rows": self._n_rows0 + i + 1,
            "last_close": c.last_close[i].tolist(),
            "level": float(c.level[i]),
            "level_max": float(c.level_max[i]),
            "ewm_var": c.ewm_var[:, i].tolist(),
            "ewm_cov_short": c.ewm_cov_short[:, i].tolist(),
            "ewm_cov_long": c.ewm_cov_long[:, i].tolist(),
            "ewm_log_index": float(c.ewm_log_index[i]),
            "ewm_log_close": c.ewm_log_close[:, i].tolist(),
            "extra_last": {k: (float(v[i]) if math.isfinite(v[i]) else None) for k, v in c.extra.items()},
        }


def encode(
    panel: PricePanel,
    carry: dict | None = None,
    config: FeatureConfig = FeatureConfig(),
    extra: dict[str, np.ndarray] | None = None,
    return_carries: bool = False,
) -> tuple[StateFrame, dict] | tuple[StateFrame, dict, RowCarries]:
    """Encode the latent state of every row of ``panel``, continuing from ``carry``.

    Parameters
    ----------
    panel : the rows to encode. With ``carry=None`` its first row is the first day of the history;
        otherwise its first row must be the trading day after ``carry["last_date"]``.
    carry : the state after the previous day (from an earlier call), or None to start afresh.
    config : encoder settings; must be the same for every call of one history.
    extra : optional exogenous daily series aligned with ``panel.dates`` (e.g. ``{"vix": ...}``),
        shape (T,) each; passed through as feature columns named by their key (sorted), non-finite
        values forward-filled from the last finite one (NaN until the first one).
    return_carries : also return the carry after each row (a ``RowCarries`` sequence of T dicts,
        built on access), so any single day can be recomputed from the day before.

    Returns
    -------
    ``(StateFrame, carry_out)`` or ``(StateFrame, carry_out, carries)``. Encoding a history in one
    call or in consecutive pieces, passing the carry, gives bit-identical values.
    """
    extra = dict(extra or {})
    if len(panel.dates) == 0:
        raise ValueError("the panel has no rows to encode")
    _validate(panel, extra)
    dates = panel.dates.astype("datetime64[D]")
    if carry is None:
        first = seed_carry(panel, extra, config)
        chunks = [_chunk_from_carry(first)]
        n_rows0, template = 0, first
        if len(dates) > 1:
            rest_extra = {k: np.asarray(v)[1:] for k, v in extra.items()}
            chunks.append(_advance(panel.slice(1, len(dates)), rest_extra, first, config))
    else:
        _check_carry(carry, panel, extra, config)
        n_rows0, template = int(carry["n_rows"]), carry
        chunks = [_advance(panel, extra, carry, config)]
    chunk = _concat_chunks(chunks)
    names, values = _features(chunk, config)
    warm = (n_rows0 + np.arange(len(dates))) >= config.warm_days
    frame = StateFrame(dates, names, values, warm)
    carries = RowCarries(chunk, template, dates, n_rows0)
    carry_out = carries[-1]
    return (frame, carry_out, carries) if return_carries else (frame, carry_out)


def carry_date(carry: dict) -> dt.date:
    """The last date a carry has seen."""
    return dt.date.fromisoformat(carry["last_date"])

