"""The Monte Carlo sweep: sample every uncertain input on the device, solve each sample's
optimal allocation, stream mergeable summaries, and turn them into a robust decision.

Layout of one run:
1. pilot: the first min(4096, n) samples (by global index, so every chunking, shard and host
   sees the same ones) fix the histogram ranges and the grid of candidate model sizes, and
   the optax refinement of the best candidate runs on them;
2. main pass: fixed-shape chunks (the tail padded and masked: one compile) over the sample
   range, the sample axis sharded over all local devices; each chunk returns integer
   accumulators (summary.py), merged exactly on the host; a checkpoint after each chunk;
3. summary: quantiles, moments, the share that did not converge, and the recommendation.

Sample i is a pure function of (seed, i) (distributions.py), so results do not depend on
chunk size, device count, shards or interruptions.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from . import summary as S
from .allocate import Budget, _broadcast, closed_form_scalar, interval, log_tokens, method_for, solve_scalar
from .devices import batch_sharding
from .devices import x64 as _x64_mode  # (run's own x64 argument is the compute precision)
from .distributions import Dist, key_words, sample_log, uniform
from .errors import InputError
from .files import remove_stale_temps, to_bytes, write_atomic
from .laws import DataConstrained, Parametric, TokensPerParam, data_constrained_constants, loss
from .scenario import Scenario

QUANTITIES = ("params", "tokens", "loss", "tokens_per_param", "flops", "epochs")
LOG_QUANTITIES = {"params", "tokens", "tokens_per_param", "flops", "epochs"}
PILOT = 4096
REGRET_BINS = 256
REGRET_RANGE = (math.log(1e-7), math.log(10.0))  # nats; below -> "zero" bin
REGRET_STRIDE = 8  # p95 regret from the samples with global index = 0 mod 8
LOSS_BITS = 24  # fixed-point resolution of summed losses and regrets
WIN = 0.01  # "regret below 1 %" of the sample's optimal loss
# stream ids of the counter-based generator
_S_LAW, _S_FLOPS, _S_COUNT, _S_HOURS, _S_MFU, _S_U, _S_NMAX, _S_DMAX, _S_EPOCHS, _S_DINF = 0, 10, 11, 12, 13, 14, 15, 16, 17, 18


# ----------------------------------------------------------------------------------------------
# Sampling


def _law_sampler(sc: Scenario, dtype) -> Callable:
    """(key, idx_lo, idx_hi) -> law pytree with leaves of shape (S,)."""
    p = sc.law.params
    if isinstance(p, TokensPerParam):
        return lambda key, lo, hi: TokensPerParam(jnp.full(lo.shape, p.ratio, dtype))
    mean = np.array([float(v) for v in p], np.float64) if isinstance(p, Parametric) else None
    if sc.uncertainty == "covariance":
        chol = np.linalg.cholesky(sc.law.covariance)

        def draw(key, lo, hi):
            z = [jax.scipy.special.ndtri(uniform(key, lo, hi, _S_LAW + j, dtype)) for j in range(5)]
            # theta = mean + L z written as the 15 multiply-adds of the lower triangle: as a
            # 5x5 dot, XLA CPU recomputed the draw inside every consumer (measured 14x slower)
            theta = [sum((float(chol[i, k]) * z[k] for k in range(1, i + 1)), float(chol[i, 0]) * z[0]) + float(mean[i])
                     for i in range(5)]
            return Parametric(*[t.astype(dtype) for t in theta])
    elif sc.uncertainty == "bootstrap":
        draws = jnp.asarray(sc.law.draws, dtype)

        def draw(key, lo, hi):
            u = uniform(key, lo, hi, _S_LAW, jnp.float32)
            i = jnp.minimum((u * draws.shape[0]).astype(jnp.int32), draws.shape[0] - 1)
            return Parametric(*draws[i].T)
    else:
        leaves = [float(v) for v in p]

        def draw(key, lo, hi):
            return type(p)(*[jnp.full(lo.shape, v, dtype) for v in leaves])
    if sc.unique_tokens is None:
        return draw
    rd, rn, _ = data_constrained_constants()
    return lambda key, lo, hi: DataConstrained(draw(key, lo, hi), jnp.full(lo.shape, rd, dtype), jnp.full(lo.shape, rn, dtype))


def _field(d: Dist | None, key, lo, hi, stream, dtype, default: float, domain=(-math.inf, math.inf)):
    if d is None:
        return jnp.full(lo.shape, default, dtype)
    u = uniform(key, lo, hi, stream, dtype) if not d.fixed else jnp.full(lo.shape, 0.5, dtype)
    return sample_log(d, u, *domain)


def make_sampler(sc: Scenario, dtype) -> Callable:
    """(idx_lo, idx_hi) uint32 arrays -> (law, Budget) for those global sample indices."""
    key = key_words(sc.seed)
    law_draw = _law_sampler(sc, dtype)

    def sample(lo, hi):
        law = law_draw(key, lo, hi)
        if sc.flops is not None:
            log_c = _field(sc.flops, key, lo, hi, _S_FLOPS, dtype, 0.0)
        else:
            peak = math.log(sc.accelerator.peak_flops(sc.dtype)) + math.log(3600.0)
            log_c = (_field(sc.count, key, lo, hi, _S_COUNT, dtype, 0.0) + _field(sc.hours, key, lo, hi, _S_HOURS, dtype, 0.0)
                     + _field(sc.mfu, key, lo, hi, _S_MFU, dtype, 0.0, (-math.inf, 0.0)) + peak)
        log_u = _field(sc.unique_tokens, key, lo, hi, _S_U, dtype, math.inf)
        log_n_max = _field(sc.max_params, key, lo, hi, _S_NMAX, dtype, math.inf)
        log_d_max = _field(sc.max_tokens, key, lo, hi, _S_DMAX, dtype, math.inf)
        if sc.max_epochs is not None:
            log_d_max = jnp.minimum(log_d_max, _field(sc.max_epochs, key, lo, hi, _S_EPOCHS, dtype, 0.0) + log_u)
        log_d_inf = _field(sc.inference_tokens, key, lo, hi, _S_DINF, dtype, -math.inf)
        return law, Budget(log_c, log_u, log_n_max, log_d_max, log_d_inf)

    return sample


def _index_words(start_lo, start_hi, j):
    """Global indices start + j as (lo, hi) uint32 words: a 64-bit counter with carry."""
    lo = start_lo + j
    return lo, start_hi + (lo < start_lo).astype(jnp.uint32)


def _indices(start: int, size: int):
    """Global sample indices start..start+size-1 as (lo, hi) uint32 words."""
    return _index_words(jnp.uint32(start & 0xFFFFFFFF), jnp.uint32(start >> 32), jnp.arange(size, dtype=jnp.uint32))


# ----------------------------------------------------------------------------------------------
# Per-sample solve and candidate evaluation (pure; vmapped inside the chunk kernel)


def _method(sc: Scenario) -> str:
    p = sc.law.params
    law = DataConstrained(p, 0.0, 0.0) if sc.unique_tokens is not None else p
    return method_for(law, sc.inference_tokens is not None)


def _solve(sc: Scenario, law, b: Budget):
    fn = closed_form_scalar if _method(sc) == "closed" else solve_scalar
    law, b = _broadcast(law, b)
    return jax.vmap(fn)(law, b)


def _quantities(a, b: Budget, epochs: bool = True):
    """[Q, S] values in summary units (QUANTITIES order; epochs only with unique tokens), and
    which are defined."""
    rows = [a.log_n, a.log_d, a.loss, a.log_d - a.log_n, b.log_c] + ([a.log_d - b.log_u] if epochs else [])
    vals = jnp.stack(rows)
    return vals, jnp.isfinite(vals)


def _usable(ok, converged):
    """Which [Q, S] values enter the summaries: outputs of a converged solve; the budget (an
    input, row 4) always, so its distribution is reported even where no model fits it."""
    rows = jnp.arange(ok.shape[0])[:, None]
    return ok & (converged[None, :] | (rows == QUANTITIES.index("flops")))


def _names(sc: Scenario) -> tuple[str, ...]:
    return QUANTITIES if sc.unique_tokens is not None else QUANTITIES[:5]


def _candidate_losses(law, b: Budget, xs):
    """Loss of committing to N = exp(xs[k]) for every sample: [K, S]. Tokens follow each
    sample's realised compute, within its caps; a size above a sample's cap is capped."""
    lo, hi = interval(b)

    def one(x):
        x = jnp.clip(x, lo, jnp.maximum(lo, hi))
        log_d = jnp.minimum(log_tokens(b, x), b.log_d_max)
        return loss(law, x, log_d, b.log_u)

    return jax.vmap(one)(xs)


# ----------------------------------------------------------------------------------------------
# Pilot


@dataclass
class Plan:
    """Everything fixed before the main pass (identical for every chunking, shard and host)."""

    ranges: S.Ranges
    candidates: np.ndarray  # log N, grid then refined
    refine: dict
    pilot_size: int


def _expand(vmin: float, vmax: float) -> tuple[float, float]:
    span = vmax - vmin
    if not span > 0:
        span = max(abs(vmin) * 1e-6, 1e-6)
    return vmin - 0.5 * span, vmax + 0.5 * span


def make_plan(sc: Scenario, n: int, dtype) -> Plan:
    sampler = make_sampler(sc, dtype)
    p = min(PILOT, n)

    @jax.jit
    def pilot():
        lo, hi = _indices(0, p)
        law, b = sampler(lo, hi)
        a = _solve(sc, law, b)
        vals, ok = _quantities(a, b, sc.unique_tokens is not None)
        return vals, _usable(ok, a.converged)

    vals, ok = (np.asarray(v, np.float64) for v in pilot())
    ok = ok.astype(bool)  # (already masked to converged samples in the pilot kernel)
    lo, hi, centre = [], [], []
    for q in range(len(_names(sc))):
        v = vals[q][ok[q]]
        a_, b_ = (_expand(float(v.min()), float(v.max())) if v.size else (0.0, 1.0))
        lo.append(a_)
        hi.append(b_)
        centre.append(float(np.median(v)) if v.size else 0.0)
    ranges = S.Ranges(*(jnp.asarray(np.array(x), dtype) for x in (lo, hi, centre)))
    refine: dict = {}
    if not sc.has_loss or sc.candidates == 0:
        return Plan(ranges, np.zeros(0), refine, p)
    xn = vals[0][ok[0]]
    if xn.size == 0:
        return Plan(ranges, np.zeros(0), {"note": "no pilot sample converged: no candidate grid"}, p)
    g_lo, g_hi = np.quantile(xn, 0.005) - math.log(2), np.quantile(xn, 0.995) + math.log(2)
    grid = np.linspace(g_lo, g_hi, sc.candidates)
    refined, refine = _refine(sc, sampler, p, grid, dtype)
    return Plan(ranges, np.append(grid, refined), refine, p)


def _refine(sc: Scenario, sampler, p: int, grid: np.ndarray, dtype, steps: int = 40):
    """Refine the best grid candidate by L-BFGS (optax) on the pilot's sample-average loss
    over x = log N. Returns (x, report)."""
    from .fit import lbfgs_minimize

    lo_i, hi_i = _indices(0, p)
    law, b = sampler(lo_i, hi_i)
    # the pilot is small: refine in float64 whatever the sweep's precision (optax's L-BFGS
    # state is float64 under x64, and the refined N must not inherit float32 noise)
    law, b = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), _broadcast(law, b))
    opt_loss = _solve(sc, law, b).loss

    def mean_loss(x):
        return jnp.mean(_candidate_losses(law, b, x))

    @jax.jit
    def run(grid):
        grid_losses = jax.vmap(lambda x: mean_loss(x[None]))(grid)
        x0 = grid[jnp.argmin(grid_losses)][None]
        x, v_end, g_end, _ = lbfgs_minimize(x0, mean_loss, steps, 1e-12)
        return x0[0], jnp.min(grid_losses), x[0], v_end, g_end, jnp.mean(opt_loss)

    with jax.numpy_dtype_promotion("standard"):  # optax's L-BFGS mixes int32/int64 internally
        x0, v0, x, v, g, v_opt = (float(t) for t in run(jnp.asarray(grid, jnp.float64)))
    if not (math.isfinite(x) and v <= v0):
        x, v = x0, v0  # never worse than the best grid point
    converged = abs(g) * (grid[1] - grid[0]) < 1e-6 * abs(v) + 1e-9 if len(grid) > 1 else True
    return x, {"method": "optax.lbfgs on the pilot's mean loss", "steps": steps, "pilot_samples": p,
               "start_params": math.exp(x0), "start_expected_loss": v0, "params": math.exp(x),
               "expected_loss": v, "grad": g, "converged": bool(converged), "pilot_optimal_loss": v_opt}


# ----------------------------------------------------------------------------------------------
# Chunk kernel


def make_chunk_fn(sc: Scenario, plan: Plan, chunk: int, dtype, sharding=None):
    """The one jitted kernel: (start_lo, start_hi, valid) -> integer accumulators of a chunk."""
    sampler = make_sampler(sc, dtype)
    cands = jnp.asarray(plan.candidates, dtype)
    kc = len(plan.candidates)
    reg_lo, reg_hi = REGRET_RANGE

    @jax.jit
    def run(start_lo, start_hi, valid, ranges):
        j = jnp.arange(chunk, dtype=jnp.uint32)
        if sharding is not None:
            j = jax.lax.with_sharding_constraint(j, sharding)
        lo, hi = _index_words(start_lo, start_hi, j)
        law, b = sampler(lo, hi)
        live = j < valid
        a = _solve(sc, law, b)
        vals, ok = _quantities(a, b, sc.unique_tokens is not None)
        out = {"q": S.accumulate(vals, _usable(ok, a.converged) & live[None, :], ranges)._asdict(),
               "samples": jnp.sum(live).astype(jnp.int64),
               "converged": jnp.sum(live & a.converged).astype(jnp.int64)}
        if kc:
            law_b, b_b = _broadcast(law, b)
            opt = a.loss
            nb = REGRET_BINS + 2
            # p95 regret from a fixed 1-in-8 subsample (global index = 0 mod 8), gathered by a
            # strided slice: scattering every sample into K histograms costs more than the solve
            off = (-start_lo) % REGRET_STRIDE
            sub = lambda v: jnp.take(v.reshape(chunk // REGRET_STRIDE, REGRET_STRIDE), off, axis=1)  # noqa: E731
            # regret is defined against a sample's optimum: only where that solve converged
            use = live & a.converged & jnp.isfinite(opt)
            opt_sub, use_sub = sub(opt), sub(use)

            def one(_, x):
                # A scan step per candidate: XLA cannot fuse the sampler across the loop
                # boundary, so it is not recomputed K times (measured 60x slower when fused).
                lk = _candidate_losses(law_b, b_b, x[None])[0]
                regret = jnp.maximum(lk - opt, 0.0)
                m = use & jnp.isfinite(lk)
                r_sub = jnp.maximum(sub(lk) - opt_sub, 0.0)
                m_sub = use_sub & jnp.isfinite(r_sub)
                t = (jnp.log(jnp.maximum(r_sub, 1e-30)) - reg_lo) / (reg_hi - reg_lo) * REGRET_BINS
                idx = jnp.where(m_sub, jnp.clip(jnp.floor(t).astype(jnp.int32) + 1, 0, REGRET_BINS + 1), nb)
                return None, {"loss_sum": S.fixed_point_sum(lk, LOSS_BITS, m, axis=0),
                              "regret_sum": S.fixed_point_sum(regret, LOSS_BITS, m, axis=0),
                              "win": jnp.sum(m & (regret < WIN * opt)).astype(jnp.int64),
                              "count": jnp.sum(m).astype(jnp.int64),
                              "regret_hist": S.count_bins(idx, nb + 1)[:-1]}

            _, out["cand"] = jax.lax.scan(one, None, cands)
            out["opt_loss_sum"] = S.fixed_point_sum(a.loss, LOSS_BITS, use, axis=0)
        return out

    return run


# ----------------------------------------------------------------------------------------------
# Driver


def _fetch(tree) -> dict:
    def one(x):
        if not getattr(x, "is_fully_addressable", True):
            x = x.addressable_data(0)
        return np.asarray(x)

    return jax.tree_util.tree_map(one, tree)


def merge_states(a: dict, b: dict) -> dict:
    """Exact merge of two sweep states (counts and fixed-point sums add, min/max combine)."""
    out = {}
    for k in a:
        if isinstance(a[k], dict) and set(a[k]) == {"hi", "lo"}:
            out[k] = S.wide_add(a[k], b[k])
        elif isinstance(a[k], dict):
            out[k] = merge_states(a[k], b[k])
        elif k == "vmin":
            out[k] = np.minimum(a[k], b[k])
        elif k == "vmax":
            out[k] = np.maximum(a[k], b[k])
        else:
            out[k] = np.asarray(a[k]) + np.asarray(b[k])
    return out


def fingerprint(sc: Scenario, n: int, x64: bool) -> str:
    """What must match for a checkpoint to resume or shards to merge."""
    blob = json.dumps({"scenario": sc.raw, "source": sc.source if sc.source.startswith("example:") else "",
                       "samples": n, "seed": sc.seed, "x64": x64, "candidates": sc.candidates}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _flatten(state: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """A nested state as {"a/b": array}: the checkpoint's npz keys."""
    flat = {}
    for k, v in state.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, prefix + k + "/"))
        else:
            flat[prefix + k] = np.asarray(v)
    return flat


