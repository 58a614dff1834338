"""Reads of the market and allocator tables as the typed inputs of the core functions.

A missing or inconsistent input raises ``WarehouseDataError``: fixed by materializing (or fixing)
the upstream table, never by a retry; the Dagster layer turns it into a failure without retry.
"""

import datetime as dt

import numpy as np
import polars as pl

from alloc_assets.core.allocator.feature_config import StateFrame
from alloc_assets.core.market.calendar import last_contiguous_session
from alloc_assets.core.market.panel import PricePanel
from resources.settings import sessions


class WarehouseDataError(Exception):
    """Stored data a computation needs is missing or inconsistent. ``missing``: the days lacking
    (shown with the failure)."""

    def __init__(self, description: str, missing: list | None = None):
        super().__init__(description)
        self.missing = list(missing or [])


def stored_indicator_names(warehouse) -> list[str]:
    """The indicators stored beside the prices (``market_indicators``), sorted: they enter the
    latent state as exogenous features, never the traded universe."""
    if not warehouse.table_exists("market_indicators"):
        return []
    return warehouse.query("SELECT DISTINCT name FROM market_indicators ORDER BY name")["name"].to_list()


def history_span(warehouse) -> tuple[dt.date | None, dt.date | None]:
    """First stored market day and the last one reached from it without a gap: the span every
    derived layer, the backtests and the world model cover."""
    if not warehouse.table_exists("market_prices"):
        return None, None
    days = warehouse.query("SELECT DISTINCT date FROM market_prices ORDER BY date")["date"].to_list()
    if not days:
        return None, None
    sessions()  # the calendar from $ALLOC_HOME/cache: a new run process need not rebuild it
    return days[0], last_contiguous_session(days[0], days)


def load_panel(warehouse, start: dt.date, end: dt.date) -> PricePanel:
    """Prices (and benchmark, sectors) of [start, end] from the warehouse as a ``PricePanel``."""
    prices = warehouse.query("SELECT date, symbol, close FROM market_prices WHERE date BETWEEN ? AND ?", [start, end])
    if prices.height == 0:
        raise WarehouseDataError(f"market_prices has no rows between {start} and {end}; materialize it first.")
    wide = prices.pivot(on="symbol", index="date", values="close").sort("date")
    symbols = tuple(sorted(c for c in wide.columns if c != "date"))
    close = wide.select(symbols).to_numpy().astype(np.float64)
    if not np.isfinite(close).all():
        raise WarehouseDataError("market_prices has a symbol missing on some date in the window; re-run market_prices.")
    dates = wide["date"].to_numpy().astype("datetime64[D]")
    bench = None
    has_benchmark = warehouse.table_exists("market_benchmark") and \
        warehouse.query("SELECT count(*) AS n FROM market_benchmark")["n"][0] > 0
    if has_benchmark:  # a data set with a benchmark needs it on every day: never a silent switch
        b = warehouse.query("SELECT date, close FROM market_benchmark WHERE date BETWEEN ? AND ? ORDER BY date", [start, end])
        got = set(b["date"].to_list())
        missing = [d for d in wide["date"].to_list() if d not in got]
        if missing:
            raise WarehouseDataError(
                f"market_benchmark has no close on {len(missing)} stored trading day(s) between {start} and {end} "
                f"(first: {missing[0]}): the benchmark would silently become the equal-weight index. Land a file "
                "with the benchmark column for those days (or fix the source) and re-run.")
        b = b.filter(pl.col("date").is_in(wide["date"].to_list()))
        bench = b["close"].to_numpy().astype(np.float64)
    sectors = {}
    if warehouse.table_exists("market_sectors"):
        sec = warehouse.query("SELECT symbol, sector FROM market_sectors")
        sectors = dict(zip(sec["symbol"].to_list(), sec["sector"].to_list()))
    return PricePanel(dates, symbols, close, bench, sectors)


def load_indicators(warehouse, dates: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Each indicator aligned to ``dates`` (NaN where the day has no value; the encoder carries
    the last value forward, so a value dated t uses data through t only)."""
    if not names or len(dates) == 0:
        return {}
    days = [dt.date.fromisoformat(str(d)) for d in dates.astype("datetime64[D]")]
    rows = warehouse.query("SELECT date, name, value FROM market_indicators WHERE date BETWEEN ? AND ?",
                           [days[0], days[-1]])
    pos = {d: i for i, d in enumerate(days)}
    out = {n: np.full(len(days), np.nan) for n in names}
    for d, n, v in rows.iter_rows():
        if d in pos and n in out and v is not None:
            out[n][pos[d]] = v
    return out


def load_state(warehouse, start: dt.date, end: dt.date) -> StateFrame:
    """The stored latent state of [start, end] as a ``StateFrame``."""
    rows = warehouse.query("SELECT * FROM latent_state WHERE date BETWEEN ? AND ? ORDER BY date", [start, end])
    if rows.height == 0:
        raise WarehouseDataError(f"latent_state has no rows between {start} and {end}; materialize it first.")
    cols = tuple(c for c in rows.columns if c not in ("date", "warm"))
    return StateFrame(rows["date"].to_numpy().astype("datetime64[D]"), cols,
                      rows.select(cols).to_numpy().astype(np.float64), rows["warm"].to_numpy().astype(bool))


def recent_regime_labels(warehouse, start: dt.date, frame: pl.DataFrame) -> np.ndarray:
    """Labels of the 252 days ending at ``frame``'s last date (stored ones before ``start``)."""
    before = pl.DataFrame()
    if warehouse.table_exists("regime_series"):
        before = warehouse.query("SELECT date, regime FROM regime_series WHERE date < ? ORDER BY date DESC LIMIT 252", [start])
    labels = (before["regime"].to_list()[::-1] if before.height else []) + frame["regime"].to_list()
    return np.array(labels[-252:])
