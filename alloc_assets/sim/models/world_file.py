"""The saved world model file (``scenario_models``' output): a pickle of ``{"model", "start",
"p_today", "last_date", "calibration_labels", "symbols"}`` under the simulation root.

A file written by an older version of ``WorldModel`` (fields missing) or a truncated one raises
``WorldFileError`` with what to do, not an AttributeError deep in the engine.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path


class WorldFileError(ValueError):
    """The world model file is missing, unreadable or from an older model version."""


def save_world_file(path: Path, saved: dict) -> None:
    """Write ``saved`` to ``path`` through a ``.tmp`` sibling (a reader never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps(saved))
    tmp.replace(path)


def load_world_file(path: Path) -> dict:
    """The saved world model, or a ``WorldFileError`` that says to re-materialize ``scenario_models``."""
    from alloc_assets.sim.models.world import WorldModel

    if not path.exists():
        raise WorldFileError(f"{path} does not exist: materialize scenario_models first.")
    try:
        saved = pickle.loads(path.read_bytes())
        model = saved["model"]
        missing = [f.name for f in dataclasses.fields(WorldModel) if f.name not in vars(model)]
    except Exception as exc:  # truncated or foreign file
        raise WorldFileError(f"{path} cannot be read ({exc}): materialize scenario_models again.") from None
    if missing:
        raise WorldFileError(f"{path} was written by an older version of the world model "
                             f"(no {', '.join(missing)}): materialize scenario_models again.")
    return saved
