"""``regime_method: jump_model`` through the regime layer's causal contract: the peer model's online
states (refits cached in ``jump_model_fits``) become P(NORMAL) = 1 / P(CRISIS) = 1 once it is
fitted; incremental = batch; a shorter history gives the same rows (no look-ahead)."""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
import pytest

from alloc_assets.core.allocator import jump_model as jm
from alloc_assets.core.market.panel import load_bundled_panel
from alloc_assets.defs.allocator.assets import ALLOCATOR_ASSETS
from alloc_assets.defs.market.assets import market_prices
from alloc_assets.defs.market.partitions import range_tags
from resources.allocator import AllocatorSettings
from resources.landing import LandingZone
from resources.market_source import MarketDataSource
from resources.warehouse import DuckDBWarehouse

TABLES = ("regime_series", "risk_scalars")


def _run(home, first: str, last: str, wh: DuckDBWarehouse | None = None) -> DuckDBWarehouse:
    wh = wh or DuckDBWarehouse(path=str(home / "warehouse.duckdb"))
    resources = {"warehouse": wh, "market_source": MarketDataSource(path=""),
                 "landing": LandingZone(path=str(home / "landing")),
                 "allocator": AllocatorSettings(regime_method="jump_model", overrides_file=str(home / "none.csv"))}
    assert dg.materialize([market_prices, *ALLOCATOR_ASSETS], instance=dg.DagsterInstance.ephemeral(),
                          resources=resources, tags=range_tags(first, last)).success
    return wh


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("jm_batch"), "1990", "1996")


def _table(wh, name, upto=None):
    where = f" WHERE date <= DATE '{upto}'" if upto else ""
    return wh.query(f"SELECT * FROM {name}{where} ORDER BY date")


def test_jump_model_probabilities_follow_the_peer_models_online_states(batch):
    reg = _table(batch, "regime_series")
    panel = load_bundled_panel()
    n = reg.height
    r = np.full(n, np.nan)
    r[1:] = panel.benchmark[1:n] / panel.benchmark[: n - 1] - 1.0
    state, fit_date, _, fits = jm.cached_walk_forward(panel.dates[:n], r)  # independent of the warehouse
    fitted = ~np.isnat(fit_date)
    assert fitted.any() and (~fitted).any() and len(fits) >= 3
    src = np.array(reg["source"].to_list())
    assert set(src[fitted]) == {"jump_model"} and set(src[~fitted]) == {"jump_model_prior"}
    p = reg.select("p_normal", "p_elevated", "p_stress", "p_crisis").to_numpy()
    np.testing.assert_array_equal(p[fitted & (state == 0)], np.tile([1.0, 0, 0, 0], ((fitted & (state == 0)).sum(), 1)))
    np.testing.assert_array_equal(p[fitted & (state == 1)], np.tile([0, 0, 0, 1.0], ((fitted & (state == 1)).sum(), 1)))
    assert batch.query("SELECT count(*) AS n FROM jump_model_fits")["n"][0] == len(fits)


def test_incremental_equals_batch_and_no_look_ahead(batch, tmp_path):
    short = _run(tmp_path, "1990", "1995")
    cut = str(short.query("SELECT max(date) AS d FROM regime_series")["d"][0])
    for name in TABLES:  # the history through 1995 alone gives the same rows: nothing looks ahead
        assert _table(short, name).equals(_table(batch, name, upto=cut)), name
    _run(tmp_path, "1996", "1996", short)  # then 1996 lands: the incremental path from the carries
    for name in TABLES:
        assert _table(short, name).equals(_table(batch, name)), name
