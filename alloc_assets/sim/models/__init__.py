"""The world model (regime switching, GBM, Heston), its calibration and file, simulated calendars."""
