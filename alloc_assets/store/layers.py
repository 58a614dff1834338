"""Incremental layers: which days a derived table recomputes, from which stored carry, and the write.

A layer (latent_state, regime_series, risk_scalars) reads the change log of its upstream
(``layer_changes``) since the version it consumed last (``layer_watermark``) and recomputes from
the earliest changed day through the last day its upstream holds without a gap, continuing from
the stored carry of the day before (or the latest checkpoint before it). Carries are stored at
every month end and at the last date; carries and watermarks are keyed by a hash of the settings,
so changing the settings recomputes from the first day.
"""

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from alloc_assets.core.market.calendar import next_session, rebalance_mask, sessions_between
from alloc_assets.store.readers import WarehouseDataError, history_span
from resources.settings import sessions
from resources.warehouse import Change, Watermark


def previous_session(day: dt.date) -> dt.date | None:
    """The trading session before ``day`` (None: ``day`` is on or before the first session)."""
    s = sessions()
    pos = s.searchsorted(np.datetime64(day, "D"), side="left")
    return s[pos - 1].date() if pos > 0 else None


def resume_point(warehouse, asset: str, config_hash: str, start: dt.date,
                 first: dt.date) -> tuple[dt.date, dict | None]:
    """Where to start computing for a window starting at ``start``: (from_date, carry before it)."""
    prev = previous_session(start)
    if start <= first or prev is None:
        return first, None
    found = warehouse.latest_carry(asset, config_hash, prev)
    if found is None or found[0] < first:
        return first, None
    carry_date, carry = found
    nxt = sessions_between(carry_date + dt.timedelta(days=1), start)
    return nxt[0].date(), carry


@dataclass(frozen=True)
class LayerPlan:
    """What one materialization of an incremental layer computes: rows ``start``..``through``,
    computed from ``compute_from`` on (with ``carry``, the state after the day before it)."""

    asset: str
    upstream: str
    config_hash: str
    upstream_version: int
    start: dt.date | None        # None: nothing to compute
    through: dt.date | None
    compute_from: dt.date | None
    carry: dict | None
    full: bool
    reason: str

    def watermark(self) -> Watermark:
        return Watermark(self.asset, self.upstream, self.upstream_version, self.config_hash)

    def change(self, run_id: str) -> Change:
        return Change(self.asset, self.start, self.through, run_id)

    def metadata(self) -> dict:
        return {"computed_rows_from": str(self.start) if self.start else "nothing to compute",
                "computed_through": str(self.through) if self.through else "n/a",
                "recomputed_from_carry_of": str(self.compute_from) if self.compute_from else "n/a",
                "full_recompute": self.full, "why": self.reason,
                "upstream_version_consumed": self.upstream_version}


def plan_layer(warehouse, asset: str, upstream: str, config_hash: str,
               upstream_first: dt.date | None, upstream_through: dt.date | None) -> LayerPlan:
    """Where ``asset`` must recompute, from the change log and its watermark (see the module doc)."""
    version = warehouse.latest_version(upstream)
    wm = warehouse.watermark(asset)
    own_last = None
    if warehouse.table_exists(asset):
        own_last = warehouse.query(f"SELECT max(date) AS d FROM {asset}")["d"][0]
    if upstream_first is None or upstream_through is None:
        return LayerPlan(asset, upstream, config_hash, version, None, None, None, None, False,
                         f"{upstream} holds no contiguous days yet")
    if wm is None or own_last is None or wm.config_hash != config_hash or wm.upstream != upstream:
        why = "first run" if wm is None or own_last is None else "settings changed"
        return LayerPlan(asset, upstream, config_hash, version, upstream_first, upstream_through, upstream_first,
                         None, True, f"{why}: recompute from the first day")
    changed = warehouse.changed_since(upstream, wm.version)
    following = next_session(own_last)
    candidates = [d for d in (changed, following) if d is not None]
    start = max(min(candidates), upstream_first) if candidates else None
    if start is None or start > upstream_through:
        return LayerPlan(asset, upstream, config_hash, version, None, upstream_through, None, None, False,
                         f"up to date through {own_last} ({upstream} holds nothing new without a gap)")
    compute_from, carry = resume_point(warehouse, asset, config_hash, start, upstream_first)
    why = (f"{upstream} changed from {changed}" if changed is not None and changed <= (following or changed)
           else f"new days after {own_last}")
    return LayerPlan(asset, upstream, config_hash, version, start, upstream_through, compute_from, carry, False, why)


