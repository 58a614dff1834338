"""Named scenarios and stress shocks on top of a calibrated world model, and the stress dashboard.

A scenario is a documented change of the parameters or of the initial state of the world model
calibrated on history (``models.calibrate_world_model``). Every scenario's universe is the
calibrated equities plus one **rates sleeve** (a constant-duration Treasury index, the last
asset), so that the correlation between equities and rates and the rate shocks mean something.

Parameter scenarios (annualised decimals; equity = the equal-weight index of the equities;
``corr`` = correlation of daily returns of that index and of the rates sleeve):

=============  =======  ======  =====  ======  ==================================================
scenario       return   vol     rf     corr    why
=============  =======  ======  =====  ======  ==================================================
base           8 %      18 %    3 %    -0.3    long-run equity premium over cash, diversifying bonds
bull           15 %     12 %    2 %    0.0     strong, calm market; bonds no hedge needed
bear           -5 %     35 %    1 %    -0.6    falling, volatile market; rates cut, flight to quality
high_vol       5 %      40 %    2 %    -0.5    2008/2020-like volatility: low rates, strong flight
                                               to quality (between base and bear)
low_vol        7 %      8 %     4 %    0.2     2017-like calm with higher rates; inflation-driven
                                               regimes make bonds and stocks move together
=============  =======  ======  =====  ======  ==================================================

How the world model is changed (``scenario_world_model``): one scale ``s`` multiplies every
regime's volatilities (covariances by ``s^2``) *and* every regime's mean deviation from the
stationary mean, then one shift of all log means sets the drift; ``s`` is solved (bisection) on the
exact moments of the regime mixture (log-normal within each regime), so that under the stationary
regime distribution the equal-weight (daily rebalanced) equity index's daily **simple** return has
mean ``return / 252`` and standard deviation ``vol / sqrt(252)``: the scenario's annual drift and
volatility are ``252 x`` the mean and ``sqrt(252) x`` the standard deviation of daily returns. (The
review's M3: scaling only the covariances left the between-regime variance of the means and the
log/simple gap, so the calm scenarios came out too volatile.) The regime dynamics, the ratios
between regimes and the correlations are the calibrated ones. The volatility of a year's return is
not ``vol``: persistent regimes with different means make daily returns autocorrelated. The rates
sleeve: duration ``RATES_DURATION`` (7 years), yield volatility ``YIELD_VOL`` (0.9 %/year, so
about 6.3 % return volatility), expected return ``rf + TERM_PREMIUM`` (1 %), correlated with the
equity index at ``corr`` in every regime. Cash earns ``rf``; Sharpe ratios are in excess of it.
Parameter scenarios start from the stationary regime distribution.

Stress shocks (on the base parameters). A shock acts through the model's state and persists
(``models.WorldModel``), so the allocator has something to react to: its price moves are a drift
spread evenly over ``SHOCK_DAYS`` (63 trading days, three months: its stated horizon), not a
day-one gap; equity volatility is a Heston variance factor started at ``var0`` that mean-reverts
with the seed's Heston (kappa 2 a year, vol of variance 0.3 at theta 0.04, 1.5 in relative units);
a yield shock multiplies the rates sleeve's volatility by ``RATES_VOL_MULTIPLIER`` (1.5) decaying
with a half-life of ``VOL_HALF_LIFE_DAYS`` (42 days); a VIX shock adds a correlation jump (one
common shock carrying ``CORRELATION_SHARE`` = 25 % of the day-1 index variance, decaying like the
variance factor); the starting regime can be forced. Sensitivities: equities move
``-EQUITY_RATE_DURATION`` (5) x the rate change and ``-CREDIT_EQUITY_BETA`` (4) x the spread
change; the rates sleeve ``-RATES_DURATION`` (7) x the total yield change (with the flight to
quality, ``-FLIGHT_TO_QUALITY`` x the spread change); cash and the sleeve's carry move with the
rate change.

* ``rates_up_200bp``: yields +200 bp over 3 months: rates sleeve ``-7 x 2 % = -14 %``, equities
  ``-5 x 2 % = -10 %``; equity volatility x ``EQUITY_VOL_MULTIPLIER`` (1.5) on day 1 (variance
  factor 2.25), rates volatility x 1.5; cash and the carry earn 2 % more.
* ``credit_spreads_400bp``: credit spreads +400 bp over 3 months: equities ``-4 x 4 % = -16 %``
  (about -4 % per +100 bp, the 2008/2020 ratio), yields -50 bp on the flight to quality (rates
  sleeve +3.5 %), equity volatility x 1.5, rates volatility x 1.5, start in STRESS.
* ``vol_spike``: VIX 15 -> 65: start in CRISIS; on day 1 the equal-weight index has a volatility of
  65 % (implied taken as realised): 25 % of that variance is the common shock, the rest the
  CRISIS regime's index variance x ``var0`` (at least 1); both mean-revert (Heston kappa).
* ``combined_2008``: the 2008-like combination: credit +400 bp, VIX 15 -> 65, yields -100 bp in all
  (a -50 bp rate cut plus the -50 bp flight to quality: the Treasury rally of late 2008; rates
  sleeve +7 %, equities -16 % + 2.5 % = -13.5 %, both over 3 months), cash at 2.5 %, start in CRISIS.

Each result carries its month-by-month path (``ScenarioResult.monthly``, ``path_rows``: volatility
of each month's return across paths and median drawdown at each month's end, per book; the
``stress_paths`` table) and :func:`shock_path_png` draws it against ``base``.

``from_today``: the calibrated world model unchanged, started from today's regime probabilities
(``p0``) and, for the allocator, from today's pipeline state (pass ``start``); the rates sleeve
and cash use the base parameters.

Every scenario is run with the same key (common random numbers), so differences between scenarios
are not sampling noise of different draws.
"""

