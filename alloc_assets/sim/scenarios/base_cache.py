"""The ``base`` scenario's result, simulated once and shared by every scenario partition process.

Every scenario is compared with ``base`` on the same random numbers; partitions run in separate
processes, so the first one to need ``base`` writes it to a file keyed by the world model file,
the settings and the simulation code, and the others read it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from pathlib import Path

from alloc_assets import sim as sim_package


def base_result_path(root: Path, model_bytes: bytes, settings: dict) -> Path:
    """Where the ``base`` scenario's result for this world model file and these settings is kept:
    ``<root>/base_cache/base-<sha256>.pkl``, the hash over the model file's contents, the settings
    (JSON, sorted keys) and the simulation code (``alloc_assets/sim`` sources), so a changed model,
    setting or engine never reads a stale result."""
    h = hashlib.sha256()
    h.update(hashlib.sha256(model_bytes).digest())
    h.update(json.dumps(settings, sort_keys=True, default=str).encode())
    sim_dir = Path(sim_package.__file__).resolve().parent
    for source in sorted(sim_dir.rglob("*.py")):
        h.update(source.relative_to(sim_dir).as_posix().encode())
        h.update(source.read_bytes())
    return root / "base_cache" / f"base-{h.hexdigest()[:32]}.pkl"


def load_or_compute(path: Path, compute):
    """``(value, True)`` from the pickle at ``path`` if it is there and readable, else
    ``(compute(), False)`` after writing it atomically (a temporary file in the same directory,
    then ``os.replace``): every partition process reads the one result the first one wrote; two
    that start together may both compute it and write the same content."""
    try:
        return pickle.loads(path.read_bytes()), True
    except (FileNotFoundError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        pass
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pickle.dumps(value))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return value, False