def table_span(warehouse, table: str) -> tuple[dt.date | None, dt.date | None]:
    """First and last date stored in ``table`` (None, None: no table)."""
    if not warehouse.table_exists(table):
        return None, None
    row = warehouse.query(f"SELECT min(date) AS a, max(date) AS b FROM {table}")
    return row["a"][0], row["b"][0]


def start_layer(warehouse, asset: str, upstream: str, config_hash: str) -> tuple[LayerPlan, dt.date]:
    """The plan of ``asset`` and its upstream's first day (the market: through its last day
    without a gap); an empty upstream raises ``WarehouseDataError``."""
    first, through = history_span(warehouse) if upstream == "market_prices" else table_span(warehouse, upstream)
    if first is None:
        raise WarehouseDataError(f"{upstream} is empty: materialize it first.")
    return plan_layer(warehouse, asset, upstream, config_hash, first, through), first


def write_layer(warehouse, plan: LayerPlan, frame: pl.DataFrame, run_id: str,
                carries: pl.DataFrame | None = None) -> int | None:
    """Replace the layer's rows from ``plan.start`` on, drop stale carries, append the change and
    move the watermark: one transaction."""
    start = dt.date.min if plan.full else plan.start
    return warehouse.replace_window({plan.asset: frame}, start, dt.date.max, carries=carries,
                                    stale_carries=(plan.asset, start), change=plan.change(run_id),
                                    consumed=plan.watermark(), rebuild=plan.full)


def skip_layer(warehouse, plan: LayerPlan) -> None:
    """Nothing new upstream: only move the watermark."""
    warehouse.replace_window({}, dt.date.min, dt.date.min, consumed=plan.watermark())


def require_complete(frame_dates: list[dt.date], start: dt.date, end: dt.date, upstream: str, asset: str) -> None:
    """No silent holes: every session in [start, end] must be present upstream
    (``WarehouseDataError`` listing the missing days otherwise)."""
    expected = list(sessions_between(start, end).date)
    have = set(frame_dates)
    missing = [d for d in expected if d not in have]
    if missing:
        raise WarehouseDataError(
            f"{asset}: {upstream} has no rows for {len(missing)} trading day(s) between {start} and {end} "
            f"(first: {missing[0]}); materialize {upstream} for that range first. Nothing was stored.", missing)


def month_end_carries(dates: np.ndarray, carries, keep_from: int = 0) -> dict[dt.date, dict]:
    """Carries to store: every month end from row ``keep_from`` on, and the last date."""
    mask = rebalance_mask(dates, "monthly")
    mask[-1] = True
    out = {}
    for i in np.flatnonzero(mask):
        if i >= keep_from or i == len(dates) - 1:
            out[dt.date.fromisoformat(str(dates[i]))] = carries[int(i)]
    return out


def window_filter(frame: pl.DataFrame, start: dt.date, end: dt.date) -> pl.DataFrame:
    """The rows dated in [start, end]."""
    return frame.filter((pl.col("date") >= start) & (pl.col("date") <= end))


def to_polars(pdf, keep_nan: bool = False) -> pl.DataFrame:
    """A core (pandas) frame as the table's rows; ``keep_nan``: NaN stays NaN (the state: an
    indicator before its first value) instead of null."""
    frame = pl.from_pandas(pdf, nan_to_null=not keep_nan)
    return frame.with_columns(pl.col("date").cast(pl.Date))


def previous_value(warehouse, table: str, column: str, start: dt.date) -> float | None:
    """``column`` on the last stored date before ``start`` (None: nothing stored before it)."""
    if not warehouse.table_exists(table):
        return None
    rows = warehouse.query(f"SELECT {column} FROM {table} WHERE date < ? ORDER BY date DESC LIMIT 1", [start])
    return float(rows[column][0]) if rows.height else None

