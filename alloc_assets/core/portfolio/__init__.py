"""Portfolio construction: strategy profiles, risk parity, limits, transitions, and the backtest engine."""
