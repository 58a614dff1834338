"""Sampling uncertainty of metric differences between books: stationary block bootstrap and sub-periods (pure).

The audit compares daily return series of several books on the **same dates** (``baseline`` with
the allocator off, ``scaled`` with it on, controls such as ``exposure_matched``). A point difference
of Sharpe ratios says nothing about how much of it is luck; this module attaches a bootstrap
distribution to each difference and splits the window into sub-periods.

Bootstrap (:func:`bootstrap_deltas`)
    Politis-Romano (1994) **stationary** block bootstrap of the joint daily returns: one draw picks
    a sequence of day indices (blocks of geometric length with mean ``block_length`` starting at
    uniform days, wrapping circularly from the last day to the first) and applies the **same**
    indices to every book, so the books' cross-correlation, and hence the variance of their
    difference, is kept. The indices are the stream of :class:`arch.bootstrap.StationaryBootstrap`
    seeded with ``numpy.random.default_rng(seed)``, reproduced draw for draw in numpy (importing
    ``arch`` costs seconds, numba included, in each fresh run process; the tests check the indices
    and the block length against ``arch`` itself). On each resampled path the
    Sharpe ratio, maximum drawdown and Calmar ratio of every book are computed vectorised over the
    draws (:func:`path_metrics`, equal to :mod:`alloc_assets.core.report.metrics` to rounding), and for
    each pair ``(a, b)`` the delta ``a - b``.

    Default block length: ``max(5, ceil(b_sb))`` with ``b_sb`` the Politis-White (2004; Patton,
    Politis and White 2009 correction) optimal *stationary-bootstrap* block length of the **first
    book** of ``returns`` (as ``arch.bootstrap.optimal_block_length(...)["stationary"]``); 5 when the
    estimate is undefined (a constant series).

    Per pair and metric the result holds the point estimate (the same vectorised code on the
    original series, i.e. the identity index), the bootstrap mean, the standard error (sample
    standard deviation, ``ddof=1``, of the bootstrap deltas), the percentile confidence interval at
    ``level`` (``np.percentile`` with linear interpolation at ``(1 - level) / 2`` and
    ``(1 + level) / 2``) and ``p_positive``, the share of draws with delta ``> 0``. Draws where a
    delta is not finite (a metric undefined on that path, e.g. a Calmar ratio without drawdown) are
    left out of these statistics; ``n_valid`` counts the draws used.

    Sign conventions: ``max_drawdown`` is negative, so a positive max-drawdown delta ``a - b`` means
    ``a`` has the *shallower* drawdown. All three deltas are "higher is better for ``a``".

Sub-periods (:func:`subperiod_table`)
    The window split into ``n_parts`` consecutive pieces of (nearly) equal numbers of days
    (``numpy.array_split``: the first ``T % n_parts`` pieces have one day more), with CAGR, Sharpe,
    max drawdown and Calmar of each book from :mod:`alloc_assets.core.report.metrics`, and each book's
    deltas against ``baseline`` when a book of that name exists.

Every output is JSON-ready: plain ``int``/``float``/``str``/``list``/``dict``, with ``None`` for an
undefined (``nan``) or infinite value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from alloc_assets.core.report.metrics import PERIODS_PER_YEAR, cagr, calmar_ratio, max_drawdown, sharpe_ratio

BOOTSTRAP_METHOD = "stationary_block_bootstrap"
INDEX_GENERATOR = "arch.bootstrap.StationaryBootstrap stream, reproduced in numpy"
MIN_DEFAULT_BLOCK_LENGTH = 5
BASELINE = "baseline"

#: the bootstrapped measures, in table order (keys of ``metrics.Metric`` values)
DELTA_METRICS: tuple[str, ...] = ("sharpe", "max_drawdown", "calmar")
#: the sub-period measures, in table order
SUBPERIOD_METRICS: tuple[str, ...] = ("cagr", "sharpe", "max_drawdown", "calmar")

# float64 elements per (draws x days) work array: 2.5e6 elements = 20 MB, so the gathered paths,
# their wealth and running peak stay near 100 MB at most whatever n_draws and T are
_CHUNK_ELEMENTS = 2_500_000

_METRIC_LABELS = {
    "cagr": "CAGR",
    "sharpe": "Sharpe",
    "max_drawdown": "Max drawdown",
    "calmar": "Calmar",
}


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def _clean(x: Any) -> float | None:
    """A plain float, ``None`` for ``nan``/``inf``."""
    f = float(x)
    return f if math.isfinite(f) else None


def _validated_returns(returns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    if not returns:
        raise ValueError("returns must hold at least one book")
    out: dict[str, np.ndarray] = {}
    length: int | None = None
    for name, r in returns.items():
        a = np.ascontiguousarray(r, dtype=np.float64)
        if a.ndim != 1:
            raise ValueError(f"returns[{name!r}] must be one series of shape (T,), got {a.shape}")
        if length is None:
            length = a.shape[0]
        elif a.shape[0] != length:
            raise ValueError(f"returns[{name!r}] has {a.shape[0]} days, the first book {length}")
        if not np.all(np.isfinite(a)):
            bad = int(np.flatnonzero(~np.isfinite(a))[0])
            raise ValueError(f"returns[{name!r}] must be finite; position {bad} is {a[bad]}")
        out[str(name)] = a
    return out


# --------------------------------------------------------------------------------------------------
# vectorised measures over many paths
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# stationary bootstrap indices
# --------------------------------------------------------------------------------------------------


def politis_white_block_length(x: np.ndarray) -> float:
    """Politis-White (2004) optimal mean block length of the stationary bootstrap, with the
    Patton-Politis-White (2009) correction: the algorithm of ``arch.bootstrap.optimal_block_length``
    (column ``stationary``) line for line, in numpy (``arch`` costs seconds of import, numba
    included, in every fresh run process; tests compare the two to rounding).

    ``m`` is the first lag where ``k_n = max(5, int(log10 n))`` consecutive autocorrelations are all
    inside ``+-2 sqrt(log10(n) / n)``, doubled (at least 2), capped at ``ceil(sqrt n) + k_n``; with a
    flat-top lag window ``g = sum 2 lambda_k k acv_k``, ``G = acv_0 + sum 2 lambda_k acv_k``, the block
    length is ``(2 g^2 / (2 G^2))^(1/3) n^(1/3)``, at most ``ceil(min(3 sqrt n, n / 3))``.
    """
    x = np.asarray(x, dtype=np.float64)
    nobs = x.shape[0]
    eps = x - x.mean(0)
    b_max = np.ceil(min(3 * np.sqrt(nobs), nobs / 3))
    kn = max(5, int(np.log10(nobs)))
    m_max = int(np.ceil(np.sqrt(nobs))) + kn
    cv = 2 * np.sqrt(np.log10(nobs) / nobs)
    acv = np.zeros(m_max + 1)
    abs_acorr = np.zeros(m_max + 1)
    opt_m: int | None = None
    with np.errstate(divide="ignore", invalid="ignore"):
        for i in range(m_max + 1):
            v1 = eps[i + 1:] @ eps[i + 1:]
            v2 = eps[: -(i + 1)] @ eps[: -(i + 1)]
            cross_prod = eps[i:] @ eps[: nobs - i]
            acv[i] = cross_prod / nobs
            abs_acorr[i] = np.abs(cross_prod) / np.sqrt(v1 * v2)
            if i >= kn and opt_m is None and np.all(abs_acorr[i - kn: i] < cv):
                opt_m = i - kn
        m = 2 * max(opt_m, 1) if opt_m is not None else m_max
        m = min(m, m_max)
        g = 0.0
        lr_acv = acv[0]
        for k in range(1, m + 1):
            lam = 1 if k / m <= 1 / 2 else 2 * (1 - k / m)
            g += 2 * lam * k * acv[k]
            lr_acv += 2 * lam * acv[k]
        d_sb = 2 * lr_acv**2
        b_sb = ((2 * g**2) / d_sb) ** (1 / 3) * nobs ** (1 / 3)
    return float(min(b_sb, b_max))


def default_block_length(returns: np.ndarray) -> int:
    """Default mean block length: ``max(5, ceil(b_sb))``, ``b_sb`` the Politis-White estimate.

    ``b_sb`` is :func:`politis_white_block_length` (equal to
    ``arch.bootstrap.optimal_block_length(returns)["stationary"]``); when it is undefined (``nan``,
    e.g. a constant series) the result is 5.

    Parameters
    ----------
    returns : array (T,), daily returns (the first book's in :func:`bootstrap_deltas`).

    Returns
    -------
    int, at least 5.
    """
    b = politis_white_block_length(np.asarray(returns, dtype=np.float64))
    if not math.isfinite(b):
        return MIN_DEFAULT_BLOCK_LENGTH
    return max(MIN_DEFAULT_BLOCK_LENGTH, int(math.ceil(b)))


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


# --------------------------------------------------------------------------------------------------
# bootstrap of the deltas
# --------------------------------------------------------------------------------------------------


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
        "point": _clean(point),
        "mean": _clean(mean),
        "std_error": _clean(se),
        "ci_lower": _clean(lo),
        "ci_upper": _clean(hi),
        "p_positive": _clean(pp),
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
    books = _validated_returns(returns)
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
        "point": {n: {k: _clean(v) for k, v in m.items()} for n, m in point.items()},
        "pairs": pair_rows,
    }


# --------------------------------------------------------------------------------------------------
# sub-periods
# --------------------------------------------------------------------------------------------------


def _iso(d: np.datetime64) -> str:
    return str(np.datetime64(d, "D"))


def subperiod_table(
    dates: np.ndarray,
    returns: Mapping[str, np.ndarray],
    n_parts: int = 3,
    risk_free: float = 0.0,
) -> list[dict[str, Any]]:
    """Measures of every book over ``n_parts`` consecutive pieces of the window.

    The ``T`` days are cut into ``n_parts`` consecutive, non-overlapping pieces covering every day
    once, of ``T // n_parts`` or ``T // n_parts + 1`` days (``numpy.array_split``: the longer
    pieces first). Each piece gets CAGR, Sharpe (with the daily ``risk_free``), max drawdown and
    Calmar of every book, computed by :mod:`alloc_assets.core.report.metrics` on the slice, and, when a
    book named ``"baseline"`` exists, the delta ``book - baseline`` of each measure for every other
    book.

    Parameters
    ----------
    dates : array (T,) of ``datetime64`` (day resolution or finer), ascending.
    returns : book name -> array (T,) of daily simple returns on ``dates``.
    n_parts : number of pieces, ``1 <= n_parts <= T``.
    risk_free : constant daily risk-free rate for the Sharpe ratio.

    Returns
    -------
    list of ``n_parts`` JSON-ready dicts::

        {part (1-based), start, end (ISO dates, inclusive), n_days,
         books {book: {cagr, sharpe, max_drawdown, calmar}},
         delta_vs_baseline {book: {cagr, sharpe, max_drawdown, calmar}}}   ({} without a baseline)
    """
    books = _validated_returns(returns)
    d = np.asarray(dates).astype("datetime64[D]")
    t = len(next(iter(books.values())))
    if d.ndim != 1 or d.shape[0] != t:
        raise ValueError(f"dates ({d.shape}) and returns ({t},) differ in length")
    if t > 1 and np.any(np.diff(d) < np.timedelta64(0, "D")):
        raise ValueError("dates must be sorted ascending")
    n_parts = int(n_parts)
    if not 1 <= n_parts <= t:
        raise ValueError(f"n_parts must lie in [1, {t}], got {n_parts}")

    rows: list[dict[str, Any]] = []
    for part, piece in enumerate(np.array_split(np.arange(t), n_parts), start=1):
        lo, hi = int(piece[0]), int(piece[-1]) + 1
        values: dict[str, dict[str, float]] = {}
        for name, r in books.items():
            s = r[lo:hi]
            values[name] = {
                "cagr": float(cagr(s)),
                "sharpe": float(sharpe_ratio(s, risk_free)),
                "max_drawdown": float(max_drawdown(s)),
                "calmar": float(calmar_ratio(s)),
            }
        deltas: dict[str, dict[str, float | None]] = {}
        if BASELINE in values:
            base = values[BASELINE]
            for name, v in values.items():
                if name != BASELINE:
                    deltas[name] = {k: _clean(v[k] - base[k]) for k in SUBPERIOD_METRICS}
        rows.append({
            "part": part,
            "start": _iso(d[lo]),
            "end": _iso(d[hi - 1]),
            "n_days": hi - lo,
            "books": {n: {k: _clean(v[k]) for k in SUBPERIOD_METRICS} for n, v in values.items()},
            "delta_vs_baseline": deltas,
        })
    return rows


# --------------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int = 1) -> str:
    sep = ["---" if i < align_right_from else "---:" for i in range(len(header))]
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _fmt(x: float | None, spec: str = "+.3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _fmt_metric(metric: str, x: float | None, signed: bool) -> str:
    """Percent for CAGR and max drawdown, 3 decimals for ratios."""
    if x is None:
        return "n/a"
    sign = "+" if signed else ""
    if metric in ("cagr", "max_drawdown"):
        return format(100.0 * x, sign + ".2f") + " %"
    return format(x, sign + ".3f")


def significance_table_md(result: Mapping[str, Any]) -> str:
    """Markdown table of a :func:`bootstrap_deltas` result: one row per pair and measure.

    Columns: pair, measure, point delta, bootstrap mean, standard error, percentile CI at the
    result's level, share of draws with a positive delta, valid draws. Max-drawdown deltas are in
    percentage points. A caption line states the method, draws, block length and seed.

    Parameters
    ----------
    result : the dict returned by :func:`bootstrap_deltas`.

    Returns
    -------
    str (no trailing newline).
    """
    pct = 100.0 * float(result["level"])
    pct_s = f"{pct:.0f}" if float(pct).is_integer() else f"{pct:g}"
    caption = (
        f"Stationary block bootstrap ({result['index_generator']}): {result['n_draws']} draws of "
        f"{result['n_obs']} days, mean block length {result['block_length']} days "
        f"({result['block_length_rule']}), seed {result['seed']}; percentile intervals at {pct_s} %. "
        "Deltas are a - b; a positive delta favours a (max drawdown: a shallower drawdown)."
    )
    rows = []
    for p in result["pairs"]:
        for k in DELTA_METRICS:
            s = p["deltas"][k]
            ci = f"[{_fmt_metric(k, s['ci_lower'], True)}, {_fmt_metric(k, s['ci_upper'], True)}]"
            rows.append((
                p["label"], _METRIC_LABELS[k], _fmt_metric(k, s["point"], True), _fmt_metric(k, s["mean"], True),
                _fmt_metric(k, s["std_error"], False), ci, _fmt(s["p_positive"], ".3f"), s["n_valid"],
            ))
    table = _md_table(
        ("pair", "measure", "point", "boot mean", "std error", f"{pct_s} % CI", "P(delta > 0)", "draws"),
        rows,
        align_right_from=2,
    )
    return caption + "\n\n" + table


def subperiods_table_md(rows: Sequence[Mapping[str, Any]]) -> str:
    """Markdown table of :func:`subperiod_table` rows: one line per piece and book, then its deltas.

    CAGR and max drawdown are in percent (deltas in percentage points), ratios to 3 decimals; a
    delta line reads ``book - baseline``.

    Parameters
    ----------
    rows : the list returned by :func:`subperiod_table`.

    Returns
    -------
    str (no trailing newline).
    """
    out = []
    for row in rows:
        period = f"{row['part']}: {row['start']} to {row['end']}"
        for name, v in row["books"].items():
            out.append((period, row["n_days"], name, *(_fmt_metric(k, v[k], False) for k in SUBPERIOD_METRICS)))
        for name, v in row["delta_vs_baseline"].items():
            out.append((period, row["n_days"], f"{name} - {BASELINE}", *(_fmt_metric(k, v[k], True) for k in SUBPERIOD_METRICS)))
    return _md_table(("period", "days", "book", *(_METRIC_LABELS[k] for k in SUBPERIOD_METRICS)), out, align_right_from=3)
