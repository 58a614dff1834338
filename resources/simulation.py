"""Settings of the Monte Carlo assets: stress tests, strategy search, resilience optimiser and
regime-aware allocation."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from resources.settings import alloc_home


class SimulationSettings(dg.ConfigurableResource):
    """Monte Carlo settings: paths, horizon, seed (the same seed for every scenario), precision."""

    n_paths: int = Field(default=10_000, description="Simulated futures per scenario")
    horizon_days: int = Field(default=1260, description="Trading days simulated (1,260 = 5 years)")
    seed: int = Field(default=0, description="PRNG seed, shared by all scenarios (common random numbers)")
    dtype: str = Field(default="float32", description="float32 | float64")
    output_dir: str = Field(default="", description="Model and figures; empty = $ALLOC_HOME/sim")
    devices: int = Field(default=1, description="JAX devices one step uses: 1 (default), so that parallel partition "
                                                 "processes on a multi-GPU host take one each; results do not depend on it")
    calibration_labels: str = Field(
        default="realised_vol",
        description="Regime labels the world model is calibrated on: 'realised_vol' (causal quantiles of the "
                    "equal-weight index's 21-day realised volatility, independent of the allocator) or "
                    "'allocator' (the pipeline's own regime_series labels: flatters the allocator)")

    def root(self) -> Path:
        path = Path(self.output_dir) if self.output_dir else alloc_home() / "sim"
        path.mkdir(parents=True, exist_ok=True)
        return path


class SearchSettings(dg.ConfigurableResource):
    """Strategy search settings: simulated paths and horizon, seed, evaluation budget, stopping rule."""

    n_paths: int = Field(default=1000, description="Simulated paths per market scenario (the same shocks in every scenario)")
    horizon_days: int = Field(default=1260, description="Trading days evaluated (1,260 = 5 years; a multiple of 21)")
    seed: int = Field(default=0, description="Seed of the simulated markets and of the Latin hypercube of configurations")
    budget: int = Field(default=100, description="Most configurations evaluated (a multiple of batch_size)")
    batch_size: int = Field(default=20, description="Configurations per batch; the stopping rule is checked after each batch")
    early_stopping: bool = Field(default=True, description="Stop before the budget when no scenario's best objective "
                                 "improved by 1 % over the last 20 configurations")
    output_dir: str = Field(default="", description="Figures and the best-strategy table; empty = $ALLOC_HOME/search")

    def search_kwargs(self) -> dict:
        """The arguments of ``run_search`` / ``SearchPlan`` these settings decide."""
        return {"n_paths": self.n_paths, "horizon_days": self.horizon_days, "seed": self.seed, "budget": self.budget,
                "batch_size": self.batch_size, "early_stopping": self.early_stopping}

    def root(self) -> Path:
        path = Path(self.output_dir) if self.output_dir else alloc_home() / "search"
        path.mkdir(parents=True, exist_ok=True)
        return path


class ResilienceSettings(dg.ConfigurableResource):
    """The resilience optimiser: simulated paths, penalties (fixed by the rule of
    ``sim/portfolio/resilience.py``: 0.10 of annual return per natural unit), bounds, optimiser."""

    n_paths: int = Field(default=2000, description="Training paths (the optimiser and the benchmarks are fitted on them)")
    n_heldout_paths: int = Field(default=2000, description="Held-out paths (another key) on which every method is compared")
    horizon_days: int = Field(default=252, description="Trading days per path")
    seed: int = Field(default=0, description="Training key fold_in(key(seed), 0), held-out key fold_in(key(seed), 1)")
    lambda_drawdown: float = Field(default=0.10, description="Cost of P(max drawdown > threshold), in annual return")
    lambda_recovery: float = Field(default=0.10, description="Cost of one year of recovery time, in annual return")
    lambda_cluster: float = Field(default=0.10, description="Cost of a horizon spent entirely in volatility clusters")
    drawdown_threshold: float = Field(default=0.20, description="x in P(DD > x) (a fraction)")
    temp_drawdown: float = Field(default=0.02, description="Temperature of the drawdown sigmoid (drawdown units)")
    temp_recovery: float = Field(default=0.0025, description="Temperature of the recovery gates (log-wealth units)")
    temp_cluster: float = Field(default=0.10, description="Temperature of the cluster sigmoid (log variance ratio)")
    temp_max: float = Field(default=5e-4, description="Temperature of the smooth running maxima (log-wealth units)")
    min_weight: float = Field(default=0.0, description="Lower bound of every weight (every method)")
    max_weight: float = Field(default=0.25, description="Upper bound of every weight (every method)")
    iterations: int = Field(default=200, description="Projected Adam steps")
    learning_rate: float = Field(default=0.02, description="Adam step (weight units), cosine-decayed to 5 %")
    dtype: str = Field(default="float32", description="float32 | float64")

    def objective(self):
        from alloc_assets.sim.portfolio.resilience import ResilienceObjective

        return ResilienceObjective(lambda_drawdown=self.lambda_drawdown, lambda_recovery=self.lambda_recovery,
                                   lambda_cluster=self.lambda_cluster, drawdown_threshold=self.drawdown_threshold,
                                   temp_drawdown=self.temp_drawdown, temp_recovery=self.temp_recovery,
                                   temp_cluster=self.temp_cluster, temp_max=self.temp_max)


class RegimeAllocationSettings(dg.ConfigurableResource):
    """Regime-aware allocation: weight bounds of the minimum-variance optima and the hedge multiplier."""

    min_weight: float = Field(default=0.0, description="Lower bound of every weight")
    max_weight: float = Field(default=0.25, description="Upper bound of every weight")
    hedge_multiplier: float = Field(default=1.5, description="h = min(1, multiplier x (p_stress + p_crisis))")
