"""Daily return series of several books on common dates, checked once for the bootstrap and the
sub-periods (pure; numpy only). Outputs are JSON-ready: ``None`` for an undefined or infinite value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def finite_or_none(x: Any) -> float | None:
    """A plain float, ``None`` for ``nan``/``inf``."""
    f = float(x)
    return f if math.isfinite(f) else None



def validated_returns(returns: Mapping[str, Any]) -> dict[str, np.ndarray]:
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
