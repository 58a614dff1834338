"""regime-allocator: a regime-aware risk governor for portfolios, as a Dagster asset graph."""

__version__ = "0.1.0"
