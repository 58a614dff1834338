"""Where the search looks and when it stops: the parameter bounds, the sliced Latin hypercube
(each batch a Latin hypercube, the whole budget one too) and the plateau stopping rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alloc_assets.sim.search.rule import PARAMETERS, WEIGHT_FUNCTIONS, StrategyParams, strategy_params


@dataclass(frozen=True)
class SearchSpace:
    """Bounds of the searched parameters (weight function: uniform over :data:`WEIGHT_FUNCTIONS`)."""

    target_vol: tuple[float, float] = (0.05, 0.20)
    window_months: tuple[float, float] = (6.0, 24.0)
    risk_aversion: tuple[float, float] = (0.5, 5.0)
    cost_bps: tuple[float, float] = (0.0, 20.0)

    def scale(self, u: np.ndarray) -> StrategyParams:
        """Map unit samples (n, 5) (columns in :data:`PARAMETERS` order) onto the space."""
        cols = []
        for j, name in enumerate(PARAMETERS[:4]):
            lo, hi = getattr(self, name)
            cols.append(lo + (hi - lo) * u[:, j])
        fn = np.minimum(np.floor(u[:, 4] * len(WEIGHT_FUNCTIONS)), len(WEIGHT_FUNCTIONS) - 1).astype(np.int64)
        tau, win, lam, cost = cols
        return strategy_params(tau, win, lam, fn, cost)


def sliced_latin_hypercube(n_slices: int, slice_size: int, n_dims: int, rng: np.random.Generator) -> np.ndarray:
    """Sliced Latin hypercube (Qian 2012) in [0, 1): shape (n_slices, slice_size, n_dims).

    With ``n = n_slices x slice_size``: every slice has one point in each of the ``slice_size``
    equal strata of every dimension, and all ``n`` points have one in each of the ``n`` fine strata.
    """
    n = n_slices * slice_size
    out = np.empty((n_slices, slice_size, n_dims))
    for d in range(n_dims):
        # coarse stratum j holds fine strata j*n_slices .. j*n_slices + n_slices - 1: one per slice
        fine = np.stack([j * n_slices + rng.permutation(n_slices) for j in range(slice_size)], axis=1)  # (slices, size)
        for b in range(n_slices):
            cells = fine[b, rng.permutation(slice_size)]
            out[b, :, d] = (cells + rng.random(slice_size)) / n
    return out


def plateau_reached(objectives, window: int = 20, rel_tol: float = 0.01, abs_floor: float = 0.01) -> bool:
    """Whether the best objective stopped improving: the stopping rule of :func:`run_search`.

    ``objectives`` (n,) or (n, S) in evaluation order. True when ``n > window`` and, for every
    column, ``best(n) - best(n - window) < rel_tol x max(|best(n - window)|, abs_floor)`` where
    ``best(k)`` is the maximum of the first k values (NaN ignored).
    """
    obj = np.asarray(objectives, dtype=np.float64)
    obj = obj[:, None] if obj.ndim == 1 else obj
    n = obj.shape[0]
    if n <= window:
        return False
    filled = np.where(np.isnan(obj), -np.inf, obj)
    before = filled[: n - window].max(axis=0)
    now = filled.max(axis=0)
    scale = np.maximum(np.abs(before), abs_floor)
    return bool(np.all(np.isfinite(before)) and np.all(now - before < rel_tol * scale))
