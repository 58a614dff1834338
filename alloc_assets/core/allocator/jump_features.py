"""Features of the statistical jump model on one index: EWM return, log downside deviation and
Sortino-like ratio at several halflives (pure; numpy/pandas only).

``EWM_h`` is pandas' ``Series.ewm(halflife=h).mean()`` (``adjust=True``, causal), so a row dated t
uses returns through t only. The formulas and the two presets are those of the ``jumpmodels``
package example (feature version ``"v0"``) and of Shu, Yu & Mulvey (2024); see
docs/notes/allocator.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class FeatureSpec:
    """Which features at which halflives (in trading days).

    return_halflives : EWM average return ``ret_h``.
    dd_halflives : log EWM downside deviation ``dd_log_h``.
    sortino_halflives : EWM Sortino-like ratio ``sortino_h``.
    warmup_days : returns observed before a feature row may be used for training or inference
        (default: the longest halflife).
    """

    return_halflives: tuple[float, ...] = (5.0, 20.0, 60.0)
    dd_halflives: tuple[float, ...] = (5.0, 20.0, 60.0)
    sortino_halflives: tuple[float, ...] = (5.0, 20.0, 60.0)
    warmup_days: int | None = None

    def __post_init__(self) -> None:
        hls = self.return_halflives + self.dd_halflives + self.sortino_halflives
        if not hls:
            raise ValueError("FeatureSpec needs at least one feature")
        if any(not (h > 0) for h in hls):
            raise ValueError(f"halflives must be > 0, got {hls}")

    @property
    def halflives(self) -> tuple[float, ...]:
        return tuple(sorted(set(self.return_halflives + self.dd_halflives + self.sortino_halflives)))

    @property
    def warmup(self) -> int:
        return int(np.ceil(max(self.halflives))) if self.warmup_days is None else int(self.warmup_days)

    @property
    def names(self) -> tuple[str, ...]:
        """Column order: by halflife, then ret, dd_log, sortino (the package example's order)."""
        out: list[str] = []
        for h in self.halflives:
            tag = f"{h:g}"
            if h in self.return_halflives:
                out.append(f"ret_{tag}")
            if h in self.dd_halflives:
                out.append(f"dd_log_{tag}")
            if h in self.sortino_halflives:
                out.append(f"sortino_{tag}")
        return tuple(out)


EXAMPLE_V0_FEATURES = FeatureSpec()
SHU_YU_MULVEY_2024_FEATURES = FeatureSpec(return_halflives=(), dd_halflives=(10.0,), sortino_halflives=(20.0, 60.0))


def first_finite(returns: np.ndarray) -> int:
    finite = np.isfinite(returns)
    if not finite.any():
        return len(returns)
    start = int(np.argmax(finite))
    if not finite[start:].all():
        raise ValueError("returns must be finite after the first finite value (only a leading run of NaN is allowed)")
    return start


def usable_rows(r: np.ndarray, x: np.ndarray, features: FeatureSpec) -> tuple[int, int]:
    """``(start, first)``: the first finite return, and the first feature row a fit may use
    (``warmup`` returns after it, every feature finite); ``len(r)`` when there is none."""
    t_len = len(r)
    start = first_finite(r)
    row_ok = np.isfinite(x).all(axis=1)
    cand = np.flatnonzero(row_ok & (np.arange(t_len) >= start + features.warmup))
    first = int(cand[0]) if len(cand) else t_len
    if first < t_len and not row_ok[first:].all():
        raise ValueError("a feature row became non-finite after the first usable row")
    return start, first


def jump_features(returns: np.ndarray, spec: FeatureSpec = EXAMPLE_V0_FEATURES) -> tuple[np.ndarray, tuple[str, ...]]:
    """Feature matrix (T, F) and column names; row t uses ``returns[: t + 1]`` only.

    ``returns``: simple daily returns, a leading run of NaN allowed (e.g. the first day of a
    close-to-close series); those rows are NaN. Rows before the first negative return have
    ``dd_log = -inf`` and a non-finite Sortino ratio (``walk_forward_jump_model`` skips them).
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError("returns must be 1-D")
    names = spec.names
    out = np.full((len(r), len(names)), np.nan)
    start = first_finite(r)
    if start == len(r):
        return out, names
    s = pd.Series(r[start:])
    neg_sq = np.minimum(s, 0.0) ** 2
    cols: dict[str, np.ndarray] = {}
    with np.errstate(divide="ignore", invalid="ignore"):
        for h in spec.halflives:
            tag = f"{h:g}"
            mean = s.ewm(halflife=h).mean().to_numpy()
            dd = np.sqrt(neg_sq.ewm(halflife=h).mean().to_numpy())
            cols[f"ret_{tag}"] = mean
            cols[f"dd_log_{tag}"] = np.log(dd)
            cols[f"sortino_{tag}"] = mean / dd
    for j, name in enumerate(names):
        out[start:, j] = cols[name]
    return out, names


