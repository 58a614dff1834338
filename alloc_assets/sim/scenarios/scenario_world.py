"""The world model of a scenario: the calibrated equities rescaled to the scenario's targets, plus
the rates sleeve and the shock's state (see docs/notes/simulation.md for the method and its reasons).

One scale ``s`` multiplies every regime's volatilities and every regime's mean deviation from the
stationary mean, then one shift of all log means sets the drift; ``s`` is solved by bisection on
the exact moments of the regime mixture so that the equal-weight equity index's daily simple
return has mean ``return / 252`` and standard deviation ``vol / sqrt(252)``.
"""

from __future__ import annotations

import numpy as np

from alloc_assets.sim.models.world import TRADING_DAYS_PER_YEAR, WorldModel, stationary_distribution
from alloc_assets.sim.scenarios.catalogue import (
    CORRELATION_SHARE,
    CREDIT_EQUITY_BETA,
    EQUITY_RATE_DURATION,
    HESTON_KAPPA,
    HESTON_VOL_OF_VAR,
    RATES_DURATION,
    RATES_VOL_MULTIPLIER,
    TERM_PREMIUM,
    YIELD_VOL,
    MarketShock,
    ScenarioSpec,
)



def _index_moments(means: np.ndarray, covs: np.ndarray, pi: np.ndarray) -> tuple[float, float]:
    """Daily arithmetic mean and variance of the equal-weight (daily rebalanced) index's simple
    return under the regime mixture ``pi``, exactly (log-normal moments within each regime):
    ``E[1 + R | k] = sum_i w_i e^(m_ki + S_kii / 2)``,
    ``E[(1 + R)^2 | k] = sum_ij w_i w_j e^(m_ki + m_kj + (S_kii + S_kjj) / 2 + S_kij)``."""
    n = means.shape[1]
    w = np.full(n, 1.0 / n)
    d = w * np.exp(means + 0.5 * np.einsum("kii->ki", covs))  # (K, N)
    g1 = d.sum(axis=1)
    g2 = np.einsum("ki,kij,kj->k", d, np.exp(covs), d)
    e1, e2 = float(pi @ g1), float(pi @ g2)
    return e1 - 1.0, e2 - e1 * e1


def _rescale(world: WorldModel, equity_return: float, equity_vol: float) -> tuple[np.ndarray, np.ndarray]:
    """Means (K, N) and covariances (K, N, N) giving the equal-weight index the target moments.

    One scale ``s`` multiplies every regime's volatilities (covariances by ``s^2``) and every
    regime's mean deviation from the stationary mean (so the regimes keep their ratios and the
    between-regime part of the variance scales too: scaling only the covariances would leave the
    between-regime variance of the means, and calm scenarios would come out too volatile); one shift of all log means then sets
    the arithmetic mean. ``s`` is found by bisection on the exact mixture variance
    (:func:`_index_moments`): the equal-weight index's daily simple return has mean
    ``equity_return / 252`` and standard deviation ``equity_vol / sqrt(252)`` under the stationary
    regime distribution.
    """
    a = np.asarray(world.transition, dtype=np.float64)
    means0 = np.asarray(world.means, dtype=np.float64)
    covs0 = world.covariances()
    pi = stationary_distribution(a)
    mbar = pi @ means0
    target_mean = equity_return / TRADING_DAYS_PER_YEAR
    target_var = equity_vol**2 / TRADING_DAYS_PER_YEAR

    def scaled(s: float) -> tuple[np.ndarray, np.ndarray, float]:
        m = mbar + s * (means0 - mbar)
        c = covs0 * (s * s)
        mean, _ = _index_moments(m, c, pi)
        m = m + np.log((1.0 + target_mean) / (1.0 + mean))
        return m, c, _index_moments(m, c, pi)[1]

    lo, hi = 1e-6, 1.0
    while scaled(hi)[2] < target_var:
        hi *= 2.0
        if hi > 1e6:
            raise ValueError(f"cannot reach an equity volatility of {equity_vol:.2%}")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if scaled(mid)[2] < target_var:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-15 * hi:
            break
    means, covs, _ = scaled(0.5 * (lo + hi))
    return means, covs


