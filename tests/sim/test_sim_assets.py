"""The stress-test suite through Dagster: the world model asset and every scenario partition."""

from __future__ import annotations

import dagster as dg
import pytest

from alloc_assets.core.market.panel import load_bundled_panel
from alloc_assets.defs.allocator.assets import ALLOCATOR_ASSETS
from alloc_assets.defs.market.assets import market_prices
from alloc_assets.defs.sim.assets import scenario_models, stress_tests
from alloc_assets.sim.scenarios.catalogue import SCENARIO_NAMES
from resources.simulation import SimulationSettings
from alloc_assets.defs.market.partitions import range_tags
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
    meta = model.asset_materializations_for_node("scenario_models")[0].metadata
    assert meta["calibrated_through"].value == last
    # calibrated on labels independent of the allocator (the default), on daily *log* returns (simple
    # returns would raise every regime mean by about half its variance):
    # each regime's mean is the mean log return of its days, recomputed here from the stored prices
    assert meta["calibration_labels"].value == "realised_vol" and "realised-volatility" in meta["labels_used"].value
    import pickle

    import numpy as np

    from alloc_assets.sim.models.world_calibration import realised_vol_labels

    saved = pickle.loads((tmp_path / "sim" / "world_model.pkl").read_bytes())
    wide = wh.query("SELECT date, symbol, close FROM market_prices").pivot(on="symbol", index="date", values="close").sort("date")
    log_r = np.diff(np.log(wide.select(sorted(c for c in wide.columns if c != "date")).to_numpy()), axis=0)
    lab = realised_vol_labels(log_r)
    for k in range(4):
        np.testing.assert_allclose(np.asarray(saved["model"].means)[k], log_r[lab == k].mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(saved["model"].p0, np.eye(4)[lab[-1]])
    for name in SCENARIO_NAMES:
        result = dg.materialize([stress_tests], instance=instance, resources=resources, partition_key=name)
        assert result.success, name
        meta = result.asset_materializations_for_node("stress_tests")[0].metadata
        assert "stressed_sharpe" in meta["dashboard"].value
        assert "vol base" in meta["shock_path"].value
        assert meta["base_result"].value["reused"] is (name != "base")  # base simulated once, then read from its file
    dash = wh.query("SELECT * FROM stress_dashboard ORDER BY scenario, book")
    assert set(dash["scenario"].to_list()) == set(SCENARIO_NAMES)
    assert set(dash["book"].to_list()) == {"baseline", "allocator"}
    assert dash.height == 2 * len(SCENARIO_NAMES)
    assert set(dash["calibrated_through"].to_list()) == {last}
    for col in ("baseline_sharpe", "stressed_sharpe", "p_drawdown_20", "p_drawdown_30", "median_recovery_months", "cvar_95"):
        assert col in dash.columns
    probs = dash.select("p_drawdown_20", "p_drawdown_30").to_numpy()
    assert ((probs >= 0) & (probs <= 1)).all() and (probs[:, 0] >= probs[:, 1]).all()
    assert (dash["cvar_95"] < 0).all()
    paths = wh.query("SELECT * FROM stress_paths ORDER BY scenario, book, month")
    assert set(paths["scenario"].to_list()) == set(SCENARIO_NAMES)
    assert paths.height == 2 * len(SCENARIO_NAMES) * (126 // 21)  # every month of both books of every scenario
    base_rows = paths.filter(paths["scenario"] == "base")
    assert (base_rows["vol_annual"] == base_rows["vol_annual_base"]).all()
    spike = paths.filter((paths["scenario"] == "vol_spike") & (paths["month"] == 1))
    assert (spike["vol_annual"] > spike["vol_annual_base"]).all()  # the shock raises month 1's volatility, both books
    for name in SCENARIO_NAMES:
        for kind in ("fan", "drawdowns", "shock_path"):
            assert (tmp_path / "sim" / f"{name}_{kind}.png").read_bytes()[:4] == b"\x89PNG"


def test_base_result_is_computed_once_and_shared_across_processes(tmp_path):
    """stress_tests keeps the base scenario in one file per (model file contents, settings, sim
    code): a second caller (here a second Python process) reads it instead of simulating again."""
    import pickle
    import subprocess
    import sys

    from alloc_assets.sim.scenarios.base_cache import base_result_path, load_or_compute

    settings = {"n_paths": 256, "horizon_days": 126, "seed": 0}
    path = base_result_path(tmp_path, b"model-v1", settings)
    assert path == base_result_path(tmp_path, b"model-v1", dict(reversed(settings.items())))  # same inputs, same file
    assert path != base_result_path(tmp_path, b"model-v2", settings)  # another model file
    assert path != base_result_path(tmp_path, b"model-v1", {**settings, "seed": 1})  # other settings
    calls = []
    value, reused = load_or_compute(path, lambda: calls.append(1) or {"sharpe": 0.5})
    assert (value, reused, len(calls)) == ({"sharpe": 0.5}, False, 1)
    assert pickle.loads(path.read_bytes()) == {"sharpe": 0.5}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # written atomically: no temporary file left
    code = ("import sys, pathlib; from alloc_assets.sim.scenarios.base_cache import load_or_compute; "
            "v, reused = load_or_compute(pathlib.Path(sys.argv[1]), lambda: 1 / 0); print(v['sharpe'], reused)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0.5", "True"]


def test_an_old_or_broken_world_model_file_fails_clearly(tmp_path):
    """A world model saved by an older version (fewer fields) or a truncated file: an error that
    says to re-materialize scenario_models (a Failure without retries in the assets), not an
    AttributeError deep in the engine."""
    import pickle

    import numpy as np

    from alloc_assets.defs.sim.assets import load_world
    from alloc_assets.sim.models.world_file import WorldFileError, load_world_file
    from alloc_assets.sim.models.world import WorldModel

    model = WorldModel.create([[1.0]], [[0.0]], [[[1e-4]]])
    object.__delattr__(model, "shock_days")  # what unpickling a file of the previous version gives
    old = tmp_path / "old.pkl"
    old.write_bytes(pickle.dumps({"model": model, "start": None}))
    with pytest.raises(WorldFileError, match="older version.*shock_days.*scenario_models"):
        load_world_file(old)
    with pytest.raises(dg.Failure, match="older version.*shock_days.*scenario_models"):
        load_world(old)
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(pickle.dumps({"model": WorldModel.create([[1.0]], [[0.0]], [[[1e-4]]])})[:20])
    with pytest.raises(WorldFileError, match="cannot be read"):
        load_world_file(broken)
    with pytest.raises(WorldFileError, match="does not exist"):
        load_world_file(tmp_path / "none.pkl")
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps({"model": WorldModel.create([[1.0]], [[0.0]], [[[1e-4]]])}))
    assert np.asarray(load_world_file(good)["model"].shock_days) == 1.0
