"""Pure, typed cores: no Dagster import anywhere in this package.

Assets in ``alloc_assets.defs`` wire these functions to storage; tests call them directly.
"""
