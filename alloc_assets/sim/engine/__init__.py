"""The simulation kernel: one jitted scan over days, the allocator as a daily step, the books, per-path metrics."""
