"""The cached jump-model refits (table ``jump_model_fits``: ``key, fit_date, record``).

Each refit is a pure function of its settings and training returns (the key hashes both), so a
restated day only misses the keys whose training data it is part of. Shared by the ``jump_model``
control and the ``jump_model`` regime method.
"""

import json

import numpy as np
import polars as pl

from alloc_assets.core.allocator import jump_model as jm
from alloc_assets.store.readers import WarehouseDataError

JUMP_FITS_TABLE = "jump_model_fits"
_FITS_SCHEMA = {"key": pl.String, "fit_date": pl.String, "record": pl.String}


def jump_fit_rows(warehouse) -> pl.DataFrame:
    """The stored refits (empty frame of the table's schema when there are none)."""
    if not warehouse.table_exists(JUMP_FITS_TABLE):
        return pl.DataFrame(schema=_FITS_SCHEMA)
    return warehouse.query(f"SELECT key, fit_date, record FROM {JUMP_FITS_TABLE}").cast(_FITS_SCHEMA)


def new_fit_rows(fits: list[dict], new: dict[str, dict]) -> pl.DataFrame:
    """The rows of the refits fitted now, in refit order."""
    keep = [f for f in fits if f["key"] in new]
    return pl.DataFrame({"key": [f["key"] for f in keep], "fit_date": [f["fit_date"] for f in keep],
                         "record": [json.dumps(new[f["key"]]) for f in keep]}, schema=_FITS_SCHEMA)


def benchmark_jump_states(warehouse, dates: np.ndarray) -> tuple[np.ndarray, list[dict], dict[str, dict]]:
    """The jump model's online state on each of ``dates`` (0 bull, 1 bear, -1 before its first
    fit) from the benchmark's closes, with the refits in force and those fitted now."""
    if not warehouse.table_exists("market_benchmark"):
        raise WarehouseDataError("the jump_model method needs a benchmark (market_benchmark is "
                                 "missing: the data set has no benchmark column or file); use another regime_method.")
    b = warehouse.query("SELECT date, close FROM market_benchmark WHERE date BETWEEN ? AND ? ORDER BY date",
                        [str(dates[0]), str(dates[-1])])
    if b["date"].to_numpy().astype("datetime64[D]").tolist() != np.asarray(dates).astype("datetime64[D]").tolist():
        raise WarehouseDataError("the jump_model method needs the benchmark's close on every stored day "
                                 "(market_benchmark); land the missing days or use another regime_method.")
    close = b["close"].to_numpy().astype(np.float64)
    r = np.full(len(close), np.nan)
    r[1:] = close[1:] / close[:-1] - 1.0
    rows = jump_fit_rows(warehouse)
    cache = {k: json.loads(v) for k, v in zip(rows["key"].to_list(), rows["record"].to_list())}
    state, fit_date, new, fits = jm.cached_walk_forward(np.asarray(dates).astype("datetime64[D]"), r, cache)
    return np.where(np.isnat(fit_date), -1, state.astype(np.int64)), fits, new