def _save_checkpoint(path: Path, state: dict, meta: dict) -> None:
    meta_bytes = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    write_atomic(path, to_bytes(np.savez, __meta__=meta_bytes, **_flatten(state)), field="--checkpoint")


def _load_checkpoint(path: Path, template: dict) -> tuple[dict, dict]:
    """The state and meta saved by ``_save_checkpoint``. The state must have exactly the
    keys, shapes and dtypes of ``template`` (an empty chunk's state); anything else, a file
    that is not an npz included, is an InputError on --checkpoint, never a silent merge."""
    bad = f"{path} is not a checkpoint of this sweep (damaged, or written by another version)"
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["__meta__"]).decode())
            flat = {k: np.asarray(z[k]) for k in z.files if k != "__meta__"}
    except Exception:  # zipfile, npy-format, JSON and key errors all mean the same to the user
        raise InputError("--checkpoint", bad) from None
    want = _flatten(template)
    if (not isinstance(meta, dict) or set(flat) != set(want)
            or any(flat[k].shape != want[k].shape or flat[k].dtype != want[k].dtype for k in want)):
        raise InputError("--checkpoint", bad)
    state: dict = {}
    for k, v in flat.items():
        d = state
        parts = k.split("/")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    return state, meta


def _empty_state(fn, plan) -> dict:
    """The summary of no samples: the identity of ``merge_states``."""
    return _fetch(fn(jnp.uint32(0), jnp.uint32(0), jnp.uint32(0), plan.ranges))


