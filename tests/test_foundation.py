"""Foundation: partitions, the full-history backfill equal to the bundled file, definitions load."""

from __future__ import annotations

import csv
import gzip
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from alloc_assets.core.panel import BUNDLED_DIR
from alloc_assets.partitions import range_tags, trading_day_partitions

REPO = Path(__file__).resolve().parent.parent


def _bundled_rows() -> tuple[list[str], list[str], np.ndarray]:
    """The bundled file parsed with the csv module and Python's float (independent of our reader)."""
    with gzip.open(BUNDLED_DIR / "prices.csv.gz", "rt") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    dates = [r[0] for r in body]
    values = np.array([[float(x) for x in r[1:]] for r in body])
    return header[1:], dates, values


def test_partitions_are_the_nyse_sessions_of_the_bundled_set():
    _, dates, _ = _bundled_rows()
    keys = trading_day_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(dates[0], dates[-1]))
    assert keys == dates
    assert len(keys) == 8313
    all_keys = set(trading_day_partitions.get_partition_keys())
    for holiday in ("2001-09-11", "2012-10-29", "2018-12-05", "2022-12-26", "2020-01-01"):
        assert holiday not in all_keys
    for weekend in ("2022-12-24", "2022-12-25"):
        assert weekend not in all_keys


@pytest.mark.slow
def test_full_history_single_run_equals_the_bundled_file(alloc_home):
    """8,313 partitions of market_prices in ONE run (the history job restricted to the market layer;
    the allocator layers over the full history run in `make demo` and the benchmarks); stored closes
    equal the file's decimals to the last digit."""
    from alloc_assets.definitions import defs
    from resources.warehouse import DuckDBWarehouse

    symbols, dates, values = _bundled_rows()
    instance = dg.DagsterInstance.ephemeral()
    result = defs.resolve_job_def("history_job").execute_in_process(
        instance=instance, tags=range_tags(dates[0], dates[-1]), asset_selection=[dg.AssetKey("market_prices")])
    assert result.success
    assert len(instance.get_runs()) == 1
    assert len(result.asset_materializations_for_node("market_prices")) == 8313
    stored = DuckDBWarehouse().query(
        "PIVOT (SELECT date, symbol, close FROM market_prices) ON symbol USING first(close) ORDER BY date")
    assert stored.height == 8313
    assert [str(d) for d in stored["date"].to_list()] == dates
    got = stored.select(symbols).to_numpy()
    assert np.array_equal(got, values)  # bit-for-bit: the stored double is the file's decimal
    bench = DuckDBWarehouse().query("SELECT count(*) AS n FROM market_benchmark")
    assert bench["n"][0] == 8313


def test_definitions_load():
    from alloc_assets.definitions import defs

    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "market_prices" in keys
    node = defs.resolve_assets_def("market_prices")
    assert node.backfill_policy == dg.BackfillPolicy.single_run()
    assert node.partitions_def == trading_day_partitions


@pytest.mark.parametrize("cmd", [["dg", "check", "defs"],
                                 ["dagster", "definitions", "validate", "-w", "workspace.yaml"]])
def test_cli_validates_definitions(cmd, tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ALLOC_HOME": str(tmp_path / "alloc")}
    exe = Path(sys.executable).parent / cmd[0]
    proc = subprocess.run([str(exe), *cmd[1:]], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_dg_launch_partition_range(tmp_path):
    """The documented CLI backfill: one run over a range, recorded in the instance."""
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path), "ALLOC_HOME": str(tmp_path / "alloc")}
    exe = Path(sys.executable).parent / "dg"
    proc = subprocess.run([str(exe), "launch", "--job", "history_job", "--partition-range", "2022-12-01...2022-12-28"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    import duckdb

    con = duckdb.connect(str(tmp_path / "alloc" / "warehouse.duckdb"), read_only=True)
    n_dates, n_rows = con.execute("SELECT count(DISTINCT date), count(*) FROM market_prices").fetchone()
    assert (n_dates, n_rows) == (19, 19 * 20)
