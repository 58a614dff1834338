"""Shared fixtures: every test writes under its own ALLOC_HOME (never the repository's .alloc/)."""

from __future__ import annotations

import os
import warnings

import pytest

warnings.filterwarnings("ignore", message=".*is currently in beta.*")
warnings.filterwarnings("ignore", message=".*is currently in preview.*")


@pytest.fixture()
def alloc_home(tmp_path, monkeypatch):
    home = tmp_path / "alloc"
    home.mkdir()
    monkeypatch.setenv("ALLOC_HOME", str(home))
    monkeypatch.delenv("ALLOC_MARKET_DATA", raising=False)
    return home


@pytest.fixture(autouse=True, scope="session")
def _isolated_session_home(tmp_path_factory):
    """Tests that forget the fixture still never write into the repository."""
    if "ALLOC_HOME" not in os.environ:
        os.environ["ALLOC_HOME"] = str(tmp_path_factory.mktemp("alloc_session"))
    yield
