"""The Monte Carlo engine: one jit-compiled ``lax.scan`` over days, paths batched on the minor axis.

Paths are cut into blocks of ``block_size`` (the unit of randomness: a path's numbers depend on
``key``, ``block_size`` and its index, never on ``chunk_paths`` or the number of devices) and
blocks into chunks of about ``chunk_paths`` per device (the unit of work, which bounds memory).
``float32`` by default, ``float64`` with ``SimSettings(dtype="float64")``; every result carries
:func:`provenance`. Only the program's structure is static (horizon, block size, dtype, allocator
structure, baseline kind): costs and every number of the scalar map are traced, so changing them
never recompiles; :func:`enable_compilation_cache` keeps compiled programs across processes.
Details (devices, what is static and why) in docs/notes/simulation.md.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import platform
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from alloc_assets.core.report.metrics import daily_rate
from alloc_assets.sim.engine import allocator as alloc
from alloc_assets.sim.engine import allocator_state as alloc_state
from alloc_assets.sim.engine import metrics as sim_metrics
from alloc_assets.sim.engine import books as strat
from alloc_assets.sim.models.calendar import SimCalendar
from alloc_assets.sim.models.world import WorldModel, cast
from alloc_assets.sim.models.world_calibration import regime_weighted_variances

BOOKS: tuple[str, str] = ("baseline", "allocator")


@dataclass(frozen=True)
class SimSettings:
    """How paths are laid out and computed (static).

    block_size : paths per PRNG block (part of a result's identity: same key and block size, same paths).
    chunk_paths : paths per compiled call and device (memory bound); rounded to whole blocks. On
        CPU 1,000 is fastest for the allocator kernel (its ~420 covariance rows of 1,000 paths stay
        in a 2 MB L2 cache: measured 15 % faster than 5,000); on a GPU use 100,000 or more.
    dtype : ``"float32"`` or ``"float64"``.
    """

    block_size: int = 1000
    chunk_paths: int = 1000
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.block_size < 1 or self.chunk_paths < 1:
            raise ValueError("block_size and chunk_paths must be >= 1")


def provenance(settings: SimSettings = SimSettings()) -> dict:
    """What a simulated number depends on besides its inputs: library versions, RNG and precision flags."""
    import jaxlib

    devices = jax.local_devices()
    return {
        "jax_version": jax.__version__,
        "jaxlib_version": getattr(jaxlib, "__version__", None),
        "backend": jax.default_backend(),
        "device_kind": devices[0].device_kind if devices else None,
        "device_count": len(devices),
        "jax_default_prng_impl": str(jax.config.jax_default_prng_impl),
        "jax_threefry_partitionable": bool(jax.config.jax_threefry_partitionable),
        "jax_enable_x64": settings.dtype == "float64" or bool(jax.config.jax_enable_x64),
        "dtype": settings.dtype,
        "block_size": settings.block_size,
        "python": platform.python_version(),
    }


def enable_compilation_cache(path) -> str:
    """Use JAX's persistent compilation cache in ``path`` (created), unless one is already set.

    A directory the user set (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``) wins. Programs that
    took at least ``jax_persistent_cache_min_compile_time_secs`` (JAX's default, 1 s) to compile are
    stored; a later process with the same JAX version, backend and program loads them. If compiles
    already ran in this process without a cache, JAX's cache state is reset (public
    ``compilation_cache.reset_cache``) so that the directory takes effect. Returns the directory in use.
    """
    from pathlib import Path

    from jax.experimental.compilation_cache import compilation_cache as cc

    global _CACHE_DIR_SET_HERE
    current = jax.config.jax_compilation_cache_dir
    path = Path(path)
    if current and current != _CACHE_DIR_SET_HERE:
        return str(current)  # the user's
    if current == str(path):
        return current
    path.mkdir(parents=True, exist_ok=True)
    cc.set_cache_dir(str(path))
    cc.reset_cache()
    _CACHE_DIR_SET_HERE = str(path)
    return str(path)


_CACHE_DIR_SET_HERE: str | None = None


def as_key(key):
    """A typed PRNG key from an int seed, a typed key, or a legacy ``PRNGKey`` array."""
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    if jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key):
        return key
    return jax.random.wrap_key_data(jnp.asarray(key, dtype=jnp.uint32))


# --------------------------------------------------------------------------------------------------
# blocks -> chunks -> devices


@functools.lru_cache(maxsize=64)
def _compiled(block_fn, spec, blocks_per_device: int, n_devices: int):
    def local(traced, keys):
        return jax.vmap(functools.partial(block_fn, spec, traced))(keys)

    if n_devices > 1:
        mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("blocks",))
        local = jax.shard_map(local, mesh=mesh, in_specs=(PartitionSpec(), PartitionSpec("blocks")), out_specs=PartitionSpec("blocks"),
                              check_vma=False)  # blocks are independent: no collectives

    def chunk(traced, key, start):
        idx = start + jnp.arange(blocks_per_device * n_devices, dtype=jnp.uint32)
        keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(idx)
        return local(traced, keys)

    return jax.jit(chunk)


def _run_blocks(block_fn, spec, traced, key, n_paths: int, settings: SimSettings, devices: int | None = None):
    """Run ``block_fn(spec, traced, block_key)`` over all blocks; leaves come back (..., n_paths), NumPy."""
    if n_paths < 1:
        raise ValueError("n_paths must be >= 1")
    n_blocks = math.ceil(n_paths / settings.block_size)
    n_dev = min(devices or len(jax.local_devices()), n_blocks)
    per_dev = max(1, min(settings.chunk_paths // settings.block_size, math.ceil(n_blocks / n_dev)))
    group = per_dev * n_dev
    fn = _compiled(block_fn, spec, per_dev, n_dev)
    key = as_key(key)
    outs = [fn(traced, key, jnp.uint32(start)) for start in range(0, n_blocks, group)]  # dispatched asynchronously
    host = [jax.tree_util.tree_map(np.asarray, o) for o in outs]

    def join(*leaves):
        x = np.concatenate(leaves, axis=0)[:n_blocks]  # (blocks, ..., B)
        x = np.moveaxis(x, 0, -2)
        return x.reshape(x.shape[:-2] + (-1,))[..., :n_paths]

    return jax.tree_util.tree_map(join, *host)


def _materialise(x, t):
    """``x``, computed once into a buffer that its consumers read.

    The models build a day's returns as one long elementwise expression (unrolled products, chosen
    because they round identically whatever the chunk size). XLA on CPU fuses such a producer into
    each of its consumers, so the allocator's ~40 covariance updates each recomputed every regime's
    shocks (10x slower); ``optimization_barrier`` does not stop that, a conditional does: this one
    always takes its first branch (``t >= 1`` in the scan) and costs next to nothing.
    """
    return lax.cond(t >= 0, lambda v: v, lambda v: jax.tree_util.tree_map(jnp.zeros_like, v), x)


def _x64(settings: SimSettings):
    return jax.enable_x64(settings.dtype == "float64")


# --------------------------------------------------------------------------------------------------
# paths of a model


@dataclass(frozen=True)
class _PathSpec:
    horizon: int
    block_size: int
    dtype: str
    terminal: bool
    states: bool = False


def _paths_block(spec: _PathSpec, model, block_key):
    b = spec.block_size
    state0 = model.init(jax.random.fold_in(block_key, 0), b, spec.dtype)

    def step(state, t):
        return model.step(state, jax.random.fold_in(block_key, t), t, b)

    if spec.terminal:
        def body(carry, t):
            state, total = carry
            state, r = step(state, t)
            return (state, total + r), None

        n = model.n_assets
        (_, total), _ = lax.scan(body, (state0, jnp.zeros((n, b), spec.dtype)), jnp.arange(1, spec.horizon + 1))
        return total
    if spec.states:
        def with_state(state, t):
            state, r = step(state, t)
            return state, (r, state)

        _, (rs, states) = lax.scan(with_state, state0, jnp.arange(1, spec.horizon + 1))
        return {"log_returns": rs, "states": states}
    _, rs = lax.scan(step, state0, jnp.arange(1, spec.horizon + 1))
    return rs


def simulate_log_returns(model, n_paths: int, horizon: int, key, settings: SimSettings = SimSettings(),
                         return_states: bool = False):
    """Daily log returns of days 1..H: array (H, N, n_paths) (keep ``n_paths * H * N`` small).

    ``model`` is a ``GBM``, ``Heston`` or ``WorldModel``; prices are ``S0 * exp(cumsum(r, axis=0))``.
    With ``return_states``: ``{"log_returns": ..., "states": ...}``, the model's state after each
    day (the regime (H, n_paths) of a ``WorldModel``, the variances (H, N, n_paths) of a ``Heston``).
    """
    with _x64(settings):
        spec = _PathSpec(int(horizon), settings.block_size, settings.dtype, terminal=False, states=return_states)
        return _run_blocks(_paths_block, spec, cast(model, settings.dtype), key, n_paths, settings)


def simulate_terminal_log_returns(model, n_paths: int, horizon: int, key, settings: SimSettings = SimSettings()) -> np.ndarray:
    """Sum of the daily log returns over days 1..H, (N, n_paths): ``S_H = S_0 exp(total)``.

    The same paths as :func:`simulate_log_returns` with the same key and block size.
    """
    with _x64(settings):
        spec = _PathSpec(int(horizon), settings.block_size, settings.dtype, terminal=True)
        return _run_blocks(_paths_block, spec, cast(model, settings.dtype), key, n_paths, settings)


# --------------------------------------------------------------------------------------------------
# strategies and the allocator on every path


@dataclass(frozen=True)
class _StrategySpec:
    horizon: int
    block_size: int
    dtype: str
    allocator: alloc_state.AllocatorConfig
    strategy: strat.StrategyConfig
    fresh: bool
    record: bool
    score_buffer: int
    wealth_every: int
    n_assets: int


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _StrategyInputs:
    model: object
    start: alloc_state.AllocatorState
    rebalance: jax.Array
    refresh: jax.Array
    row0: jax.Array
    cash_rate: jax.Array
    risk_free: jax.Array
    cost_rate: jax.Array  # cost per unit of turnover (cost_bps / 1e4)
    scalars: alloc.ScalarValues


def _targets(spec: _StrategySpec, model, astate: alloc_state.AllocatorState, applied):
    kind = spec.strategy.kind
    b = spec.block_size
    regime_var = regime_weighted_variances(model, astate.probs) if kind is strat.BaselineKind.INVERSE_VOL_REGIME else None
    raw = strat.raw_targets(spec.strategy, spec.n_assets, b, spec.dtype, astate.cov_long, regime_var)
    return strat.book_targets(raw, applied)


def _strategy_block(spec: _StrategySpec, inp: _StrategyInputs, block_key):
    b, dt = spec.block_size, spec.dtype
    cfg = spec.allocator
    warm_days = cfg.features.warm_days
    model = inp.model
    mstate = model.init(jax.random.fold_in(block_key, 0), b, dt)
    astate = alloc_state.broadcast_state(inp.start, b, dt)
    books = strat.init_books(spec.n_assets, b, dt)

    if spec.fresh:  # day 0 is the first day of the history: its regime step has not run yet
        astate, out0 = alloc.allocator_day(astate, None, inp.row0 >= warm_days, inp.refresh[0], True, cfg, advance=False,
                                           values=inp.scalars)
        applied0 = out0["applied"]
    else:
        applied0 = jnp.where(jnp.isfinite(astate.pending), astate.pending, inp.scalars.apply_missing).astype(dt)
        astate = dataclasses.replace(astate, pending=astate.scalar)
        out0 = None
    books, _ = strat.trade(books, _targets(spec, model, astate, applied0), True, None, cost_rate=inp.cost_rate)

    def body(carry, xs):
        mstate, astate, books = carry
        t, rebalance, refresh = xs
        mstate, r = model.step(mstate, jax.random.fold_in(block_key, t), t, b)
        r = _materialise(r, t)
        books, gross = strat.drift(books, jnp.expm1(r), inp.cash_rate)
        astate, out = alloc.allocator_day(astate, r, (inp.row0 + t) >= warm_days, refresh, rebalance, cfg, values=inp.scalars)
        books, cost = strat.trade(books, _targets(spec, model, astate, out["applied"]), rebalance, None, cost_rate=inp.cost_rate)
        ys = {"returns": gross - cost}
        if spec.record:
            ys.update(log_returns=r, **{k: out[k] for k in ("features", "score", "thresholds", "probs", "label", "scalar", "applied")})
        return (mstate, astate, books), ys

    t = jnp.arange(1, spec.horizon + 1)
    _, ys = lax.scan(body, (mstate, astate, books), (t, inp.rebalance[1:], inp.refresh[1:]))
    rets = ys["returns"]  # (H, 2, B)
    wealth = jnp.cumprod(1.0 + rets, axis=0)
    snaps = jnp.concatenate([jnp.ones((1, 2, b), dt), wealth[spec.wealth_every - 1 :: spec.wealth_every]])
    out = {"metrics": sim_metrics.path_metrics(rets, inp.risk_free), "wealth": snaps}
    if spec.record:
        rec = {k: v for k, v in ys.items()}
        if out0 is not None:
            for k in ("features", "score", "thresholds", "probs", "label", "scalar", "applied"):
                rec[k] = jnp.concatenate([out0[k][None], rec[k]])
        out["record"] = rec
    return out


@dataclass(frozen=True)
class StrategyRun:
    """Both books on every path.

    metrics : ``{"baseline" | "allocator": {PathMetric value: (n_paths,)}}``.
    wealth : ``{"baseline" | "allocator": (S, n_paths)}`` wealth on ``wealth_days`` (day 0 = 1).
    wealth_days : (S,) simulated day of each snapshot.
    record : with ``record=True``, the daily allocator outputs and returns of every path:
        ``log_returns`` (H, N, P); ``returns`` (H, 2, P); ``features`` (D, F, P); ``score``, ``label``,
        ``scalar``, ``applied`` (D, P); ``probs`` (D, 4, P); ``thresholds`` (D, 3, P) with D = H + 1
        for a fresh start (day 0 included) and H otherwise. Otherwise None.
    provenance : see :func:`provenance`.
    """

    metrics: dict
    wealth: dict
    wealth_days: np.ndarray
    record: dict | None
    provenance: dict
    n_paths: int
    horizon: int


def run_strategies(
    model,
    n_paths: int,
    calendar: SimCalendar,
    key,
    start: alloc_state.AllocatorStart | None = None,
    allocator: alloc_state.AllocatorConfig = alloc_state.AllocatorConfig(),
    strategy: strat.StrategyConfig = strat.StrategyConfig(),
    cash_rate_annual: float = 0.0,
    risk_free_annual: float | None = None,
    settings: SimSettings = SimSettings(),
    record: bool = False,
    wealth_every: int = 21,
    devices: int | None = None,
) -> StrategyRun:
    """Simulate ``model`` and run the baseline and the allocator book on every path.

    Parameters
    ----------
    model : ``WorldModel``, ``GBM`` or ``Heston`` (``inverse_vol_regime`` needs a ``WorldModel``).
    n_paths : number of paths.
    calendar : ``SimCalendar`` of days 0..H (H = ``calendar.horizon``).
    key : PRNG key or int seed.
    start : where the allocator starts (``allocator.fresh_state`` or ``allocator.state_from_carries``);
        default a fresh history with all day-0 prices 1.
    cash_rate_annual : rate earned by the cash remainder (decimal, annual).
    risk_free_annual : rate subtracted in the Sharpe ratio; default ``cash_rate_annual``.
    record : also return every daily allocator output (small runs: tests, inspection).
    wealth_every : days between wealth snapshots (fan charts).
    devices : use at most this many devices (default all).
    """
    if strategy.kind is strat.BaselineKind.INVERSE_VOL_REGIME and not isinstance(model, WorldModel):
        raise ValueError("the inverse_vol_regime baseline needs a WorldModel (its regime covariances)")
    n_assets = model.n_assets
    if allocator.scalars.vol_target is not None and "vol_21d" not in alloc_state.feature_columns(allocator.features):
        raise ValueError("ScalarConfig.vol_target needs a vol_21d feature (FeatureConfig.vol_half_lives must contain 21)")
    if start is None:
        start = alloc_state.fresh_state(np.ones(n_assets), allocator)
    rf = cash_rate_annual if risk_free_annual is None else risk_free_annual
    # longest stretch of days whose scores wait in the buffer before a refresh merges them
    cuts = np.concatenate([[0], np.flatnonzero(calendar.refresh), [calendar.horizon + 1]])
    score_buffer = int(np.diff(cuts).max())
    start_state = alloc_state.with_score_buffer(start.state, score_buffer)
    with _x64(settings):
        # Only the structure is static (the key of the compiled kernel): the cost and the numbers of
        # the scalar map travel as traced inputs, so changing them never recompiles.
        spec = _StrategySpec(
            horizon=calendar.horizon,
            block_size=settings.block_size,
            dtype=settings.dtype,
            allocator=alloc.static_config(allocator),
            strategy=dataclasses.replace(strategy, cost_bps=0.0),
            fresh=start.fresh,
            record=record,
            score_buffer=score_buffer,
            wealth_every=int(wealth_every),
            n_assets=n_assets,
        )
        inputs = _StrategyInputs(
            model=cast(model, settings.dtype),
            start=jax.tree_util.tree_map(jnp.asarray, start_state),
            rebalance=jnp.asarray(calendar.rebalance),
            refresh=jnp.asarray(calendar.refresh),
            row0=jnp.asarray(start.row0, jnp.int32),
            cash_rate=jnp.asarray(daily_rate(cash_rate_annual), settings.dtype),
            risk_free=jnp.asarray(daily_rate(rf), settings.dtype),
            cost_rate=jnp.asarray(strategy.cost_bps / 1e4, settings.dtype),
            scalars=alloc.scalar_values(allocator, settings.dtype),
        )
        out = _run_blocks(_strategy_block, spec, inputs, key, n_paths, settings, devices)
    metrics = {book: {k: v[i] for k, v in out["metrics"].items()} for i, book in enumerate(BOOKS)}
    wealth = {book: out["wealth"][:, i] for i, book in enumerate(BOOKS)}
    days = np.concatenate([[0], np.arange(wealth_every, calendar.horizon + 1, wealth_every)])
    return StrategyRun(metrics, wealth, days, out.get("record"), provenance(settings), n_paths, calendar.horizon)
