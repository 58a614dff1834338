"""The JAX Monte Carlo engine: pure functions of arrays and explicit PRNG keys (no Dagster import)."""
