"""Definitions are loaded the ``dg`` way: a module that ``dg scaffold defs`` writes under
``alloc_assets/defs`` is part of the code location with no edit to ``definitions.py``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_scaffolded_asset_loads_without_touching_definitions(tmp_path):
    project = tmp_path / "project"
    ignore = shutil.ignore_patterns("__pycache__", "data")
    for name in ("alloc_assets", "resources", "sql"):
        shutil.copytree(REPO / name, project / name, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", project / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(project)}
    dg = Path(sys.executable).with_name("dg")
    scaffold = subprocess.run([str(dg), "scaffold", "defs", "dagster.asset", "probe/probe_asset.py"], cwd=project,
                              env=env, capture_output=True, text=True, timeout=300)
    assert scaffold.returncode == 0, scaffold.stdout[-2000:] + scaffold.stderr[-2000:]
    assert (project / "alloc_assets" / "defs" / "probe" / "probe_asset.py").exists()
    code = ("import json\nfrom alloc_assets.definitions import defs\n"
            "print(json.dumps(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())))")
    load = subprocess.run([sys.executable, "-c", code], cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert load.returncode == 0, load.stderr[-3000:]
    keys = json.loads(load.stdout.strip().splitlines()[-1])
    assert "probe_asset" in keys and "market_prices" in keys and "comparison_report" in keys
