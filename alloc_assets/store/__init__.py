"""Warehouse reads and writes shared by the assets (through the DuckDBWarehouse resource; no Dagster import)."""
