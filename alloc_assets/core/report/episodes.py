"""Drawdown episodes of the baseline book, found from the data (pure; numpy only, no Dagster import).

An *episode* is one drawdown of the baseline equity curve, from its high-water mark to full recovery,
whose maximum drawdown is deeper than a threshold (15 % by default). For each episode the module reports
the depth of every other book over the same window and when (and how much) the governor de-risked.

Conventions
-----------
* ``equity[t]`` is the wealth after day ``t``; the wealth before the first day is 1.0. The high-water
  mark therefore starts at 1.0, so a loss on day 0 is measured from 1.0 (the same convention as
  ``quantstats.stats.to_drawdown_series`` on returns, which inserts a phantom baseline of 1.0).
* Indices are positions in ``dates``. When the high-water mark of an episode is that initial wealth
  (the drawdown starts on day 0), ``peak_idx`` is ``-1`` and the ``peak`` date is ``dates[0]``: the
  wealth 1.0 held at the start of the first day. Never index an array with ``peak_idx`` directly
  (``-1`` means the initial wealth 1.0, not the last element; see :func:`window_drawdown`).
* Offsets (``derisk_days_from_peak``, ``derisk_days_from_trough``, ``length_days``) are counted in
  trading days, i.e. differences of indices into ``dates``.
* Episodes do not overlap: one runs from a peak to the first day the equity is back at or above the
  peak level; a new one can only start after that recovery. An episode still open on the last day is
  reported with ``recovery=None`` when it is deep enough.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from alloc_assets.core.common.dates import iso_day_or_none

DEFAULT_THRESHOLD = 0.15
DERISK_TOL = 1e-9

__all__ = [
    "DEFAULT_THRESHOLD",
    "DERISK_TOL",
    "Episode",
    "drawdown_episodes",
    "episodes_table_md",
    "find_drawdown_episodes",
    "window_drawdown",
]


@dataclass(frozen=True)
class Episode:
    """One baseline drawdown deeper than the threshold.

    Attributes
    ----------
    peak : numpy.datetime64
        Date of the last high-water mark before the trough (``datetime64[D]``). ``dates[0]`` when the
        high-water mark is the initial wealth 1.0 (then ``peak_idx == -1``).
    trough : numpy.datetime64
        Date of the lowest baseline equity between the peak and the recovery (first one on ties).
    recovery : numpy.datetime64 or None
        First date on which the baseline equity is back at or above the peak level; ``None`` when it
        has not recovered by the last date.
    peak_idx, trough_idx : int
        Positions of the peak and the trough in ``dates`` (``peak_idx == -1``: the initial wealth).
    recovery_idx : int or None
        Position of the recovery in ``dates``, ``None`` when not recovered.
    depths : dict[str, float]
        Maximum drawdown (a negative fraction, e.g. ``-0.35``) over the window ``[peak, recovery]``
        (``[peak, last date]`` when not recovered) of the baseline (key ``"baseline"``) and of each
        other curve, each measured from its own running maximum within the window, which starts at
        that curve's value on the peak date. ``nan`` when a curve has a non-finite value in the window.
    first_derisk_date : numpy.datetime64 or None
        First date in ``[peak, recovery-or-end]`` on which the scalar is below ``1 - 1e-9``;
        ``None`` when it never is.
    derisk_days_from_peak : int or None
        Trading days from the peak to ``first_derisk_date`` (negative when the cut in force at the
        peak began before it).
    derisk_days_from_trough : int or None
        Trading days from the trough to ``first_derisk_date`` (negative: de-risked before the trough).
    derisk_before_trough_share : float or None
        ``sum(d_t, t in [peak, trough)) / sum(d_t, t in [peak, recovery-or-end])`` with
        ``d_t = max(0, 1 - scalar_t)``; ``None`` when the denominator is 0.
    length_days : int
        Trading days from the peak to the recovery, or to the last date when not recovered
        (``end_idx - peak_idx``).
    """

    peak: np.datetime64
    trough: np.datetime64
    recovery: np.datetime64 | None
    peak_idx: int
    trough_idx: int
    recovery_idx: int | None
    depths: dict[str, float]
    first_derisk_date: np.datetime64 | None
    derisk_days_from_peak: int | None
    derisk_days_from_trough: int | None
    derisk_before_trough_share: float | None
    length_days: int
    scalar_at_peak: float | None = None

    @property
    def recovered(self) -> bool:
        """Whether the baseline was back at its peak level by the last date."""
        return self.recovery_idx is not None

    def to_json(self) -> dict[str, Any]:
        """The episode as plain Python types.

        Returns
        -------
        dict
            Dates as ISO strings (``"YYYY-MM-DD"``) or ``None``; indices and day counts as ``int`` or
            ``None``; depths and the share as ``float``, a non-finite value becoming ``None``.
        """
        return {
            "peak": iso_day_or_none(self.peak),
            "trough": iso_day_or_none(self.trough),
            "recovery": iso_day_or_none(self.recovery),
            "peak_idx": int(self.peak_idx),
            "trough_idx": int(self.trough_idx),
            "recovery_idx": None if self.recovery_idx is None else int(self.recovery_idx),
            "depths": {str(k): _finite_or_none(v) for k, v in self.depths.items()},
            "first_derisk_date": iso_day_or_none(self.first_derisk_date),
            "derisk_days_from_peak": None if self.derisk_days_from_peak is None else int(self.derisk_days_from_peak),
            "derisk_days_from_trough": None if self.derisk_days_from_trough is None else int(self.derisk_days_from_trough),
            "derisk_before_trough_share": _finite_or_none(self.derisk_before_trough_share),
            "length_days": int(self.length_days),
            "scalar_at_peak": _finite_or_none(self.scalar_at_peak),
        }


def _finite_or_none(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _as_dates(dates: Sequence[Any] | np.ndarray) -> np.ndarray:
    d = np.asarray(dates).astype("datetime64[D]")
    if d.ndim != 1:
        raise ValueError(f"dates must be 1-D, got shape {d.shape}")
    return d


def _as_curve(x: Sequence[float] | np.ndarray, n: int, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {a.shape}")
    return a


def find_drawdown_episodes(dates: Sequence[Any] | np.ndarray, baseline_equity: Sequence[float] | np.ndarray,
                           threshold: float = DEFAULT_THRESHOLD) -> list[tuple[int, int, int | None]]:
    """Find every drawdown of an equity curve deeper than ``threshold``.

    The high-water mark is the running maximum of ``[1.0, equity[0], equity[1], ...]`` (wealth 1.0
    before the first day). A drawdown period is a maximal run of days with ``equity < high-water mark``;
    its peak is the last day at the high-water mark before the run (``-1`` for the initial wealth), its
    trough the first day of lowest equity in the run and its recovery the first day after the run
    (``equity >= peak level``), ``None`` if the run lasts to the last day. The period is an episode when
    ``equity[trough] / peak level - 1 < -threshold`` (strictly deeper).

    Parameters
    ----------
    dates : array-like of dates, shape (T,)
        Trading dates (only their number is used; kept for a uniform signature).
    baseline_equity : array-like of float, shape (T,)
        Wealth after each day; finite and positive.
    threshold : float, default 0.15
        Minimum depth, as a positive fraction.

    Returns
    -------
    list of (int, int, int or None)
        ``(peak_idx, trough_idx, recovery_idx)`` per episode, in time order.

    Raises
    ------
    ValueError
        On mismatched shapes, a non-finite or non-positive equity value, or a negative threshold.
    """
    d = _as_dates(dates)
    eq = _as_curve(baseline_equity, d.size, "baseline_equity")
    if not (threshold >= 0.0 and math.isfinite(threshold)):
        raise ValueError(f"threshold must be a finite non-negative fraction, got {threshold!r}")
    if eq.size == 0:
        return []
    if not np.all(np.isfinite(eq)) or np.any(eq <= 0.0):
        raise ValueError("baseline_equity must be finite and positive")

    w = np.concatenate(([1.0], eq))          # w[k] = wealth after day k-1; w[0] = initial wealth
    hwm = np.maximum.accumulate(w)
    under = w < hwm                          # under[0] is always False
    # Runs of ``under``: starts where it turns True, ends (exclusive) where it turns False.
    edges = np.diff(under.astype(np.int8))
    starts = np.flatnonzero(edges == 1) + 1
    stops = np.flatnonzero(edges == -1) + 1
    out: list[tuple[int, int, int | None]] = []
    for i, s in enumerate(starts):
        e = int(stops[i]) if i < stops.size else None   # first index (in w) back at the peak level
        peak_w = int(s) - 1
        seg = w[s:e]
        trough_w = int(s) + int(np.argmin(seg))
        depth = w[trough_w] / w[peak_w] - 1.0
        if depth < -threshold:
            out.append((peak_w - 1, trough_w - 1, None if e is None else e - 1))
    return out


def window_drawdown(equity: np.ndarray, start_idx: int, end_idx: int) -> float:
    """Maximum drawdown of ``equity`` within the window ``[start_idx, end_idx]`` (inclusive).

    ``min_t equity[t] / max(equity[start_idx..t]) - 1`` for ``t`` in the window, the running maximum
    starting at the value on ``start_idx`` (1.0 when ``start_idx == -1``, the initial wealth).

    Parameters
    ----------
    equity : numpy.ndarray, shape (T,)
        Wealth after each day.
    start_idx : int
        First index of the window, ``-1`` for the initial wealth 1.0.
    end_idx : int
        Last index of the window (inclusive).

    Returns
    -------
    float
        A value ``<= 0``; ``nan`` when the window holds a non-finite or non-positive value.
    """
    e = np.asarray(equity, dtype=np.float64)
    if start_idx < 0:
        seg = np.concatenate(([1.0], e[: end_idx + 1]))
    else:
        seg = e[start_idx: end_idx + 1]
    if seg.size == 0 or not np.all(np.isfinite(seg)) or np.any(seg <= 0.0):
        return float("nan")
    return float(np.min(seg / np.maximum.accumulate(seg)) - 1.0)


def drawdown_episodes(dates: Sequence[Any] | np.ndarray, baseline_equity: Sequence[float] | np.ndarray,
                      others: Mapping[str, Sequence[float] | np.ndarray], scalar: Sequence[float] | np.ndarray,
                      threshold: float = DEFAULT_THRESHOLD) -> list[Episode]:
    """Every baseline drawdown deeper than ``threshold``, with the depth of each book and the de-risking.

    Episodes are found by :func:`find_drawdown_episodes`. With ``p`` the peak index, ``v`` the trough
    index and ``E`` the recovery index (the last index ``T-1`` when not recovered), for each episode:

    * ``depths[name] = min_{t in [p, E]} x[t] / max(x[p..t]) - 1`` for the baseline (key
      ``"baseline"``, equal to ``baseline[v] / baseline[p] - 1``) and for each curve ``x`` of
      ``others``; ``x[-1]`` is the initial wealth 1.0.
    * ``first_derisk_date``: the first date ``t`` in ``[max(p, 0), E]`` with
      ``scalar[t] < 1 - 1e-9``, moved back to the first day of its spell when the scalar was
      already below 1 at the peak (a cut carried into the episode dates from when it was made, not
      from the peak); ``derisk_days_from_peak = t - p`` (negative for such a cut) and
      ``derisk_days_from_trough = t - v`` (negative when before the trough); all ``None`` if none.
    * ``derisk_before_trough_share = sum_{t in [p, v)} d_t / sum_{t in [p, E]} d_t`` with
      ``d_t = max(0, 1 - scalar[t])`` (a non-finite scalar counts as no de-risking, ``d_t = 0``; the
      sums start at ``max(p, 0)``); ``None`` when the denominator is 0. It is the share of the
      cumulative cut in exposure (in scalar-days) applied over the whole episode that was in force on
      days before the trough day.
    * ``length_days = E - p``.

    Parameters
    ----------
    dates : array-like of dates, shape (T,)
        Trading dates.
    baseline_equity : array-like of float, shape (T,)
        Baseline wealth after each day (wealth 1.0 before the first day).
    others : mapping of str to array-like of float, shape (T,)
        Other equity curves on the same dates, e.g. ``"scaled"``, ``"exposure_matched"``,
        ``"vol_cap"``, ``"jump_model"``. The name ``"baseline"`` is not allowed.
    scalar : array-like of float, shape (T,)
        The governor's scalar applied on each date (1.0 = fully invested).
    threshold : float, default 0.15
        Minimum baseline depth, as a positive fraction (strictly deeper is an episode).

    Returns
    -------
    list of Episode
        In time order; empty when no drawdown is deeper than ``threshold``.

    Raises
    ------
    ValueError
        On mismatched shapes, a bad baseline or threshold, or an other curve named ``"baseline"``.
    """
    d = _as_dates(dates)
    n = d.size
    base = _as_curve(baseline_equity, n, "baseline_equity")
    curves = {str(k): _as_curve(v, n, f"others[{k!r}]") for k, v in others.items()}
    if "baseline" in curves:
        raise ValueError("others must not contain the key 'baseline'")
    s = _as_curve(scalar, n, "scalar")
    cut = np.where(np.isfinite(s), np.maximum(0.0, 1.0 - s), 0.0)
    derisked = np.isfinite(s) & (s < 1.0 - DERISK_TOL)

    episodes: list[Episode] = []
    for p, v, r in find_drawdown_episodes(d, base, threshold):
        end = (n - 1) if r is None else r
        lo = max(p, 0)
        depths = {"baseline": window_drawdown(base, p, end)}
        for name, x in curves.items():
            depths[name] = window_drawdown(x, p, end)

        hits = np.flatnonzero(derisked[lo: end + 1])
        if hits.size:
            t = lo + int(hits[0])
            if t == lo:  # a cut already in force at the peak dates from the start of its spell
                while t > 0 and derisked[t - 1]:  # (before the peak: negative days from the peak)
                    t -= 1
            first_date: np.datetime64 | None = d[t]
            from_peak: int | None = t - p
            from_trough: int | None = t - v
        else:
            first_date, from_peak, from_trough = None, None, None

        total = float(np.sum(cut[lo: end + 1]))
        share = float(np.sum(cut[lo:v]) / total) if total > 0.0 else None

        episodes.append(Episode(
            peak=d[lo], trough=d[v], recovery=None if r is None else d[r],
            peak_idx=p, trough_idx=v, recovery_idx=r, depths=depths,
            scalar_at_peak=float(s[lo]) if np.isfinite(s[lo]) else None,
            first_derisk_date=first_date, derisk_days_from_peak=from_peak,
            derisk_days_from_trough=from_trough, derisk_before_trough_share=share,
            length_days=end - p,
        ))
    return episodes


def _pct(x: float | None) -> str:
    x = _finite_or_none(x)
    return "n/a" if x is None else f"{100.0 * x:.1f} %"


def episodes_table_md(episodes: Iterable[Episode]) -> str:
    """The episodes as a markdown table.

    Columns: peak, trough, recovery (``not recovered`` when open), the depth of the baseline, of
    ``scaled`` (when present) and of each other curve (in the order first seen), the first de-risking
    in trading days relative to the trough (signed: ``-12`` is 12 days before the trough), and the share
    of the de-risking acting before the trough. Depths and shares are percentages with one decimal
    (``-35.0 %``); a missing value is ``n/a``.

    Parameters
    ----------
    episodes : iterable of Episode

    Returns
    -------
    str
        The table (no trailing newline); the line ``No drawdown episodes.`` when there is none.
    """
    eps = list(episodes)
    if not eps:
        return "No drawdown episodes."
    names: list[str] = []
    for e in eps:
        for k in e.depths:
            if k != "baseline" and k not in names:
                names.append(k)
    if "scaled" in names:
        names.remove("scaled")
        names.insert(0, "scaled")
    head = ["peak", "trough", "recovery", "baseline depth"] + [f"{k} depth" for k in names] + [
        "first de-risk vs trough (days)", "de-risk share before trough"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(head) - 3)) + "|"]
    for e in eps:
        days = "n/a" if e.derisk_days_from_trough is None else f"{e.derisk_days_from_trough:+d}"
        row = [iso_day_or_none(e.peak) or "", iso_day_or_none(e.trough) or "", iso_day_or_none(e.recovery) or "not recovered",
               _pct(e.depths.get("baseline"))]
        row += [_pct(e.depths.get(k)) for k in names]
        row += [days, _pct(e.derisk_before_trough_share)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
