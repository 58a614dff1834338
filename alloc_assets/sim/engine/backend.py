"""The operations where the JAX and the NumPy runs of the simulated allocator differ.

Every allocator step takes a ``Backend`` (``JAX`` by default, or ``NUMPY``): its array namespace
``xp`` plus a branch, scatters, reductions over a small leading axis (which XLA on CPU runs much
faster unrolled) and the logistic function.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special

@dataclass(frozen=True)
class Backend:
    """The operations where JAX and NumPy differ."""

    xp: ModuleType

    @property
    def is_jax(self) -> bool:
        return self.xp is jnp

    def cond(self, pred, true_fn, false_fn, operand):
        if self.is_jax:
            return jax.lax.cond(pred, true_fn, false_fn, operand)
        return true_fn(operand) if bool(pred) else false_fn(operand)

    def add_at_columns(self, arr, rows, values):
        """``arr[rows[b], b] += values[b]`` for every column b (one row per column: no collisions)."""
        cols = self.xp.arange(arr.shape[1])
        if self.is_jax:
            return arr.at[rows, cols].add(values)
        out = arr.copy()
        out[rows, cols] += values
        return out

    def expit(self, x):
        return jax.nn.sigmoid(x) if self.is_jax else scipy.special.expit(x)

    def sum0(self, x):
        """Sum over axis 0. XLA on CPU reduces a leading (major) axis very slowly, so JAX gets an
        unrolled chain of adds over the (small, static) leading axis, which fuses into one loop."""
        if not self.is_jax:
            return np.sum(x, axis=0)
        out = x[0]
        for i in range(1, x.shape[0]):
            out = out + x[i]
        return out

    def searchsorted_cumulative(self, hist, ranks):
        """For each column b and rank row k: ``searchsorted(cumsum(hist[:, b]), ranks[k, b], "left")``,
        i.e. the number of bins whose cumulative count is below the rank. hist (nbins, B) ints,
        ranks (R, B). JAX runs a ``fori_loop`` over the bins (``cumsum`` over a leading axis is slow on CPU)."""
        if not self.is_jax:
            cum = np.cumsum(hist, axis=0)
            return np.stack([np.sum(cum < r[None, :], axis=0) for r in ranks])

        def body(j, carry):
            cum, idx = carry
            cum = cum + hist[j]
            return cum, idx + (cum[None, :] < ranks).astype(jnp.int32)

        init = (jnp.zeros(hist.shape[1:], hist.dtype), jnp.zeros(ranks.shape, jnp.int32))
        return jax.lax.fori_loop(0, hist.shape[0], body, init)[1]

    def merge_recent(self, hist, recent, count):
        """``hist[recent[j, b], b] += 1`` for rows j < count (count a scalar)."""
        cols = self.xp.arange(hist.shape[1])
        if not self.is_jax:
            if int(count) == 0:
                return hist
            out = hist.copy()
            for j in range(int(count)):
                out[recent[j], cols] += 1
            return out
        return jax.lax.fori_loop(0, count, lambda j, h: h.at[recent[j], cols].add(1), hist)

    def set_row(self, arr, index, row):
        """``arr[index] = row`` (index a scalar)."""
        if not self.is_jax:
            out = arr.copy()
            out[int(index)] = row
            return out
        return jax.lax.dynamic_update_index_in_dim(arr, row, index, 0)

    def count(self, hist):
        """Total count of each column of an int histogram (nbins, B) -> (B,)."""
        if not self.is_jax:
            return np.sum(hist, axis=0)
        return jax.lax.fori_loop(0, hist.shape[0], lambda j, c: c + hist[j], jnp.zeros(hist.shape[1:], hist.dtype))


JAX = Backend(jnp)
NUMPY = Backend(np)
