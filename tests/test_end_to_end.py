"""End to end with the real Dagster daemon and webserver (``dagster dev`` on 127.0.0.1).

A history through 2022-12-28 (the bundled set's last day) is stored first; then a landing file for
the next trading day, 2022-12-29, is dropped. The running sensor must request a run, the daily
layers must store that day, the run-status sensor must refresh the report, all within a bounded
time. Then two days land out of order and the daemon must catch the later one up. The same setup serves the browser test below.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from alloc_assets.core.panel import load_bundled_panel

REPO = Path(__file__).resolve().parent.parent
NEXT_DAY = "2022-12-29"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp: Path) -> dict[str, str]:
    return {**os.environ, "ALLOC_HOME": str(tmp / "alloc"), "DAGSTER_HOME": str(tmp / "dagster"),
            "DAGSTER_EVENT_BATCH_SIZE": "10000", "ALLOC_AUTOMATION": "on", "ALLOC_SENSOR_INTERVAL_SECONDS": "5"}


def _python(code: str, env: dict) -> None:
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def landing_file(directory: Path, day: str = NEXT_DAY, seed: int = 7) -> Path:
    """Closes for ``day``: the last bundled close moved by a small deterministic return, plus SP500."""
    panel = load_bundled_panel()
    rng = np.random.default_rng(seed)
    close = panel.close[-1] * (1 + rng.normal(0, 0.01, len(panel.symbols)))
    header = ["date", *panel.symbols, "SP500"]
    values = [day, *[f"{v:.6f}" for v in close], f"{panel.benchmark[-1] * 1.004:.4f}"]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"prices_{day}.csv"
    path.write_text(",".join(header) + "\n" + ",".join(values) + "\n")
    return path


def _last_dates(warehouse: Path) -> dict[str, str] | None:
    """max(date) of each daily table, or None while a run holds the DuckDB write lock."""
    import duckdb

    try:
        con = duckdb.connect(str(warehouse), read_only=True)
    except duckdb.Error:
        return None
    try:
        return {t: str(con.execute(f"SELECT max(date) FROM {t}").fetchone()[0])
                for t in ("market_prices", "latent_state", "regime_series", "risk_scalars")}
    except duckdb.Error:
        return None
    finally:
        con.close()


def _wait(what: str, predicate, log: Path, seconds: float = 240):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    pytest.fail(f"timed out waiting for {what}\n" + log.read_text()[-4000:])


@pytest.fixture(scope="module")
def running_dagster(tmp_path_factory):
    """History stored in-process, then ``dagster dev`` (webserver + daemon) on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("e2e")
    env = _env(tmp)
    _python(
        "from alloc_assets.demo import prepare_instance_home; prepare_instance_home()\n"
        "import dagster as dg\n"
        "from alloc_assets.definitions import defs\n"
        "from alloc_assets.partitions import range_tags\n"
        "i = dg.DagsterInstance.get()\n"
        "assert defs.resolve_job_def('history_job').execute_in_process(instance=i, tags=range_tags('2022-06-01', '2022-12-28')).success\n"
        "assert defs.resolve_job_def('report_job').execute_in_process(instance=i).success\n", env)
    port = _free_port()
    log = open(tmp / "dagster_dev.log", "w")
    proc = subprocess.Popen([str(Path(sys.executable).parent / "dagster"), "dev", "-h", "127.0.0.1", "-p", str(port),
                             "-w", "workspace.yaml"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 180
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/server_info", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(1)
        else:
            pytest.fail("dagster dev did not come up:\n" + (tmp / "dagster_dev.log").read_text()[-3000:])
        yield {"url": url, "tmp": tmp, "env": env}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
def test_landing_file_reaches_the_report(running_dagster):
    tmp = running_dagster["tmp"]
    report = tmp / "alloc" / "reports" / "risk_parity" / "two_pass_comparison.json"
    assert json.loads(report.read_text())["window"]["end"] == "2022-12-28"
    landing_file(tmp / "alloc" / "landing")
    t0 = time.time()
    deadline = t0 + 240
    end = None
    while time.time() < deadline:
        if report.exists():
            try:
                end = json.loads(report.read_text())["window"]["end"]
            except (json.JSONDecodeError, KeyError):
                end = None
            if end == NEXT_DAY:
                break
        time.sleep(2)
    log = (tmp / "dagster_dev.log").read_text()
    assert end == NEXT_DAY, f"report still ends {end} after {time.time() - t0:.0f} s\n" + log[-4000:]
    import duckdb

    con = duckdb.connect(str(tmp / "alloc" / "warehouse.duckdb"), read_only=True)
    try:
        for table in ("market_prices", "latent_state", "regime_series", "risk_scalars"):
            (last,) = con.execute(f"SELECT max(date) FROM {table}").fetchone()
            assert str(last) == NEXT_DAY, table
        (n,) = con.execute(f"SELECT count(*) FROM market_prices WHERE date = DATE '{NEXT_DAY}'").fetchone()
        assert n == 20
    finally:
        con.close()
    (tmp / "e2e_seconds.txt").write_text(f"{time.time() - t0:.1f}\n")

    # Days out of order, through the daemon: 2023-01-03 lands before 2022-12-30 (2023-01-02 is a
    # holiday, so they are consecutive sessions). Its prices are
    # stored but its allocator layers stop (a day missing); when 2022-12-30 succeeds, the run-status
    # sensor requests the allocator layers for 2023-01-03, then the report follows.
    late, early = "2023-01-03", "2022-12-30"
    warehouse, dev_log = tmp / "alloc" / "warehouse.duckdb", tmp / "dagster_dev.log"
    landing_file(tmp / "alloc" / "landing", late, seed=9)
    _wait(f"prices of {late}", lambda: (d := _last_dates(warehouse)) and d["market_prices"] == late, dev_log)
    landing_file(tmp / "alloc" / "landing", early, seed=8)

    def caught_up():
        d = _last_dates(warehouse)
        try:
            end = json.loads(report.read_text())["window"]["end"]
        except (OSError, json.JSONDecodeError, KeyError):
            return None
        return d if d and end == late and set(d.values()) == {late} else None

    _wait(f"allocator layers and report through {late}", caught_up, dev_log, seconds=360)


ASSETS = ("market_prices", "latent_state", "regime_series", "risk_scalars", "applied_scalars", "weights_raw",
          "baseline_backtest", "weights_scaled", "scaled_backtest", "comparison_report")


def _chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"):
        if Path(candidate).exists():
            return candidate
    return None


def _dismiss_community_dialog(page) -> None:
    """First visits show a 'Join the Dagster community' dialog; skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.first.click(timeout=3000)
    except Exception:  # no dialog this time
        pass


@pytest.mark.slow
@pytest.mark.browser
def test_ui_in_a_real_browser(running_dagster):
    """Headless Chromium loads the running UI: every asset is listed; screenshots of the asset graph
    and of the report asset are saved (under $ALLOC_HOME/screenshots)."""
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium (Debian package chromium; .ci/run installs it)")
    from playwright.sync_api import sync_playwright

    url, tmp = running_dagster["url"], running_dagster["tmp"]
    shots = tmp / "alloc" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(f"{url}/assets", wait_until="networkidle", timeout=120_000)
        _dismiss_community_dialog(page)
        for name in ASSETS:
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(shots / "assets_list.png"), full_page=True)
        page.get_by_text("View lineage").first.click()
        page.wait_for_load_state("networkidle")
        _dismiss_community_dialog(page)
        # the global lineage shows one node per group (market -> allocator -> strategy -> report)
        for group in ("market", "allocator", "strategy", "report"):
            page.get_by_text(group, exact=True).first.wait_for(timeout=60_000)
        page.wait_for_timeout(2000)
        page.screenshot(path=str(shots / "asset_graph.png"), full_page=True)
        page.goto(f"{url}/assets/comparison_report", wait_until="networkidle", timeout=120_000)
        _dismiss_community_dialog(page)
        page.get_by_text("verdict").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "comparison_report.png"), full_page=True)
        browser.close()
    for name in ("assets_list", "asset_graph", "comparison_report"):
        assert (shots / f"{name}.png").stat().st_size > 20_000, name
