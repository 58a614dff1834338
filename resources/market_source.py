"""The market data source: the bundled data set by default, or ``ALLOC_MARKET_DATA``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import dagster as dg
import polars as pl
from pydantic import Field

from alloc_assets.core.market.frames import MarketData
from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.market.source import read_market_data
from alloc_assets.core.market.panel import BUNDLED_DIR
from alloc_assets.core.market.reader_settings import ReaderSettings

__all__ = ["MarketDataError", "MarketDataSource"]


def _env_source() -> str:
    return os.environ.get("ALLOC_MARKET_DATA", "")


def _env_indicators() -> str:
    return os.environ.get("ALLOC_INDICATORS", "")


#: Reader settings that change what a file parses to: part of every cache key.
READER_SETTINGS = ("ALLOC_CSV_DELIMITER", "ALLOC_CSV_DECIMAL", "ALLOC_DATE_FORMAT")


def _settings() -> tuple:
    return tuple((k, os.environ.get(k, "")) for k in READER_SETTINGS)


def _reader_settings(settings: tuple) -> ReaderSettings:
    delimiter, decimal, date_format = (value for _, value in settings)
    return ReaderSettings(delimiter=delimiter, decimal=decimal, date_format=date_format)


def reader_settings() -> ReaderSettings:
    """How CSV files are read, from ``ALLOC_CSV_DELIMITER``, ``ALLOC_CSV_DECIMAL`` and
    ``ALLOC_DATE_FORMAT`` (unset: sniffed from each file)."""
    return _reader_settings(_settings())


def _cached_read(path: str, stamp: tuple, indicators: str = "") -> MarketData:
    return _cached_read_with(path, stamp, indicators, _settings())


@lru_cache(maxsize=1024)
def _cached_read_with(path: str, stamp: tuple, indicators: str, settings: tuple) -> MarketData:
    """The parsed source, cached in memory and on disk (``$ALLOC_HOME/cache``, keyed by the files'
    paths, sizes and modification times and the reader settings): a fresh run process (every daemon-launched run) loads the
    parsed frames in milliseconds instead of re-parsing the whole CSV history."""
    import hashlib
    import pickle

    from resources.settings import alloc_home

    key = hashlib.sha256(repr((path, stamp, indicators, settings, "v3")).encode()).hexdigest()[:24]
    cache = alloc_home() / "cache" / f"source-{key}.pkl"
    try:
        return pickle.loads(cache.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        pass
    data = read_market_data(path, indicators=indicators or None, settings=_reader_settings(settings))
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(cache)
    except OSError:
        pass  # a read-only home: no disk cache, same data
    return data


def _stamp(path: Path) -> tuple:
    """Modification times and sizes (of an ``indicators/`` folder's files too): a changed file is
    never served from the cache."""
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    files += [f for d in files if d.is_dir() and d.name == "indicators" for f in sorted(d.iterdir())]
    return tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files if f.exists() and f.is_file())


class MarketDataSource(dg.ConfigurableResource):
    """Where ``market_prices`` reads from.

    ``path``: a CSV or Parquet file, a directory of them, or a directory laid out like the bundled
    set (``prices*``, ``sp500_index*`` as the benchmark, ``sectors.csv``, ``indicators/``). Empty: the bundled
    US equities set (20 stocks and the S&P 500, 1990-2022). Defaults to ``$ALLOC_MARKET_DATA``.
    """

    path: str = Field(default="", description="File or directory; empty = $ALLOC_MARKET_DATA, else the bundled set "
                      "(resolved when used).")
    indicators: str = Field(default="", description="Indicator file or folder (VIX, spreads, yields: regime inputs, "
                            "never traded) besides an ``indicators/`` folder inside the source; empty = "
                            "$ALLOC_INDICATORS (resolved when used).")

    def _configured(self) -> str:
        return self.path or _env_source()

    def location(self) -> Path:
        return Path(self._configured()).expanduser().resolve() if self._configured() else BUNDLED_DIR

    def describe(self) -> str:
        return f"{self.location()}" if self._configured() else f"bundled data set ({BUNDLED_DIR.name})"

    def load(self, files: list[str] | None = None) -> MarketData:
        """All rows of the source, or of the given files (e.g. landing files), with provenance."""
        if files:
            # accepted landing copies are content-addressed and immutable: each is parsed once,
            # then served from the cache (a year of daily files re-read by every run of that year)
            parts = [_cached_read(str(Path(f).resolve()), _stamp(Path(f))) if Path(f).is_file()
                     else read_market_data(f, settings=reader_settings())
                     for f in files]
            prices = pl.concat([p.prices for p in parts])
            benches = [p.benchmark for p in parts if p.benchmark is not None]
            sectors = {k: v for p in parts for k, v in p.sectors.items()}
            inds = [p.indicators for p in parts if p.indicators is not None]
            return MarketData(prices, pl.concat(benches) if benches else None, sectors,
                              tuple(f for p in parts for f in p.files),
                              indicators=pl.concat(inds, how="diagonal_relaxed") if inds else None,
                              notes=tuple(n for p in parts for n in p.notes))
        loc = self.location()
        if not loc.exists():
            raise MarketDataError("the market data source does not exist", loc,
                                  hint="Set ALLOC_MARKET_DATA to a CSV/Parquet file or a directory of them.")
        ind = self.indicators or _env_indicators()
        stamp = _stamp(loc)
        if ind:
            ind_path = Path(ind).expanduser().resolve()
            if not ind_path.exists():
                raise MarketDataError("the indicator source does not exist", ind_path,
                                      hint="Set ALLOC_INDICATORS to an indicator file or folder, or unset it.")
            ind = str(ind_path)
            stamp += _stamp(ind_path)
        return _cached_read(str(loc), stamp, ind)
