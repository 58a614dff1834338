"""Named scenarios and stress shocks, their runs, the dashboard, tables and figures."""