from __future__ import annotations

import dataclasses
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from alloc_assets.core.regime import Regime
from alloc_assets.sim.engine import allocator as alloc
from alloc_assets.sim.engine import books as strat
from alloc_assets.sim.models.calendar import SimCalendar, regular_calendar
from alloc_assets.sim.engine.kernel import BOOKS, SimSettings, StrategyRun, run_strategies
from alloc_assets.sim.models.world import TRADING_DAYS_PER_YEAR, WorldModel, stationary_distribution

RATES_DURATION = 7.0
YIELD_VOL = 0.009
TERM_PREMIUM = 0.01
EQUITY_RATE_DURATION = 5.0
CREDIT_EQUITY_BETA = 4.0
FLIGHT_TO_QUALITY = 0.125  # yield change per unit of spread change (-50 bp for +400 bp)
VOL_HALF_LIFE_DAYS = 42.0
SHOCK_DAYS = 63  # a shock's price moves are spread over 3 months (its stated horizon)
RATES_VOL_MULTIPLIER = 1.5  # the rates sleeve's volatility on day 1 of a yield shock
EQUITY_VOL_MULTIPLIER = 1.5  # equity volatility on day 1 of a rate or credit shock (no VIX level given)
CORRELATION_SHARE = 0.25  # share of the day-1 index variance carried by one common shock in a VIX shock
HESTON_KAPPA = 2.0  # the seed's Heston: mean reversion a year ...
HESTON_VOL_OF_VAR = 0.3 / np.sqrt(0.04)  # ... and vol of variance 0.3 at theta 0.04, in relative units (1.5)
RATES_SYMBOL = "RATES_7Y"
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
DAYS_PER_MONTH = 21


@dataclass(frozen=True)
class MarketShock:
    """A shock acting through the model's state (see the module docstring): price moves spread over
    ``shock_days``, a mean-reverting equity variance factor, a correlation jump, a starting regime.

    rates_bp : parallel yield change (basis points). credit_spread_bp : credit spread change (bp).
    vix_from, vix_to : implied volatility before (descriptive) and after: day-1 equity index
    volatility ``vix_to`` % (Heston variance factor plus the common shock, both mean-reverting).
    vol_half_life_days : half-life of the rates sleeve's volatility multiplier.
    start_regime : regime of day 0.
    flight_to_quality : add the yield fall that comes with wider spreads (``FLIGHT_TO_QUALITY``).
    shock_days : days over which the price moves are spread (the shock's stated horizon).
    equity_vol_multiplier : day-1 equity volatility multiplier when no ``vix_to`` is given.
    """

    rates_bp: float = 0.0
    credit_spread_bp: float = 0.0
    vix_from: float | None = None
    vix_to: float | None = None
    vol_half_life_days: float = VOL_HALF_LIFE_DAYS
    start_regime: Regime | None = None
    flight_to_quality: bool = True
    shock_days: int = SHOCK_DAYS
    equity_vol_multiplier: float | None = None

    def yield_change(self) -> float:
        """Total yield change over the shock (decimal), including the flight to quality."""
        ftq = -FLIGHT_TO_QUALITY * self.credit_spread_bp if self.flight_to_quality else 0.0
        return (self.rates_bp + ftq) / 1e4


