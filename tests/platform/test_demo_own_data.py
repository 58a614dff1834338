"""``make demo`` on data as a user exports it: a folder of per-ticker Yahoo-style OHLCV
files (``Date,Open,High,Low,Close,Adj Close,Volume``, dates ``M/D/YYYY``), the benchmark as one more
OHLCV export named ``benchmark_GSPC.csv``, and a FRED-style ``indicators/VIX.csv`` (``DATE,VIXCLS``
with ``.`` on every weekday the exchange was closed). The files are written from the bundled data
set (2015-2022, six stocks); the VIX column is a stand-in computed from the S&P 500's own past
returns (the bundled set has no VIX), which is all the test needs: it checks plumbing, not a model.

Also: a bad input file prints at most five lines on the terminal and puts the traceback in the log.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest

from alloc_assets.core.market.calendar import sessions_between
from alloc_assets.core.market.panel import load_bundled_panel

REPO = Path(__file__).resolve().parents[2]
TICKERS = 6
FIRST = dt.date(2015, 1, 2)


def _mdy(d: dt.date) -> str:
    return f"{d.month}/{d.day}/{d.year}"


def _ohlcv(path: Path, days: list[dt.date], adj: np.ndarray, close_factor: float = 1.03) -> None:
    lines = ["Date,Open,High,Low,Close,Adj Close,Volume"]
    for d, a in zip(days, adj):
        c = a * close_factor  # an unadjusted close that differs from Adj Close (the price used)
        lines.append(f"{_mdy(d)},{c:.4f},{c * 1.01:.4f},{c * 0.99:.4f},{c:.4f},{a:.6f},1000000")
    path.write_text("\n".join(lines) + "\n")


def write_exports(folder: Path) -> list[str]:
    panel = load_bundled_panel()
    keep = panel.dates >= np.datetime64(FIRST)
    days = [dt.date.fromisoformat(str(d)) for d in panel.dates[keep]]
    folder.mkdir(parents=True)
    names = list(panel.symbols[:TICKERS])
    for j, name in enumerate(names):
        _ohlcv(folder / f"{name}.csv", days, panel.close[keep, j])
    _ohlcv(folder / "benchmark_GSPC.csv", days, panel.benchmark[keep], close_factor=1.0)
    # VIX stand-in from the index's past returns only: 100 * sqrt(252 * EWMA(r^2)), half-life 10 days
    r = np.diff(np.log(panel.benchmark[keep]), prepend=np.log(panel.benchmark[keep][0]))
    var, vix = 0.16**2 / 252, []
    for x in r:
        var = var + (1 - 0.5 ** 0.1) * (x * x - var)
        vix.append(100 * (252 * var) ** 0.5)
    value = dict(zip(days, vix))
    (folder / "indicators").mkdir()
    rows, day = ["DATE,VIXCLS"], FIRST
    while day <= days[-1]:
        if day.weekday() < 5:
            rows.append(f"{day},{value[day]:.2f}" if day in value else f"{day},.")
        day += dt.timedelta(days=1)
    (folder / "indicators" / "VIX.csv").write_text("\n".join(rows) + "\n")
    return names


def _demo(env: dict) -> subprocess.CompletedProcess:
    cmd = ["make", "--no-print-directory", "-s", "demo"] if shutil.which("make") else [sys.executable, "-m", "alloc_assets.demo"]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_make_demo_on_ohlcv_exports_and_a_fred_vix_file(tmp_path):
    names = write_exports(tmp_path / "exports")
    env = {**os.environ, "ALLOC_HOME": str(tmp_path / "alloc"), "DAGSTER_HOME": str(tmp_path / "alloc" / "dagster"),
           "ALLOC_MARKET_DATA": str(tmp_path / "exports"), "ALLOC_DEMO_PATHS": "200"}
    proc = _demo(env)
    out = proc.stdout
    assert proc.returncode == 0, (out[-3000:], proc.stderr[-3000:])
    assert len(out.splitlines()) < 200
    assert "benchmark: GSPC" in out and "indicators (latent state, never traded): vix" in out
    with duckdb.connect(str(tmp_path / "alloc" / "warehouse.duckdb"), read_only=True) as con:
        symbols = [r[0] for r in con.execute("SELECT DISTINCT symbol FROM market_prices ORDER BY symbol").fetchall()]
        state_cols = [r[0] for r in con.execute("DESCRIBE latent_state").fetchall()]
        first, last, n = con.execute("SELECT min(date), max(date), count(*) FROM latent_state").fetchone()
        weights = {r[0] for r in con.execute("SELECT DISTINCT symbol FROM weights_raw").fetchall()}
        adj = con.execute(f"SELECT close FROM market_prices WHERE symbol = '{names[0]}' ORDER BY date LIMIT 1").fetchone()[0]
    assert symbols == sorted(names) and weights <= set(names)
    assert "vix" in state_cols
    assert (first, last, n) == (FIRST, dt.date(2022, 12, 28), len(sessions_between(FIRST, dt.date(2022, 12, 28))))
    panel = load_bundled_panel()
    j = panel.symbols.index(names[0])
    assert adj == float(f"{panel.close[panel.dates >= np.datetime64(FIRST)][0, j]:.6f}")  # Adj Close, not Close


@pytest.mark.slow
@pytest.mark.parametrize("where", ["reader", "checks"])
def test_a_bad_file_prints_five_lines_at_most_and_logs_the_traceback(tmp_path, where):
    """``reader``: a price that is not a number stops the read; ``checks``: an empty cell reads as
    NaN and fails the blocking check ``prices_finite_positive`` inside the run."""
    folder = tmp_path / "exports"
    folder.mkdir()
    bad = "abc" if where == "reader" else ""
    days = [d for d in sessions_between(dt.date(2021, 1, 4), dt.date(2021, 3, 31))]
    rows = [f"{_mdy(d)},1,1,1,1,{bad if k == 1 else 10 + k * 0.01},10" for k, d in enumerate(days)]
    (folder / "SPY.csv").write_text("Date,Open,High,Low,Close,Adj Close,Volume\n" + "\n".join(rows) + "\n")
    env = {**os.environ, "ALLOC_HOME": str(tmp_path / "alloc"), "DAGSTER_HOME": str(tmp_path / "alloc" / "dagster"),
           "ALLOC_MARKET_DATA": str(folder)}
    proc = subprocess.run([sys.executable, "-m", "alloc_assets.demo"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert 1 < len(err) <= 5, proc.stderr
    text = " ".join(err)
    assert "SPY.csv" in text and "row 2" in text and "Adj Close" in text
    for stream in (proc.stdout, proc.stderr):
        assert "Traceback" not in stream and "Stack Trace" not in stream
    log = Path(err[-1].split(": ", 1)[1]).read_text()
    assert ("Traceback" in log or "Stack Trace" in log) and "SPY.csv" in log
