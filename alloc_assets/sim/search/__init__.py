"""The strategy search across simulated two-asset markets, and its figures and tables."""
