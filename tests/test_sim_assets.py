"""The stress-test suite through Dagster: the world model asset and every scenario partition."""

from __future__ import annotations

import dagster as dg
import pytest

from alloc_assets.core.panel import load_bundled_panel
from alloc_assets.defs.allocator import ALLOCATOR_ASSETS
from alloc_assets.defs.market import market_prices
from alloc_assets.defs.sim import SCENARIOS, SimulationSettings, scenario_models, stress_tests
from alloc_assets.partitions import range_tags
from resources.allocator import AllocatorSettings
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse


@pytest.mark.slow
def test_dashboard_for_every_scenario_and_both_books(tmp_path):
    wh = DuckDBWarehouse(path=str(tmp_path / "warehouse.duckdb"))
    resources = {"warehouse": wh, "market_source": MarketDataSource(path=""),
                 "landing": LandingZone(path=str(tmp_path / "landing")),
                 "allocator": AllocatorSettings(overrides_file=str(tmp_path / "none.csv")),
                 "simulation": SimulationSettings(n_paths=256, horizon_days=126, output_dir=str(tmp_path / "sim"))}
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize([market_prices, *ALLOCATOR_ASSETS], instance=instance, resources=resources,
                          tags=range_tags("2016", "2022")).success
    model = dg.materialize([scenario_models], instance=instance, resources=resources)
    assert model.success
    # the world model is calibrated on the whole stored history (through the source's last day)
    last = str(wh.query("SELECT max(date) AS d FROM market_prices")["d"][0])
    assert last == str(load_bundled_panel().dates[-1])
    assert model.asset_materializations_for_node("scenario_models")[0].metadata["calibrated_through"].value == last
    for name in SCENARIOS:
        result = dg.materialize([stress_tests], instance=instance, resources=resources, partition_key=name)
        assert result.success, name
        meta = result.asset_materializations_for_node("stress_tests")[0].metadata
        assert "stressed_sharpe" in meta["dashboard"].value
    dash = wh.query("SELECT * FROM stress_dashboard ORDER BY scenario, book")
    assert set(dash["scenario"].to_list()) == set(SCENARIOS)
    assert set(dash["book"].to_list()) == {"baseline", "allocator"}
    assert dash.height == 2 * len(SCENARIOS)
    assert set(dash["calibrated_through"].to_list()) == {last}
    for col in ("baseline_sharpe", "stressed_sharpe", "p_drawdown_20", "p_drawdown_30", "median_recovery_months", "cvar_95"):
        assert col in dash.columns
    probs = dash.select("p_drawdown_20", "p_drawdown_30").to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all() and (probs[:, 0] >= probs[:, 1]).all()
    assert (dash["cvar_95"] < 0).all()
    for name in SCENARIOS:
        for kind in ("fan", "drawdowns"):
            assert (tmp_path / "sim" / f"{name}_{kind}.png").read_bytes()[:4] == b"\x89PNG"
