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
    """Tests that forget the ``alloc_home`` fixture still never write into the user's ALLOC_HOME
    (``make`` exports the repository's ``.alloc``): the session gets a home of its own."""
    os.environ["ALLOC_HOME"] = str(tmp_path_factory.mktemp("alloc_session"))
    os.environ.pop("DAGSTER_HOME", None)
    yield


@pytest.fixture(scope="module")
def panel():
    """The bundled data set as a ``PricePanel`` (20 stocks, the S&P 500 as benchmark, sectors)."""
    from alloc_assets.core.market.panel import load_bundled_panel

    return load_bundled_panel()


@pytest.fixture(scope="module")
def bundled_world():
    """The world model calibrated on the bundled history (the pipeline's regime labels), started
    from today's regime probabilities: the stress scenarios' input in the sim tests."""
    import numpy as np

    from alloc_assets.core.allocator.features import encode
    from alloc_assets.core.market.panel import PricePanel, load_bundled_panel
    from alloc_assets.core.allocator.regimes import compute_regimes
    from alloc_assets.sim.models.world_calibration import calibrate_world_model

    p = load_bundled_panel()
    panel = PricePanel(p.dates, p.symbols, p.close)
    state, _ = encode(panel)
    regimes, _ = compute_regimes(state)
    return calibrate_world_model(np.diff(np.log(panel.close), axis=0), regimes.label[1:], p0=regimes.probs[-1])
