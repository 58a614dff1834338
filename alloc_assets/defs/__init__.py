"""Dagster definitions by layer: each module wires pure cores to storage."""
