"""Stationary block bootstrap of metric differences between books (pure; numpy only).

One draw resamples the **days** (Politis-Romano 1994: blocks of geometric length with mean
``block_length`` starting at uniform days, wrapping from the last day to the first) and applies the
same indices to every book, so the variance of their difference keeps their cross-correlation.
The indices are the stream of ``arch.bootstrap.StationaryBootstrap`` seeded with
``numpy.random.default_rng(seed)``, reproduced draw for draw in numpy (the tests check it against
``arch``). Per pair ``(a, b)`` and measure (Sharpe, max drawdown, Calmar) the delta is ``a - b``,
"higher is better for ``a``" (max drawdown is negative: a positive delta is a shallower drawdown).
Draws where a delta is not finite are left out of its statistics (``n_valid`` counts the rest).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from alloc_assets.core.report.block_length import default_block_length
from alloc_assets.core.report.metrics import PERIODS_PER_YEAR
from alloc_assets.core.report.series import finite_or_none, validated_returns


BOOTSTRAP_METHOD = "stationary_block_bootstrap"



INDEX_GENERATOR = "arch.bootstrap.StationaryBootstrap stream, reproduced in numpy"



#: the bootstrapped measures, in table order (keys of ``metrics.Metric`` values)
DELTA_METRICS: tuple[str, ...] = ("sharpe", "max_drawdown", "calmar")



# float64 elements per (draws x days) work array: 2.5e6 elements = 20 MB, so the gathered paths,
# their wealth and running peak stay near 100 MB at most whatever n_draws and T are
_CHUNK_ELEMENTS = 2_500_000



def path_metrics(
    paths: np.ndarray, risk_free: float = 0.0, periods_per_year: int = PERIODS_PER_YEAR
) -> dict[str, np.ndarray]:
    """Sharpe ratio, maximum drawdown and Calmar ratio of each row of a (draws, T) return matrix.

    Row by row the same formulas (and undefined cases) as :func:`~alloc_assets.core.report.metrics.sharpe_ratio`,
    :func:`~alloc_assets.core.report.metrics.max_drawdown` and :func:`~alloc_assets.core.report.metrics.calmar_ratio`:

    * Sharpe ``mean(r - rf) / std(r - rf, ddof=1) * sqrt(periods_per_year)``, the standard
      deviation exactly 0 for a constant row (``+-inf``/``nan`` then), ``nan`` for ``T < 2``;
    * max drawdown ``min(W / max(running_max(W), 1) - 1)`` with ``W = cumprod(1 + r)``, i.e.
      anchored at wealth 1 before the first return; ``nan`` for ``T = 0``;
    * Calmar ``CAGR / |max drawdown|`` with ``CAGR = W_T ** (periods_per_year / T) - 1``; ``nan``
      without a drawdown, for a negative terminal wealth, or when not finite.

    Parameters
    ----------
    paths : array (n, T), daily simple returns, one path per row (time along axis 1).
    risk_free : constant daily risk-free rate subtracted for the Sharpe ratio.
    periods_per_year : annualisation factor.

    Returns
    -------
    dict with keys ``"sharpe"``, ``"max_drawdown"``, ``"calmar"``, each an array (n,).
    """
    r = np.asarray(paths, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"paths must be a (draws, T) matrix, got shape {r.shape}")
    n, t = r.shape
    if t == 0:
        nan = np.full(n, np.nan)
        return {"sharpe": nan, "max_drawdown": nan.copy(), "calmar": nan.copy()}

    # Sharpe
    if t < 2:
        sharpe = np.full(n, np.nan)
    else:
        x = r - risk_free if risk_free != 0.0 else r
        std = np.std(x, axis=1, ddof=1)
        std = np.where(np.max(x, axis=1) == np.min(x, axis=1), 0.0, std)
        with np.errstate(divide="ignore", invalid="ignore"):
            sharpe = np.mean(x, axis=1) / std * np.sqrt(periods_per_year)
        del x

    # wealth and drawdown, in place to keep two (n, T) arrays alive at most
    wealth = np.add(r, 1.0)
    np.cumprod(wealth, axis=1, out=wealth)
    growth = wealth[:, -1].copy()
    peak = np.maximum.accumulate(wealth, axis=1)
    np.maximum(peak, 1.0, out=peak)
    np.divide(wealth, peak, out=wealth)
    del peak
    mdd = np.min(wealth, axis=1) - 1.0
    del wealth

    # Calmar
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        growth_rate = np.where(growth < 0, np.nan, np.abs(growth) ** (periods_per_year / t) - 1.0)
        calmar = np.where(mdd < 0, growth_rate / np.abs(mdd), np.nan)
    calmar = np.where(np.isfinite(calmar), calmar, np.nan)
    return {"sharpe": sharpe, "max_drawdown": mdd, "calmar": calmar}



def _index_chunks(n_obs: int, n_draws: int, block_length: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """Stationary-bootstrap index matrices of up to ``chunk`` rows, ``n_draws`` rows in all.

    The stream of ``arch.bootstrap.StationaryBootstrap(block_length, arange(n_obs),
    seed=default_rng(seed))``, reproduced draw for draw: per draw ``n_obs`` uniform integer starts
    (``Generator.integers``) then ``n_obs`` uniforms (``Generator.random``); day ``i > 0`` continues
    the previous block (index + 1, wrapping from ``n_obs - 1`` to 0) when its uniform exceeds
    ``p = 1 / block_length``, else starts a new block at its own integer. Vectorised over the draws
    of a chunk; the stream does not depend on ``chunk``. (``arch`` itself is the reference in the
    tests, not an import here: it costs seconds of import in every fresh run process.)
    """
    rng = np.random.default_rng(seed)
    p = 1.0 / block_length
    days = np.arange(n_obs)
    done = 0
    while done < n_draws:
        m = min(chunk, n_draws - done)
        starts = np.empty((m, n_obs), dtype=np.int64)
        new = np.empty((m, n_obs), dtype=bool)
        for i in range(m):
            starts[i] = rng.integers(n_obs, size=n_obs, dtype=np.int64)
            new[i] = rng.random(n_obs) <= p
        new[:, 0] = True
        # the position where each day's block began: a running maximum of the block-start positions
        began = np.maximum.accumulate(np.where(new, days, 0), axis=1)
        out = (np.take_along_axis(starts, began, axis=1) + (days - began)) % n_obs
        done += m
        yield out



def stationary_bootstrap_indices(n_obs: int, n_draws: int, block_length: int, seed: int = 0) -> np.ndarray:
    """The (n_draws, n_obs) day-index matrix that :func:`bootstrap_deltas` resamples with.

    Row ``k`` is the ``k``-th index vector of ``arch.bootstrap.StationaryBootstrap(block_length,
    arange(n_obs), seed=numpy.random.default_rng(seed))``: each day starts a new block with
    probability ``1 / block_length`` (at a uniform day) and otherwise continues with the next day,
    wrapping from ``n_obs - 1`` to 0.

    Parameters
    ----------
    n_obs : number of days T.
    n_draws : number of bootstrap draws.
    block_length : mean block length (>= 1).
    seed : seed of ``numpy.random.default_rng``.

    Returns
    -------
    int64 array (n_draws, n_obs) with values in ``[0, n_obs)``.
    """
    if n_obs < 1 or n_draws < 1 or block_length < 1:
        raise ValueError("n_obs, n_draws and block_length must be at least 1")
    return np.concatenate(list(_index_chunks(n_obs, n_draws, int(block_length), int(seed), n_draws)), axis=0)



def _delta_summary(point: float, deltas: np.ndarray, level: float) -> dict[str, Any]:
    valid = deltas[np.isfinite(deltas)]
    k = int(valid.size)
    if k == 0:
        mean = se = lo = hi = pp = np.nan
    else:
        mean = float(np.mean(valid))
        se = float(np.std(valid, ddof=1)) if k > 1 else np.nan
        lo, hi = (float(v) for v in np.percentile(valid, [50.0 * (1.0 - level), 50.0 * (1.0 + level)]))
        pp = float(np.count_nonzero(valid > 0.0)) / k
    return {
        "point": finite_or_none(point),
        "mean": finite_or_none(mean),
        "std_error": finite_or_none(se),
        "ci_lower": finite_or_none(lo),
        "ci_upper": finite_or_none(hi),
        "p_positive": finite_or_none(pp),
        "n_valid": k,
    }



def bootstrap_deltas(
    returns: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    n_draws: int = 1000,
    seed: int = 0,
    risk_free: float = 0.0,
    block_length: int | None = None,
    level: float = 0.90,
) -> dict[str, Any]:
    """Stationary block bootstrap of Sharpe, max-drawdown and Calmar differences between books.

    Each draw resamples the **days** (the same indices for every book, see the module docstring)
    with ``arch.bootstrap.StationaryBootstrap`` seeded by ``numpy.random.default_rng(seed)``,
    computes each book's measures on the resampled path (:func:`path_metrics`) and the delta
    ``a - b`` of every pair. Draws are processed in chunks so that the working memory stays near
    100 MB whatever ``n_draws`` and ``T``.

    Parameters
    ----------
    returns : book name -> array (T,) of daily simple returns on common dates, finite, ``T >= 2``.
        The first book sets the default block length.
    pairs : ``(a, b)`` book names; each is reported as ``a - b``.
    n_draws : number of bootstrap draws (>= 2).
    seed : seed of the index generator; the output is a deterministic function of it.
    risk_free : constant daily risk-free rate for the Sharpe ratios.
    block_length : mean block length in days; ``None`` for ``max(5, ceil(Politis-White))`` of the
        first book (:func:`default_block_length`).
    level : two-sided confidence level of the percentile interval, in (0, 1).

    Returns
    -------
    dict (JSON-ready)::

        method, index_generator, n_draws, n_obs, block_length, block_length_rule ("given" or
        "politis_white_first_book"), level, seed, risk_free, books (names, in order),
        point {book: {sharpe, max_drawdown, calmar}},
        pairs [{a, b, label "a - b",
                deltas {sharpe|max_drawdown|calmar:
                        {point, mean, std_error, ci_lower, ci_upper, p_positive, n_valid}}}]
    """
    books = validated_returns(returns)
    names = list(books)
    t = len(next(iter(books.values())))
    if t < 2:
        raise ValueError(f"need at least 2 days of returns, got {t}")
    pair_list = [(str(a), str(b)) for a, b in pairs]
    for a, b in pair_list:
        for name in (a, b):
            if name not in books:
                raise KeyError(f"pair ({a!r}, {b!r}): no book named {name!r}; books are {names}")
    if int(n_draws) < 2:
        raise ValueError(f"n_draws must be at least 2, got {n_draws}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    n_draws, seed, level, risk_free = int(n_draws), int(seed), float(level), float(risk_free)
    if block_length is None:
        rule = "politis_white_first_book"
        block = default_block_length(books[names[0]])
    else:
        rule = "given"
        block = int(block_length)
        if block < 1 or block != block_length:
            raise ValueError(f"block_length must be a positive integer, got {block_length}")

    used = [n for n in names if any(n in p for p in pair_list)]
    # point estimates: the same vectorised code on the identity index
    point = {n: {k: float(v[0]) for k, v in path_metrics(books[n][None, :], risk_free).items()} for n in names}

    draws = {n: {k: np.empty(n_draws) for k in DELTA_METRICS} for n in used}
    chunk = max(1, min(n_draws, _CHUNK_ELEMENTS // t))
    start = 0
    for idx in _index_chunks(t, n_draws, block, seed, chunk):
        stop = start + idx.shape[0]
        for n in used:
            values = path_metrics(np.take(books[n], idx), risk_free)
            for k in DELTA_METRICS:
                draws[n][k][start:stop] = values[k]
        start = stop

    pair_rows = []
    for a, b in pair_list:
        deltas = {}
        for k in DELTA_METRICS:
            with np.errstate(invalid="ignore"):
                d = draws[a][k] - draws[b][k]
            deltas[k] = _delta_summary(point[a][k] - point[b][k], d, level)
        pair_rows.append({"a": a, "b": b, "label": f"{a} - {b}", "deltas": deltas})

    return {
        "method": BOOTSTRAP_METHOD,
        "index_generator": INDEX_GENERATOR,
        "n_draws": n_draws,
        "n_obs": int(t),
        "block_length": int(block),
        "block_length_rule": rule,
        "level": level,
        "seed": seed,
        "risk_free": risk_free,
        "books": names,
        "point": {n: {k: finite_or_none(v) for k, v in m.items()} for n, m in point.items()},
        "pairs": pair_rows,
    }
