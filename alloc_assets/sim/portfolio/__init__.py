"""Portfolios on the world model: the resilience optimiser and the regime-aware allocation."""
