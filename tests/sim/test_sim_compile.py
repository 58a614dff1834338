"""JAX's persistent compilation cache under ALLOC_HOME: a new process reuses the compiled kernel.

Two fresh processes run the same simulation with ``sim.engine.kernel.enable_compilation_cache``: the first
compiles and writes the cache, the second loads the kernel from it (JAX's own cache-hit event,
counted through ``jax.monitoring``) and gives bit-identical results. A directory the user already
configured is kept.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    hits = []
    jax.monitoring.register_event_listener(lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None)
    from alloc_assets.sim.engine.kernel import SimSettings, enable_compilation_cache, run_strategies
    from alloc_assets.sim.models.calendar import regular_calendar
    from alloc_assets.sim.models.world import GBM
    used = enable_compilation_cache(sys.argv[1])
    model = GBM.create(mu=[0.05, 0.03], sigma=[0.2, 0.1], corr=[[1.0, 0.3], [0.3, 1.0]])
    run = run_strategies(model, 100, regular_calendar(126), 3, settings=SimSettings(block_size=100, chunk_paths=100))
    print(json.dumps({"dir": used, "hits": len(hits), "sharpe": run.metrics["allocator"]["sharpe"].tolist()}))
    """
)


def _run(cache: Path, env_extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(env_extra or {})
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(cache)], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[2], timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_kernel_from_the_persistent_cache(tmp_path):
    cache = tmp_path / "jax-cache"
    first = _run(cache)
    assert first["dir"] == str(cache)
    assert first["hits"] == 0
    assert any(cache.iterdir()), "nothing was written to the cache"
    second = _run(cache)
    assert second["hits"] >= 1
    assert second["sharpe"] == first["sharpe"]  # bit-identical through the cache


def test_a_cache_directory_set_by_the_user_wins(tmp_path):
    mine = tmp_path / "mine"
    out = _run(tmp_path / "ours", {"JAX_COMPILATION_CACHE_DIR": str(mine)})
    assert out["dir"] == str(mine)
    assert any(mine.iterdir()) and not (tmp_path / "ours").exists()
