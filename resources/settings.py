"""Where the project writes: everything lives under ``ALLOC_HOME``.

Default: ``.alloc/`` in the repository when the code runs from a source checkout (the contract of
DESIGN.md), else a per-user data directory (``$XDG_DATA_HOME/regime-allocator``, by default
``~/.local/share/regime-allocator``): an installed package never writes into site-packages.
"""

from __future__ import annotations

import os
from importlib import resources as _res
from pathlib import Path

import pandas as pd

from alloc_assets.core.market.calendar import trading_sessions

REPO_ROOT = Path(__file__).resolve().parent.parent


def _is_source_checkout(root: Path) -> bool:
    return (root / "pyproject.toml").is_file() and "site-packages" not in root.parts and "dist-packages" not in root.parts


def sql_dir() -> Path:
    """The DDL files (``sql/*.sql``), shipped as package data of the ``sql`` package."""
    try:
        return Path(str(_res.files("sql")))
    except ModuleNotFoundError:  # an editable install made before sql/ became a package
        return REPO_ROOT / "sql"


def user_data_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "regime-allocator"


def alloc_home() -> Path:
    """``$ALLOC_HOME`` resolved to an absolute path (default: ``<repo>/.alloc`` in a checkout,
    else the user data directory)."""
    value = os.environ.get("ALLOC_HOME")
    if value:
        return Path(value).expanduser().resolve()
    return REPO_ROOT / ".alloc" if _is_source_checkout(REPO_ROOT) else user_data_home()


def default_warehouse_path() -> str:
    return str(alloc_home() / "warehouse.duckdb")


def default_reports_dir() -> str:
    return str(alloc_home() / "reports")


def default_landing_dir() -> str:
    return str(alloc_home() / "landing")


def default_logs_dir() -> Path:
    return alloc_home() / "logs"


def sessions() -> pd.DatetimeIndex:
    """The NYSE sessions, kept in ``$ALLOC_HOME/cache`` so that a new run process loads them in
    milliseconds: call it before core code that needs the sessions."""
    return trading_sessions(cache_dir=alloc_home() / "cache")
