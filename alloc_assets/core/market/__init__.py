"""Market input: files as users export them, the trading calendar, the price panel, the landing zone."""