@dataclass(frozen=True)
class ScenarioSpec:
    """One named scenario (see the module docstring). Rates and returns annualised decimals."""

    name: str
    description: str
    equity_return: float | None
    equity_vol: float | None
    rf: float
    corr_equity_rates: float
    shock: MarketShock | None = None

    @property
    def calibrated(self) -> bool:
        """True when the calibrated world model is used as is (``from_today``)."""
        return self.equity_return is None


SCENARIOS: dict[str, ScenarioSpec] = {
    s.name: s
    for s in (
        ScenarioSpec("base", "long-run base case", 0.08, 0.18, 0.03, -0.3),
        ScenarioSpec("bull", "strong, calm market", 0.15, 0.12, 0.02, 0.0),
        ScenarioSpec("bear", "falling, volatile market, flight to quality", -0.05, 0.35, 0.01, -0.6),
        ScenarioSpec("high_vol", "crisis-level volatility, low rates", 0.05, 0.40, 0.02, -0.5),
        ScenarioSpec("low_vol", "calm market, higher rates, stocks and bonds together", 0.07, 0.08, 0.04, 0.2),
        ScenarioSpec("rates_up_200bp", "yields +200 bp over 3 months", 0.08, 0.18, 0.03, -0.3,
                     MarketShock(rates_bp=200.0, equity_vol_multiplier=EQUITY_VOL_MULTIPLIER)),
        ScenarioSpec(
            "credit_spreads_400bp", "credit spreads +400 bp over 3 months", 0.08, 0.18, 0.03, -0.3,
            MarketShock(credit_spread_bp=400.0, start_regime=Regime.STRESS, equity_vol_multiplier=EQUITY_VOL_MULTIPLIER),
        ),
        ScenarioSpec(
            "vol_spike", "VIX 15 -> 65 on day 1, mean-reverting (Heston)", 0.08, 0.18, 0.03, -0.3,
            MarketShock(vix_from=15.0, vix_to=65.0, start_regime=Regime.CRISIS),
        ),
        ScenarioSpec(
            "combined_2008", "2008-like: credit +400 bp, VIX 65, yields -100 bp, crisis regime", 0.08, 0.18, 0.03, -0.3,
            MarketShock(rates_bp=-50.0, credit_spread_bp=400.0, vix_from=15.0, vix_to=65.0, start_regime=Regime.CRISIS),
        ),
        ScenarioSpec("from_today", "calibrated world model from today's state", None, None, 0.03, -0.3),
    )
}
SCENARIO_NAMES: tuple[str, ...] = tuple(SCENARIOS)


def get_scenario(name: str) -> ScenarioSpec:
    """The named scenario; the error lists the known names."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIO_NAMES)}") from None


# --------------------------------------------------------------------------------------------------
# the scenario's world model


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
    between-regime part of the variance scales too: the review's M3, where only the covariances
    were scaled and the calm scenarios came out too volatile); one shift of all log means then sets
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
    # equity volatility: the Heston variance factor starts at var0 and mean-reverts (seed's kappa, xi)
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


# --------------------------------------------------------------------------------------------------
# running a scenario


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario run: per-path metrics of both books, summaries, wealth fan and provenance.

    metrics : ``{"baseline" | "allocator": {PathMetric value: (n_paths,)}}``.
    summary : ``{"baseline" | "allocator": {measure: float}}`` (see :func:`summarise`).
    wealth_days : (S,) simulated days of the wealth snapshots.
    wealth_quantiles : ``{book: (len(QUANTILES), S)}`` wealth quantiles across paths.
    """

    name: str
    spec: ScenarioSpec
    n_paths: int
    horizon_days: int
    metrics: dict
    summary: dict
    wealth_days: np.ndarray
    wealth_quantiles: dict
    quantiles: tuple[float, ...]
    provenance: dict
    elapsed_s: float
    settings: dict = field(default_factory=dict)
    monthly: dict = field(default_factory=dict)

    def path_rows(self) -> list[dict]:
        """The shock's path month by month, per book (table ``stress_paths``): ``month`` (1..),
        ``vol_annual`` = the cross-path standard deviation of the month's return x sqrt(12),
        ``drawdown_median`` = the median across paths of the drawdown at the month's end (from the
        monthly wealth snapshots), ``wealth_median``."""
        rows = []
        for book in BOOKS:
            m = self.monthly[book]
            for i in range(len(m["vol_annual"])):
                rows.append({"scenario": self.name, "book": book, "month": i + 1, "vol_annual": float(m["vol_annual"][i]),
                             "drawdown_median": float(m["drawdown_median"][i]), "wealth_median": float(m["wealth_median"][i])})
        return rows

    def dashboard_rows(self, base: "ScenarioResult | None" = None) -> list[dict]:
        """This scenario's rows of the stress dashboard (see :func:`stress_dashboard`)."""
        return stress_dashboard({self.name: self} if base is None else {base.name: base, self.name: self},
                                base=base.name if base is not None else self.name, names=[self.name])

    def fan_chart_png(self) -> bytes:
        return fan_chart_png(self)

    def drawdown_png(self) -> bytes:
        return drawdown_distribution_png(self)


