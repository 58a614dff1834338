"""The audit: metrics, controls, drawdown episodes, the bootstrap, the verdict, the report and its figures."""
