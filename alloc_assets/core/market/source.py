"""A market data source (a file, a folder of files, or a folder laid out like the bundled set) as :class:`MarketData`.

A folder like the bundled set: ``prices*`` (the universe), ``sp500_index*`` or ``benchmark*`` (the
benchmark index, one value column), ``sectors.csv``, ``indicators/`` (regime inputs, never
traded); any other folder: every data file in it is prices. Landing files ``*_YYYY-MM-DD.csv``
hold one trading day: any other date in them is an error. Every date must be an NYSE session, and
with a benchmark every date with prices needs its finite close. Structural problems raise
:class:`MarketDataError` naming file, row and column; value problems stay in the frame with their
provenance for the schema checks. Formats and settings: docs/notes/market.md.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl

from alloc_assets.core.market.calendar import session_days
from alloc_assets.core.market.frames import MarketData
from alloc_assets.core.market.indicator_files import read_indicator_file
from alloc_assets.core.market.io_errors import BENCHMARK_HINT, INDEX_HINT, MarketDataError, plural
from alloc_assets.core.market.landing_names import LANDING_NAME
from alloc_assets.core.market.price_files import (
    DATA_SUFFIXES,
    file_stem,
    read_benchmark_file,
    read_sectors_file,
    read_series_file,
)
from alloc_assets.core.market.reader_settings import SNIFF, ReaderSettings


def data_files(directory: Path) -> list[Path]:
    """The ``.csv``, ``.csv.gz`` and ``.parquet`` files directly in ``directory``, by name."""
    return sorted(p for p in directory.iterdir() if p.is_file() and p.name.endswith(DATA_SUFFIXES))


def _check_landing_dates(frame: pl.DataFrame, path: Path) -> None:
    """A landing file named ``*_YYYY-MM-DD`` holds that trading day only."""
    m = LANDING_NAME.search(path.name)
    if not m or frame.height == 0:
        return
    day = pd.Timestamp(m.group(1)).date()
    bad = frame.filter(pl.col("date") != day)
    if bad.height:
        r = bad.row(0, named=True)
        raise MarketDataError(
            f"row dated {r['date']} in a file for {day} (the file name sets its trading day)",
            path, row=int(r["source_row"]), column="date")


def _check_sessions(frame: pl.DataFrame) -> None:
    """Every date is an NYSE session: a weekend or holiday row can never belong to a partition."""
    if frame.height == 0:
        return
    sessions = session_days()
    off = sorted(d for d in frame["date"].unique().to_list() if d not in sessions)
    if off:
        first = off[0]
        r = frame.filter(pl.col("date") == first).row(0, named=True)
        raise MarketDataError(
            f"{first} is not an NYSE trading day (weekend or exchange holiday), so it belongs to no partition",
            r["source_file"], row=int(r["source_row"]), column="date")


def _check_benchmark_coverage(prices: pl.DataFrame, bench: pl.DataFrame) -> None:
    """The benchmark has a finite close on every date with prices (rows before or after them are fine)."""
    if prices.height == 0 or bench.height == 0:
        return
    have = set(bench.filter(pl.col("close").is_finite())["date"].to_list())
    price_dates = prices["date"].unique().sort().to_list()
    missing = [d for d in price_dates if d not in have]
    if not missing:
        return
    ordered = bench.sort("date", maintain_order=True)
    last = ordered.row(ordered.height - 1, named=True)
    names = ", ".join(sorted(set(bench["name"].to_list())))
    first = missing[0]
    b_first, b_last = ordered["date"][0], last["date"]
    problem = f"the benchmark {names} has no close on {first}"
    if len(missing) > 1:
        problem += f" (and {plural(len(missing) - 1, 'later price date')})"
    file, row, column = last["source_file"], None, None
    if first > b_last:
        problem += f": it ends on {b_last} but the prices run to {price_dates[-1]}"
    elif first < b_first:
        problem += f": it starts on {b_first} but the prices start on {price_dates[0]}"
    else:
        at = ordered.filter(pl.col("date") == first)
        if at.height:
            r = at.row(0, named=True)
            file, row, column = r["source_file"], int(r["source_row"]), r.get("source_column")
            problem += f": its value there is {r['close']} (missing or not finite)"
        else:
            problem += f": the benchmark runs {b_first} .. {b_last} but has no row for that price date"
    raise MarketDataError(problem, file, row=row, column=column, hint=BENCHMARK_HINT)


def _indicator_files(location: Path, what: str) -> list[Path]:
    if location.is_dir():
        return data_files(location)
    if location.is_file():
        return [location]
    raise MarketDataError(f"the {what} does not exist", location,
                          hint="Set ALLOC_INDICATORS to an indicator file or folder, or unset it.")


def _read_indicators(paths: list[Path], settings: ReaderSettings) -> tuple[pl.DataFrame | None, list[str]]:
    """Every indicator file, concatenated; a name given by two files is an error."""
    frames: list[pl.DataFrame] = []
    notes: list[str] = []
    origin: dict[str, Path] = {}
    for p in paths:
        frame, file_notes = read_indicator_file(p, settings)
        for name in frame["name"].unique(maintain_order=True).to_list() if frame.height else []:
            if name in origin:
                raise MarketDataError(f"the indicator name '{name}' is given by this file and by {origin[name]}",
                                      p, row=0, hint="Rename one of the files (an indicator is named after its file, "
                                                     "or after its column when the file has several).")
            origin[name] = p
        frames.append(frame)
        notes.extend(file_notes)
    frames = [f for f in frames if f.height]
    if not frames:
        return None, notes
    return pl.concat(frames).sort("date", "name"), notes


def read_market_data(source: str | Path, indicators: str | Path | None = None,
                     settings: ReaderSettings = SNIFF) -> MarketData:
    """Read a file, a directory of files, or a directory laid out like the bundled set.

    Indicators: every data file in the directory's ``indicators/`` folder, and ``indicators`` (a
    file or a folder) when given; they are never read as prices. An index column (``VIX``, ``^VIX``)
    of a price file is an error, except in a landing day file
    (``*_YYYY-MM-DD.csv``) read alone: there it stays in ``prices`` for the caller to split off
    (a stored indicator's column becomes that indicator).
    With a benchmark, every date with prices needs its finite close. ``settings``: delimiter,
    decimal mark and date order (sniffed by default)."""
    path = Path(source).expanduser()
    if not path.exists():
        raise MarketDataError("the market data source does not exist", path,
                              hint="Set ALLOC_MARKET_DATA to a CSV/Parquet file or a directory of them.")
    bench = None
    sectors: dict[str, str] = {}
    ind_paths: list[Path] = []
    if path.is_dir() and (path / "indicators").is_dir():
        ind_paths += data_files(path / "indicators")
    if indicators is not None and str(indicators) != "":
        ind_paths += _indicator_files(Path(indicators).expanduser(), "indicator source")
        if not ind_paths:
            raise MarketDataError("the indicator folder holds no .csv, .csv.gz or .parquet files",
                                  Path(indicators).expanduser(),
                                  hint="Put the indicator files there, or unset ALLOC_INDICATORS.")
    ind_paths = list(dict.fromkeys(p.resolve() for p in ind_paths))
    is_indicator = set(ind_paths)
    if path.is_dir():
        files = [p for p in data_files(path) if p.resolve() not in is_indicator]
        price_files = [p for p in files if p.name.startswith("prices")]
        bench_files = [p for p in files if p.name.startswith(("sp500_index", "benchmark"))]
        if not price_files:
            price_files = [p for p in files if p not in bench_files and not p.name.startswith("sectors")]
        else:
            for p in files:
                if p.name.startswith("^") and p not in bench_files:
                    raise MarketDataError(f"'{file_stem(p)}' is an index (a Yahoo '^' symbol), not a tradeable "
                                          "asset", p, hint=INDEX_HINT)
        if not price_files:
            raise MarketDataError("the directory holds no .csv, .csv.gz or .parquet price files", path)
        if (path / "sectors.csv").exists():
            sectors = read_sectors_file(path / "sectors.csv", settings)
        if bench_files:
            bench = pl.concat([read_benchmark_file(p, settings) for p in bench_files])
    else:
        if path.resolve() in is_indicator:
            raise MarketDataError("the market data source is also given as an indicator file", path,
                                  hint="Point ALLOC_MARKET_DATA at the prices and ALLOC_INDICATORS at the indicators.")
        price_files = [path]
        if (path.parent / "sectors.csv").exists() and path.name != "sectors.csv":
            sectors = read_sectors_file(path.parent / "sectors.csv", settings)
    # a landing day file read alone may carry a stored indicator (or the benchmark) as one more
    # column: its caller splits those off, and an unknown one fails the universe check there
    day_file = path.is_file() and LANDING_NAME.search(path.name) is not None
    frames = []
    for p in price_files:
        f = read_series_file(p, tradeable=not day_file, settings=settings)
        _check_landing_dates(f, p)
        frames.append(f)
    prices = pl.concat(frames) if len(frames) > 1 else frames[0]
    _check_sessions(prices)
    if bench is not None:
        _check_sessions(bench)
        _check_benchmark_coverage(prices, bench)
    ind, notes = _read_indicators(ind_paths, settings)
    return MarketData(prices, bench, sectors, tuple(str(p) for p in price_files), ind, tuple(notes))