def summarise(metrics: Mapping[str, np.ndarray], terminal_wealth: np.ndarray | None = None) -> dict:
    """Cross-path summary of one book: means, medians, tail probabilities (plain floats, JSON-safe).

    ``median_recovery_months`` counts a path that has not recovered by the horizon as never
    recovering (+inf); it is None when more than half of the paths have not recovered.
    """
    mdd = metrics["max_drawdown"]
    rec = metrics["recovery_days"]
    rec_inf = np.where(np.isnan(rec), np.inf, rec)
    med = float(np.median(rec_inf))
    out = {
        "sharpe_mean": float(np.nanmean(metrics["sharpe"])),
        "sharpe_median": float(np.nanmedian(metrics["sharpe"])),
        "annual_return_mean": float(np.nanmean(metrics["annual_return"])),
        "annual_return_median": float(np.nanmedian(metrics["annual_return"])),
        "annual_volatility_mean": float(np.nanmean(metrics["annual_volatility"])),
        "max_drawdown_median": float(np.median(mdd)),
        "p_drawdown_20": float(np.mean(mdd < -0.20)),
        "p_drawdown_30": float(np.mean(mdd < -0.30)),
        "median_recovery_months": med / DAYS_PER_MONTH if np.isfinite(med) else None,
        "share_unrecovered": float(np.mean(np.isnan(rec))),
        "var_95_mean": float(np.mean(metrics["var_95"])),
        "cvar_95_mean": float(np.mean(metrics["cvar_95"])),
        "worst_day_mean": float(np.mean(metrics["worst_day"])),
        "vol_cluster_share_mean": float(np.nanmean(metrics["vol_cluster_share"])),
    }
    if terminal_wealth is not None:
        total = np.sort(terminal_wealth - 1.0)
        k = max(1, int(np.floor(0.05 * total.size)))
        out["horizon_cvar_95"] = float(np.mean(total[:k]))
    return out


