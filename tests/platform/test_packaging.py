"""``pip install .`` works on its own: the wheel ships sql/ and the bundled data set (with its
licence), and an installed copy writes under the user's data directory, never into site-packages."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                           str(out), str(REPO)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (path,) = out.glob("regime_allocator-*.whl")
    return path


def test_the_wheel_ships_sql_and_the_bundled_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for ddl in ("allocator.sql", "market_prices.sql"):
        assert f"sql/{ddl}" in names
    data = "alloc_assets/data/us_equities_1990_2022/"
    for f in ("prices.csv.gz", "sp500_index.csv.gz", "sectors.csv", "LICENSE-skfolio"):
        assert data + f in names, f


def test_an_installed_copy_runs_and_writes_under_the_user_data_directory(wheel, tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("ALLOC_HOME", "ALLOC_MARKET_DATA", "DAGSTER_HOME",
                                                            "XDG_DATA_HOME")}
    env.update(HOME=str(home), PYTHONPATH=str(site))
    script = textwrap.dedent("""
        import dagster as dg, resources.settings as s, alloc_assets
        from alloc_assets.definitions import defs
        assert str(s.REPO_ROOT).startswith(%r), s.REPO_ROOT          # the installed copy, not the checkout
        print(s.alloc_home())
        assert (s.sql_dir() / "market_prices.sql").exists()
        r = defs.resolve_job_def("refresh_job").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), partition_key="2022",
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}})
        assert r.success
    """ % str(site))
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    expected = home / ".local" / "share" / "regime-allocator"
    assert run.stdout.strip().splitlines()[-1] == str(expected)
    assert (expected / "warehouse.duckdb").exists()
    assert (expected / "reports" / "risk_parity" / "two_pass_comparison.json").exists()
    assert not any(p.name == "warehouse.duckdb" for p in site.rglob("*"))
