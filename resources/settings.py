"""Where the project writes: everything lives under ``ALLOC_HOME`` (default ``.alloc/`` in the repo)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = REPO_ROOT / "sql"


def alloc_home() -> Path:
    """``$ALLOC_HOME`` resolved to an absolute path (default: ``<repo>/.alloc``)."""
    value = os.environ.get("ALLOC_HOME")
    return Path(value).expanduser().resolve() if value else REPO_ROOT / ".alloc"


def default_warehouse_path() -> str:
    return str(alloc_home() / "warehouse.duckdb")


def default_reports_dir() -> str:
    return str(alloc_home() / "reports")


def default_landing_dir() -> str:
    return str(alloc_home() / "landing")