def run_scenario(
    name: str | ScenarioSpec,
    world_model: WorldModel,
    n_paths: int,
    horizon_days: int,
    key,
    start: alloc.AllocatorStart | None = None,
    p0_today: np.ndarray | None = None,
    strategy: strat.StrategyConfig = strat.StrategyConfig(),
    allocator: alloc.AllocatorConfig | None = None,
    calendar: SimCalendar | None = None,
    settings: SimSettings = SimSettings(),
    devices: int | None = None,
) -> ScenarioResult:
    """Simulate one scenario and run the baseline and the allocator book on every path.

    Parameters
    ----------
    name : a key of ``SCENARIOS`` (or a ``ScenarioSpec``).
    world_model : the calibrated model (``calibrate_world_model``) over the equities.
    n_paths, horizon_days : paths and trading days simulated.
    key : PRNG key or int seed (use the same one for every scenario: common random numbers).
    start : allocator start (``allocator.start_from_panel`` on the history for today's state;
        default a fresh history with the pipeline's priors). Its encoder sees the equities only.
    p0_today : today's regime probabilities (``from_today``; default ``world_model.p0``).
    strategy, allocator : settings of the books and of the allocator (``feature_assets`` is set
        to the number of equities).
    calendar : default: rebalance every 21 days, thresholds refreshed every 63.
    settings : engine settings (block size, chunk size, dtype).
    devices : use at most this many JAX devices (default all; results do not depend on it).

    Returns
    -------
    ``ScenarioResult``; ``.dashboard_rows(base_result)``, ``.fan_chart_png()``, ``.drawdown_png()``.
    """
    spec = name if isinstance(name, ScenarioSpec) else get_scenario(name)
    n_eq = world_model.n_assets
    model = scenario_world_model(spec, world_model, p0_today)
    cfg = dataclasses.replace(allocator or alloc.AllocatorConfig(), feature_assets=n_eq)
    if start is None:
        start = alloc.fresh_state(np.ones(n_eq + 1), cfg)
    cal = calendar or regular_calendar(horizon_days)
    if cal.horizon != horizon_days:
        raise ValueError(f"the calendar covers {cal.horizon} days, not horizon_days={horizon_days}")
    t0 = time.perf_counter()
    run = run_strategies(model, n_paths, cal, key, start=start, allocator=cfg, strategy=strategy,
                         cash_rate_annual=scenario_cash_rate(spec), settings=settings, devices=devices)
    elapsed = time.perf_counter() - t0
    return _result(spec, run, elapsed, settings)


def _result(spec: ScenarioSpec, run: StrategyRun, elapsed: float, settings: SimSettings) -> ScenarioResult:
    summary = {book: summarise(run.metrics[book], run.wealth[book][-1]) for book in BOOKS}
    fan = {book: np.quantile(run.wealth[book], QUANTILES, axis=1) for book in BOOKS}
    monthly = {book: monthly_path(run.wealth[book]) for book in BOOKS}
    return ScenarioResult(
        name=spec.name, spec=spec, n_paths=run.n_paths, horizon_days=run.horizon, metrics=run.metrics, summary=summary,
        wealth_days=run.wealth_days, wealth_quantiles=fan, quantiles=QUANTILES, provenance=run.provenance,
        elapsed_s=elapsed, settings=dataclasses.asdict(settings), monthly=monthly,
    )


def monthly_path(wealth: np.ndarray) -> dict:
    """From wealth snapshots (S, P) taken every month (day 0 first): per month 1..S-1 the
    cross-path volatility of the month's return (annualised, x sqrt(12)), the median drawdown at
    the month's end and the median wealth."""
    w = np.asarray(wealth, dtype=np.float64)
    month = w[1:] / w[:-1] - 1.0
    drawdown = w / np.maximum.accumulate(w, axis=0) - 1.0
    return {"vol_annual": month.std(axis=1, ddof=1) * np.sqrt(12.0), "drawdown_median": np.median(drawdown[1:], axis=1),
            "wealth_median": np.median(w[1:], axis=1)}


def stress_dashboard(results: Mapping[str, ScenarioResult], base: str = "base", names: Sequence[str] | None = None) -> list[dict]:
    """Rows scenario x book: ``scenario, book, baseline_sharpe`` (the book's mean Sharpe in the
    ``base`` scenario), ``stressed_sharpe`` (in this scenario), ``p_drawdown_20``,
    ``p_drawdown_30``, ``median_recovery_months`` (None: most paths not recovered by the horizon),
    ``cvar_95`` (mean per-path daily CVaR 95 %), ``horizon_cvar_95`` (mean of the worst 5 % of
    horizon returns), ``annual_return_median``, ``max_drawdown_median``, ``n_paths``, ``horizon_days``.
    """
    if base not in results:
        raise ValueError(f"the base scenario {base!r} is not among the results {sorted(results)}")
    rows = []
    for name in names or list(results):
        res = results[name]
        for book in BOOKS:
            s = res.summary[book]
            rows.append({
                "scenario": name,
                "book": book,
                "baseline_sharpe": results[base].summary[book]["sharpe_mean"],
                "stressed_sharpe": s["sharpe_mean"],
                "p_drawdown_20": s["p_drawdown_20"],
                "p_drawdown_30": s["p_drawdown_30"],
                "median_recovery_months": s["median_recovery_months"],
                "cvar_95": s["cvar_95_mean"],
                "horizon_cvar_95": s.get("horizon_cvar_95"),
                "annual_return_median": s["annual_return_median"],
                "max_drawdown_median": s["max_drawdown_median"],
                "n_paths": res.n_paths,
                "horizon_days": res.horizon_days,
            })
    return rows


