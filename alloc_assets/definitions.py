"""The one Definitions object of regime-allocator: everything under ``alloc_assets/defs`` loaded the
``dg`` way (each module's assets, checks, jobs, schedules, sensors and ``@dg.definitions``), so a file
that ``dg scaffold defs`` writes there loads too."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

import alloc_assets.defs as defs_folder

# The project root holds pyproject.toml in a checkout; an installed copy has none, so the tree is
# built from the defs module itself rather than from ``load_from_defs_folder``'s project lookup.
defs = dg.ComponentTree.from_module(defs_module=defs_folder, project_root=Path(__file__).resolve().parent.parent).build_defs()