def scenario_world_model(spec: ScenarioSpec, world: WorldModel, p0_today: np.ndarray | None = None) -> WorldModel:
    """The world model of a scenario: the equities of ``world`` (changed as documented) plus the rates sleeve.

    Parameters
    ----------
    spec : the scenario.
    world : the calibrated model (K regimes, N equities, daily).
    p0_today : today's regime probabilities for ``from_today`` (default ``world.p0``).

    Returns
    -------
    ``WorldModel`` over N + 1 assets (float64), the rates sleeve last.
    """
    a = np.asarray(world.transition, dtype=np.float64)
    k, n = world.n_regimes, world.n_assets
    if spec.calibrated:
        means, covs = np.asarray(world.means, dtype=np.float64), world.covariances()
        p0 = np.asarray(world.p0 if p0_today is None else p0_today, dtype=np.float64)
    else:
        means, covs = _rescale(world, spec.equity_return, spec.equity_vol)
        p0 = stationary_distribution(a)
    shock = spec.shock or MarketShock()
    if shock.start_regime is not None:
        p0 = np.eye(k)[int(shock.start_regime)]

    dy = shock.yield_change()
    bond_vol = RATES_DURATION * YIELD_VOL / np.sqrt(TRADING_DAYS_PER_YEAR)
    rf_after = spec.rf + shock.rates_bp / 1e4
    bond_mean = np.log1p((rf_after + TERM_PREMIUM) / TRADING_DAYS_PER_YEAR) - 0.5 * bond_vol**2
    w = np.full(n, 1.0 / n)
    big_means = np.zeros((k, n + 1))
    big_covs = np.zeros((k, n + 1, n + 1))
    for r in range(k):
        s = covs[r]
        sw = s @ w
        big_covs[r, :n, :n] = s
        big_covs[r, :n, n] = big_covs[r, n, :n] = spec.corr_equity_rates * bond_vol * sw / np.sqrt(w @ sw)
        big_covs[r, n, n] = bond_vol**2
        big_means[r, :n] = means[r]
        big_means[r, n] = bond_mean
    if spec.shock is None:
        return WorldModel.create(a, big_means, big_covs, p0=p0)
    # price moves of the shock, spread over its horizon (a drift change, not a gap)
    jump = np.zeros(n + 1)
    jump[:n] = np.log1p(max(-0.99, -EQUITY_RATE_DURATION * (shock.rates_bp / 1e4) - CREDIT_EQUITY_BETA * shock.credit_spread_bp / 1e4))
    jump[n] = np.log1p(max(-0.99, -RATES_DURATION * dy))
    # rates volatility: the bond leg's shocks x RATES_VOL_MULTIPLIER, decaying with VOL_HALF_LIFE_DAYS
    mult = np.ones(n + 1)
    if dy != 0.0:
        mult[n] = RATES_VOL_MULTIPLIER
    # equity volatility: the Heston variance factor starts at var0 and mean-reverts (HESTON_KAPPA, HESTON_VOL_OF_VAR)
    start_var = float(p0 @ np.einsum("i,kij,j->k", w, covs, w))  # daily variance of the index, day 1
    var0, load = 1.0, 0.0
    if shock.vix_to:
        # implied ~ realised: the index starts at the VIX level; CORRELATION_SHARE of that variance
        # is one common shock (the correlation jump), the rest the variance factor's
        target = (shock.vix_to / 100.0) ** 2 / TRADING_DAYS_PER_YEAR
        load = float(np.sqrt(CORRELATION_SHARE * target))
        var0 = max(1.0, (1.0 - CORRELATION_SHARE) * target / start_var)
    elif shock.equity_vol_multiplier:
        var0 = shock.equity_vol_multiplier**2
    kappa = HESTON_KAPPA / TRADING_DAYS_PER_YEAR
    exposure = np.r_[np.ones(n), 0.0]
    return WorldModel.create(
        a, big_means, big_covs, p0=p0, jump=jump, shock_days=shock.shock_days,
        vol_multiplier0=mult, vol_half_life=shock.vol_half_life_days,
        var0=var0, var_kappa=kappa, var_xi=HESTON_VOL_OF_VAR / np.sqrt(TRADING_DAYS_PER_YEAR), var_exposure=exposure,
        factor_load=np.r_[np.full(n, load), 0.0], factor_decay=np.sqrt(1.0 - kappa),
    )


def scenario_cash_rate(spec: ScenarioSpec) -> float:
    """The annual rate cash earns in the scenario (after any rate shock)."""
    return spec.rf + (spec.shock.rates_bp / 1e4 if spec.shock else 0.0)