def run_all_scenarios(world_model: WorldModel, n_paths: int, horizon_days: int, key, names: Sequence[str] = SCENARIO_NAMES,
                      **kwargs) -> tuple[dict[str, ScenarioResult], list[dict]]:
    """Every named scenario with the same key, and the dashboard rows (``base`` first if absent)."""
    names = list(names)
    if "base" not in names:
        names = ["base"] + names
    results = {n: run_scenario(n, world_model, n_paths, horizon_days, key, **kwargs) for n in names}
    return results, stress_dashboard(results, "base")


# --------------------------------------------------------------------------------------------------
# figures (matplotlib's Agg canvas, no pyplot, PNG bytes)


def _figure(figsize=(9.0, 4.2)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


_COLOURS = {"baseline": "#3c4a5a", "allocator": "#1f77b4"}


def fan_chart_png(result: ScenarioResult) -> bytes:
    """Wealth fan: median and 5-95 % / 25-75 % bands across paths for both books, in months."""
    fig = _figure()
    ax = fig.add_subplot()
    x = result.wealth_days / DAYS_PER_MONTH
    q = list(result.quantiles)
    for book in BOOKS:
        band = result.wealth_quantiles[book]
        c = _COLOURS[book]
        ax.fill_between(x, band[q.index(0.05)], band[q.index(0.95)], color=c, alpha=0.12, linewidth=0)
        ax.fill_between(x, band[q.index(0.25)], band[q.index(0.75)], color=c, alpha=0.25, linewidth=0)
        ax.plot(x, band[q.index(0.5)], color=c, linewidth=1.8, label=f"{book} (median, 25-75 %, 5-95 %)")
    ax.axhline(1.0, color="#999999", linewidth=0.8)
    ax.set_xlabel("months")
    ax.set_ylabel("wealth (start = 1)")
    ax.set_title(f"{result.name}: wealth of {result.n_paths:,} simulated paths")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def drawdown_distribution_png(result: ScenarioResult) -> bytes:
    """Histogram of the maximum drawdown of every path, both books, with the 20 % and 30 % lines."""
    fig = _figure()
    ax = fig.add_subplot()
    lo = min(float(np.min(result.metrics[b]["max_drawdown"])) for b in BOOKS)
    bins = np.linspace(min(lo, -0.35), 0.0, 50)
    for book in BOOKS:
        mdd = result.metrics[book]["max_drawdown"]
        ax.hist(mdd, bins=bins, color=_COLOURS[book], alpha=0.5,
                label=f"{book}: P(DD > 20 %) = {np.mean(mdd < -0.2):.0%}, median {np.median(mdd):.1%}")
    for level in (-0.2, -0.3):
        ax.axvline(level, color="#c0392b", linewidth=0.8, linestyle="--")
    ax.set_xlabel("maximum drawdown over the horizon")
    ax.set_ylabel("paths")
    ax.set_title(f"{result.name}: drawdown distribution")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def shock_path_png(result: ScenarioResult, base: ScenarioResult) -> bytes:
    """The shock's path against the base scenario (same random numbers), both books: volatility of
    each month's return across paths (annualised) and the median drawdown at each month's end."""
    fig = _figure(figsize=(9.0, 5.6))
    ax_vol, ax_dd = fig.subplots(2, 1, sharex=True)
    for book in BOOKS:
        c = _COLOURS[book]
        for res, style, tag in ((result, "-", result.name), (base, "--", base.name)):
            m = res.monthly[book]
            x = np.arange(1, len(m["vol_annual"]) + 1)
            ax_vol.plot(x, m["vol_annual"], style, color=c, linewidth=1.5, label=f"{book}, {tag}")
            ax_dd.plot(x, m["drawdown_median"], style, color=c, linewidth=1.5)
    ax_vol.set_ylabel("volatility (ann.)")
    ax_dd.set_ylabel("median drawdown")
    ax_dd.set_xlabel("months")
    ax_vol.set_title(f"{result.name}: volatility and drawdown month by month (dashed: {base.name})")
    ax_vol.legend(loc="upper right", fontsize=8)
    return _png(fig)
