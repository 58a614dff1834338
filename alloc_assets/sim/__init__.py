"""The JAX Monte Carlo engine: pure functions of arrays and explicit PRNG keys (no Dagster import).

Sub-packages: ``models`` (the world model and simulated calendars), ``engine`` (the jit-compiled
scan over days, the allocator as a daily step, the books, per-path metrics), ``scenarios`` (named
scenarios, stress shocks, the dashboard), ``search`` (the strategy search) and ``portfolio`` (the
resilience optimiser and the regime-aware allocation).
"""