def parse_shard(text: str | None) -> tuple[int, int]:
    if text is None:
        return 0, 1
    try:
        i, n = (int(t) for t in text.split("/"))
    except ValueError:
        raise InputError("--shard", f"expected i/n such as 0/3, got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise InputError("--shard", f"need 0 <= i < n, got {text!r}")
    return i, n


def run(sc: Scenario, *, samples: int | None = None, chunk_size: int = 65536, x64: bool = False,
        checkpoint: str | Path | None = None, resume: bool = False, shard: tuple[int, int] = (0, 1),
        progress: Callable[[int, int], None] | None = None) -> dict:
    """Run a sweep and return its result (summary + state). See the module docstring.
    Runs in JAX's 64-bit mode (int64 accumulators; the compute dtype stays explicit) and
    restores the caller's setting."""
    with _x64_mode():
        return _run(sc, samples, chunk_size, x64, checkpoint, resume, shard, progress)


def _run(sc, samples, chunk_size, x64, checkpoint, resume, shard, progress) -> dict:
    n = samples if samples is not None else sc.samples
    if not 1 <= n <= 10**13:
        raise InputError("--samples", f"must be from 1 to 1e13, got {n}")
    if not 1 <= chunk_size <= 2**S.MAX_CHUNK_BITS:
        raise InputError("--chunk-size", f"must be from 1 to {2**S.MAX_CHUNK_BITS} samples, got {chunk_size}")
    if resume and not checkpoint:
        raise InputError("--resume", "needs --checkpoint PATH")
    n_dev = jax.device_count()
    unit = math.lcm(n_dev, REGRET_STRIDE)
    chunk = max(unit, -(-chunk_size // unit) * unit)  # a multiple of devices and the stride
    if chunk > 2**S.MAX_CHUNK_BITS:  # keep the in-chunk int64 sums from overflowing
        chunk -= unit
    i_shard, n_shards = shard
    begin, end = n * i_shard // n_shards, n * (i_shard + 1) // n_shards
    fp = fingerprint(sc, n, x64)
    t0 = time.perf_counter()
    plan, fn = _compiled(sc, n, x64, chunk, fp)
    ckpt = Path(checkpoint) if checkpoint else None
    state, pos = None, begin
    if resume:
        remove_stale_temps(ckpt)  # a SIGKILL between write and rename leaves one
        if ckpt.exists():
            state, meta = _load_checkpoint(ckpt, _empty_state(fn, plan))
            if meta.get("fingerprint") != fp or meta.get("shard", [0, 1]) != [i_shard, n_shards]:
                raise InputError("--resume", f"{ckpt} belongs to a different sweep (scenario, samples, seed, precision or shard differ)")
            pos = meta.get("next")
            if isinstance(pos, bool) or not isinstance(pos, int) or not begin <= pos <= end:
                raise InputError("--checkpoint", f"{ckpt} is damaged: its position {pos!r} is outside this shard")
    while pos < end:
        valid = min(chunk, end - pos)
        out = _fetch(fn(jnp.uint32(pos & 0xFFFFFFFF), jnp.uint32(pos >> 32), jnp.uint32(valid), plan.ranges))
        state = out if state is None else merge_states(state, out)
        pos += valid
        if ckpt is not None:
            _save_checkpoint(ckpt, state, {"fingerprint": fp, "next": pos, "shard": [i_shard, n_shards]})
        if progress is not None:
            progress(pos - begin, end - begin)
    if state is None:  # an empty shard
        state = _empty_state(fn, plan)
    result = summarise(sc, plan, state, fp)
    result["run"] = {"seed": sc.seed, "samples_requested": n, "chunk_size": chunk, "devices": n_dev,
                     "processes": jax.process_count(), "backend": jax.default_backend(), "jax_version": jax.__version__,
                     "x64": x64, "shard": f"{i_shard}/{n_shards}", "elapsed_s": time.perf_counter() - t0}
    return result


_CACHE: dict = {}


def _compiled(sc: Scenario, n: int, x64: bool, chunk: int, fp: str):
    """The plan and the jitted chunk kernel, kept per (sweep, chunk, devices) so that repeated
    runs in one process (benchmarks, resumes) compile once."""
    key = (fp, chunk, jax.device_count())
    if key not in _CACHE:
        dtype = jnp.float64 if x64 else jnp.float32
        plan = make_plan(sc, n, dtype)
        sharding = batch_sharding() if jax.device_count() > 1 else None
        _CACHE.clear()  # one sweep at a time: compiled kernels hold device memory
        _CACHE[key] = (plan, make_chunk_fn(sc, plan, chunk, dtype, sharding))
    return _CACHE[key]


def _state_to_json(state: dict) -> dict:
    return {k: (_state_to_json(v) if isinstance(v, dict) else np.asarray(v).tolist()) for k, v in state.items()}


def state_from_json(d: dict) -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out[k] = state_from_json(v)
        else:
            arr = np.asarray(v)
            out[k] = arr.astype(np.float64) if k in ("vmin", "vmax") else arr.astype(np.int64)
    return out


def summarise(sc: Scenario, plan: Plan, state: dict, fp: str) -> dict:
    """The user-facing summary from a (merged) state: pure, so shards merge to the same JSON."""
    q = state["q"]
    lo, hi, centre = (np.asarray(v, np.float64) for v in plan.ranges)
    quant, stats = {}, {}
    names = QUANTITIES[:len(q["count"])]
    for k, name in enumerate(names):
        if q["count"][k] == 0:
            continue
        vals = {p: S.quantile_from_hist(q["hist"][k], lo[k], hi[k], f, q["vmin"][k], q["vmax"][k])
                for p, f in S.QUANTILES.items()}
        mean, std = S.moments(int(q["count"][k]), float(S.wide_value(q["sum"])[k]), float(S.wide_value(q["sumsq"])[k]),
                              centre[k])
        lg = name in LOG_QUANTITIES
        conv = (lambda v: math.exp(v)) if lg else (lambda v: v)
        quant[name] = {p: conv(v) for p, v in vals.items()}
        stats[name] = {"min": conv(float(q["vmin"][k])), "max": conv(float(q["vmax"][k])),
                       ("geomean" if lg else "mean"): conv(mean), ("log_sd" if lg else "sd"): std,
                       "outside_histogram": int(q["hist"][k][0] + q["hist"][k][-1])}
    n = int(state["samples"])
    result = {"scenario": sc.name, "law": sc.law.name, "uncertainty": sc.uncertainty, "samples": n,
              "converged_fraction": int(state["converged"]) / n if n else float("nan"),
              "quantiles": quant, "stats": stats, "fingerprint": fp}
    if plan.refine.get("note"):
        result["recommendation"] = None
        result["recommendation_note"] = plan.refine["note"]
    elif "cand" in state and n and int(np.min(state["cand"]["count"])) == 0:
        result["recommendation"] = None
        result["recommendation_note"] = "no sample converged to a usable optimum: nothing to recommend"
    elif "cand" in state and n:
        c = state["cand"]
        cnt = c["count"]
        exp_loss = S.wide_value(c["loss_sum"]) / 2.0**LOSS_BITS / cnt
        exp_reg = S.wide_value(c["regret_sum"]) / 2.0**LOSS_BITS / cnt
        win = c["win"] / cnt
        edges = np.linspace(*REGRET_RANGE, REGRET_BINS + 1)
        p95 = []
        for h in c["regret_hist"]:
            tot = h.sum()
            if tot == 0:
                p95.append(float("nan"))
                continue
            cum = np.cumsum(h)
            b = int(np.searchsorted(cum, 0.95 * tot, side="left"))
            # bin b (1..REGRET_BINS) ends at edges[b]; 0 is "no regret", REGRET_BINS + 1 overflow
            p95.append(0.0 if b == 0 else math.exp(edges[b]) if b <= REGRET_BINS else float("inf"))
        p95 = np.array(p95)
        order = np.argsort(plan.candidates)
        curve = [{"params": math.exp(plan.candidates[k]), "expected_loss": float(exp_loss[k]),
                  "expected_regret": float(exp_reg[k]), "p95_regret": float(p95[k]),
                  "p_regret_below_1pct": float(win[k]), "refined": bool(k == len(plan.candidates) - 1)} for k in order]
        risk = exp_loss if sc.risk == "mean" else p95
        best = int(np.nanargmin(risk))
        result["recommendation"] = {
            "params": math.exp(plan.candidates[best]), "expected_loss": float(exp_loss[best]),
            "expected_regret": float(exp_reg[best]), "p95_regret": float(p95[best]),
            "p_regret_below_1pct": float(win[best]), "risk": sc.risk,
            "from": "optax refinement" if best == len(plan.candidates) - 1 else "grid",
            "expected_optimal_loss": float(S.wide_value(state["opt_loss_sum"]) / 2.0**LOSS_BITS / int(state["converged"])),
            "p95_regret_note": f"upper edge of the 1-in-{REGRET_STRIDE} subsample's bin (±{100 * (math.exp((REGRET_RANGE[1] - REGRET_RANGE[0]) / REGRET_BINS) - 1):.0f} %)"}
        result["refinement"] = plan.refine
        result["regret_curve"] = curve
    result["plan"] = {"ranges": {names[k]: [float(lo[k]), float(hi[k])] for k in range(len(names))},
                      "centre": centre.tolist(), "candidates": plan.candidates.tolist(), "pilot_size": plan.pilot_size}
    result["state"] = _state_to_json(state)
    return result


def merge_results(results: list[dict], names: list[str] | None = None) -> dict:
    """Merge sweep outputs of the shards of one sweep (``--shard i/n``) exactly. ``names``
    label the results in errors (file names). A result that is not a sweep output, or was
    edited so its state no longer matches the others, is an InputError on FILES."""
    if not results:
        raise InputError("FILES", "nothing to merge")
    names = names or [f"result {i}" for i in range(len(results))]
    try:
        return _merge_results(results, names)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as e:
        if isinstance(e, InputError):
            raise
        raise InputError("FILES", f"a file is not an intact sweep JSON output ({type(e).__name__}: {e})") from None


def _merge_results(results: list[dict], names: list[str]) -> dict:
    for r, name in zip(results, names):
        if not isinstance(r, dict) or not isinstance(r.get("state"), dict) or not isinstance(r.get("run"), dict):
            raise InputError("FILES", f"{name} is not a sweep JSON output (no 'state'); write one with "
                             "`budgetopt sweep ... -f json -o FILE`")
    fps = {r.get("fingerprint") for r in results}
    if len(fps) != 1:
        raise InputError("FILES", "the files come from different sweeps (fingerprints differ)")
    shards = sorted(str(r["run"]["shard"]) for r in results)
    n_sh = int(shards[0].split("/")[1])
    if shards != sorted(f"{i}/{n_sh}" for i in range(n_sh)):
        raise InputError("FILES", f"need each shard 0/{n_sh} .. {n_sh - 1}/{n_sh} exactly once, got {', '.join(shards)}")
    states = [state_from_json(r["state"]) for r in results]
    want = _flatten(states[0])
    for st, name in zip(states, names):
        flat = _flatten(st)
        if set(flat) != set(want) or any(flat[k].shape != want[k].shape for k in want):
            raise InputError("FILES", f"{name}: its state does not match the other shards' (edited or damaged)")
        if any((v < 0).any() for k, v in flat.items() if k.endswith(("count", "hist", "win", "converged", "samples", "/lo"))):
            raise InputError("FILES", f"{name}: negative counts in its state (edited or damaged)")
    state = states[0]
    for st in states[1:]:
        state = merge_states(state, st)
    r0 = results[0]
    names_q = [q for q in QUANTITIES if q in r0["plan"]["ranges"]]
    plan = Plan(S.Ranges(*(np.array(v, np.float64) for v in (
        [r0["plan"]["ranges"][q][0] for q in names_q], [r0["plan"]["ranges"][q][1] for q in names_q],
        r0["plan"]["centre"]))), np.array(r0["plan"]["candidates"]), r0.get("refinement", {}), r0["plan"]["pilot_size"])
    sc_view = _ScView(r0)
    out = summarise(sc_view, plan, state, r0["fingerprint"])
    out["run"] = dict(r0["run"], shard=f"merged {n_sh}", elapsed_s=sum(r["run"]["elapsed_s"] for r in results))
    return out


class _ScView:
    """The few scenario fields ``summarise`` reads, recovered from a result file."""

    def __init__(self, r: dict):
        self.name, self.uncertainty = r["scenario"], r["uncertainty"]
        self.law = type("L", (), {"name": r["law"]})()
        self.risk = r.get("recommendation", {}).get("risk", "mean")
