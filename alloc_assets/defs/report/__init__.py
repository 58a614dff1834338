"""Dagster: the controls, the comparison report and its figures."""
