"""The landing zone (pure; no Dagster import): which files are ready, valid, superseded or not yet
due, and the immutable accepted copies that runs read.

Layout under ``$ALLOC_HOME/landing``::

    <name>_YYYY-MM-DD.csv|.parquet        dropped by users or feeds (one trading day, long or wide)
    accepted/<day>/<sha16>_<day>.<ext>    immutable, content-addressed copies: what a run reads
    accepted/<day>/CURRENT                the name of the copy in force for that day
    rejected/<name> + <name>.reason.txt   files that failed validation, with the reason
    superseded/<name>                     an older file for a day that a newer one replaced in the same scan

Rules: only regular files directly in the folder whose whole name matches ``LANDING_FILE`` are
considered (no symbolic links, no sub-folders, no ``..``); a file modified less than
``settle_seconds`` ago may still be being written and is left alone; a file dated after today
(New York) is left for a later scan; a day that is not an NYSE session is rejected; two files for
one day in one scan: the newest (modification time, then name) wins.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from alloc_assets.core.common.files import atomic_write
from alloc_assets.core.market.calendar import CALENDAR_END, CALENDAR_START, is_trading_day
from alloc_assets.core.market.io_errors import MarketDataError
from alloc_assets.core.market.landing_names import LANDING_FILE
from alloc_assets.core.market.reader_settings import SNIFF, ReaderSettings
from alloc_assets.core.market.source import read_market_data

CURRENT = "CURRENT"


@dataclass(frozen=True)
class Decision:
    """What a scan decided for one file: ``ready`` (valid name and due), ``wait`` (left in place for a
    later scan), ``reject`` (moved to rejected/ with the reason), ``supersede`` (an older file of the
    same day)."""

    path: Path
    action: str
    day: dt.date | None
    reason: str = ""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def scan(folder: Path, now: float, today: dt.date, settle_seconds: float) -> list[Decision]:
    """Classify the files of the landing folder (nothing is moved here)."""
    out: list[Decision] = []
    ready: dict[dt.date, list[tuple[float, str, Path]]] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.iterdir()):
        name = path.name
        if path.is_symlink():
            if LANDING_FILE.match(name) or name.endswith((".csv", ".parquet", ".csv.gz")):
                out.append(Decision(path, "reject", None, "symbolic links are not accepted in the landing zone"))
            continue
        if not path.is_file():
            continue  # accepted/, rejected/, superseded/, other folders
        m = LANDING_FILE.match(name)
        if not m:
            continue  # temporary names (.part, .tmp, dot files) and other files are not ours
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue  # moved away while we looked
        if now - stat.st_mtime < settle_seconds:
            out.append(Decision(path, "wait", None, f"modified {now - stat.st_mtime:.1f} s ago (settle time "
                                                    f"{settle_seconds:g} s): may still be being written"))
            continue
        try:
            day = dt.date.fromisoformat(m.group(1))
        except ValueError:
            out.append(Decision(path, "reject", None, f"{m.group(1)} in the name is not a date"))
            continue
        if day > today:
            out.append(Decision(path, "wait", day, f"dated {day}, after today ({today}): left for a later scan"))
            continue
        if day < dt.date.fromisoformat(CALENDAR_START) or day > dt.date.fromisoformat(CALENDAR_END):
            out.append(Decision(path, "reject", day, f"{day} is outside the trading calendar "
                                                     f"({CALENDAR_START} .. {CALENDAR_END})"))
            continue
        if not is_trading_day(day):
            out.append(Decision(path, "reject", day, f"{day} is not an NYSE trading day"))
            continue
        ready.setdefault(day, []).append((stat.st_mtime, name, path))
    for day, files in sorted(ready.items()):
        files.sort()
        newest = files[-1][2]
        out.append(Decision(newest, "ready", day))
        for _, _, older in files[:-1]:
            out.append(Decision(older, "supersede", day, f"superseded by {newest.name}, a newer file for {day}"))
    return out


def _plain_wide_csv_ok(path: Path, day: dt.date) -> bool:
    """A quick accept for the common case: a small wide CSV (``date`` then one column per symbol,
    distinct names) of that day only, every price a finite number > 0. Anything else, or anything
    doubtful, goes through the full reader, which names file, row and column."""
    if path.suffix != ".csv":
        return False
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    if len(lines) < 2:
        return False
    header = [h.strip() for h in lines[0].split(",")]
    if header[0] not in ("date", "Date") or len(set(header)) != len(header) or len(header) < 2:
        return False
    if {"symbol", "close"} & {h.lower() for h in header}:
        return False
    iso = day.isoformat()
    for line in lines[1:]:
        if not line.strip():
            continue
        cells = line.split(",")
        if len(cells) != len(header) or cells[0].strip() != iso:
            return False
        for cell in cells[1:]:
            try:
                value = float(cell)
            except ValueError:
                return False
            if not (0.0 < value < float("inf")):
                return False
    return True


def validate(path: Path, day: dt.date, settings: ReaderSettings = SNIFF) -> None:
    """The file's rows: that day only, numbers finite and > 0, no symbol twice. Raises
    ``MarketDataError`` naming file, row and column. ``settings``: how the full reader reads a CSV."""
    if _plain_wide_csv_ok(path, day):
        return
    data = read_market_data(path, settings=settings)
    prices = data.prices
    if prices.height == 0:
        raise MarketDataError("the file has no price rows", path)
    wrong = prices.filter(pl.col("date") != day)
    if wrong.height:
        r = wrong.row(0, named=True)
        raise MarketDataError(f"row dated {r['date']} in a file for {day}", path, row=int(r["source_row"]), column="date")
    bad = prices.filter(~(pl.col("close").is_finite() & (pl.col("close") > 0)))
    if bad.height:
        r = bad.row(0, named=True)
        raise MarketDataError(f"price {r['close']} is not a finite number > 0", path, row=int(r["source_row"]),
                              column=r["source_column"])
    dups = prices.filter(pl.struct("date", "symbol").is_duplicated())
    if dups.height:
        r = dups.row(0, named=True)
        raise MarketDataError(f"symbol {r['symbol']} appears twice", path, row=int(r["source_row"]), column="symbol")


def _suffix(name: str) -> str:
    return ".csv.gz" if name.endswith(".csv.gz") else Path(name).suffix


def flush() -> None:
    """Make a batch of non-durable accepts durable (one ``sync`` instead of one fsync a file)."""
    os.sync()


def accept(path: Path, accepted_root: Path, day: dt.date, durable: bool = True) -> Path:
    """Copy the file to ``accepted/<day>/<sha16>_<day>.<ext>`` (atomically; the same content gives
    the same name, so accepting twice is harmless) and make it the day's CURRENT copy. With
    ``durable=False`` call ``flush()`` once after the batch, before anything relies on the copies."""
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()[:16]
    folder = accepted_root / day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{sha}_{day.isoformat()}{_suffix(path.name)}"
    if not target.exists():
        atomic_write(target, data, durable)
    atomic_write(folder / CURRENT, target.name.encode(), durable)
    return target


def is_accepted_copy(path: Path, accepted_root: Path) -> bool:
    """Whether ``path`` is an accepted copy (inside ``accepted_root``, content matching its name)."""
    try:
        resolved = path.resolve(strict=True)
        root = accepted_root.resolve()
    except (FileNotFoundError, OSError):
        return False
    if root not in resolved.parents or path.is_symlink():
        return False
    return sha256_file(resolved)[:16] == resolved.name.split("_", 1)[0]


def current_copies(accepted_root: Path, start: dt.date, end: dt.date) -> dict[dt.date, Path]:
    """The accepted copy in force for each day in [start, end] that has one."""
    out: dict[dt.date, Path] = {}
    if not accepted_root.is_dir():
        return out
    for folder in accepted_root.iterdir():
        try:
            day = dt.date.fromisoformat(folder.name)
        except ValueError:
            continue
        if not (start <= day <= end) or folder.is_symlink():
            continue
        pointer = folder / CURRENT
        if pointer.is_file():
            name = pointer.read_text().strip()
            if name and "/" not in name and (folder / name).is_file():
                out[day] = folder / name
    return out


def withdraw(copy: Path) -> Path | None:
    """Take an accepted copy out of force (its run rejected the data): the day's CURRENT goes back to
    the most recent other copy of that day, or away if there is none. The copy itself stays (audit).
    Returns the copy now in force."""
    folder = copy.parent
    pointer = folder / CURRENT
    if not pointer.is_file() or pointer.read_text().strip() != copy.name:
        return None
    others = sorted((p for p in folder.iterdir() if p.is_file() and p.name != CURRENT and p != copy
                     and not p.name.startswith(".")), key=lambda p: (p.stat().st_mtime, p.name))
    if others:
        atomic_write(pointer, others[-1].name.encode())
        return others[-1]
    pointer.unlink()
    return None


def move_aside(path: Path, folder: Path, reason: str) -> Path:
    """Move a file to ``folder`` (rejected/ or superseded/) with ``<name>.reason.txt`` beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    shutil.move(str(path), target)
    (folder / f"{path.name}.reason.txt").write_text(reason + "\n")
    return target


def unchanged_originals(entries: list[str]) -> list[Path]:
    """The original landing files (``<path>::<sha256>``) still there with the content the sensor accepted."""
    out = []
    for entry in entries:
        path_s, _, sha = entry.rpartition("::")
        path = Path(path_s)
        try:
            if path.is_file() and not path.is_symlink() and sha256_file(path) == sha:
                out.append(path)
        except OSError:
            continue
    return out


def consume_originals(entries: list[str]) -> list[str]:
    """Remove the original landing files the run stored (only if their content is unchanged)."""
    removed = []
    for path in unchanged_originals(entries):
        try:
            path.unlink()
            removed.append(str(path))
        except OSError:
            continue
    return removed

