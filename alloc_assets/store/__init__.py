"""Functions that read and write warehouse tables through the ``DuckDBWarehouse`` resource object (no Dagster import)."""
