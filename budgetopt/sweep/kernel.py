"""The chunk kernel: a fixed-shape batch of global sample indices in, each device's own
accumulators out. One compile per sweep; the tail chunk is masked, not reshaped.

Why it cannot deadlock. The sample axis is split over the local devices with ``shard_map``:
every device computes its block of indices from its own position (``axis_index``), samples,
solves and summarises them, and returns its accumulators with a leading device axis
(``out_specs=P("dev")``). Nothing in the program combines values across devices — no psum, no
all-gather, no sharding constraint left for GSPMD to resolve — so XLA emits no collective and
no device ever waits for another (tests/test_sweep_engine.py checks the compiled program for
collectives). The host merges the devices' accumulators exactly, as it merges chunks, shards
and processes. Collectives had made 2-device CPU sweeps abort (XLA's in-process rendezvous
starved on a 2-core thread pool once the executable came from the persistent compile cache).

Two programs per chunk: ``draw`` (sample and solve) and ``accumulate`` (summaries and the
candidates). In one program XLA CPU fuses the sampler into every reduction that reads it and
recomputes it there (measured 10x slower); a program boundary materialises the draw once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Bool, Float, Int

from ..model.allocation import (
    Allocation,
    Budget,
    absent,
    closed_form_scalar,
    log_tokens,
    map_problems,
    method_for,
    solve_scalar,
)
from ..model.laws import Law, loss
from .accumulators import Count, Ranges, accumulate, count_bins, fixed_point_sum
from .choices import (
    Problems,
    at_option,
    best_option,
    choose,
    chosen_values,
    option_axis,
    option_problems,
)
from .sampling import Draw, complete_draw, fixed_law, index_words, make_sampler
from .scenario import Scenario
from .state import REGRET_BINS, CandidateStats, SweepState

#: every quantity a sweep can summarise, in their order in the state; ``quantity_names`` says
#: which a scenario's sweep has. gpu_hours and wall_days are the budget's (count x hours, hours /
#: 24): the [plan] scales them by the shape's FLOPs per token into the run's time and energy.
QUANTITIES = ("params", "tokens", "loss", "tokens_per_param", "flops", "epochs", "gpu_hours", "wall_days", "experts",
              "precision_bits")
LOG_QUANTITIES = frozenset(QUANTITIES) - {"loss"}
REGRET_RANGE = (math.log(1e-7), math.log(10.0))  # nats; below -> the first bin, above -> overflow
LOSS_BITS = 24  # fixed-point resolution of summed losses and regrets
WIN = 0.01  # "regret below 1 %" of the sample's optimal loss


def time_varies(scenario: Scenario) -> bool:
    """Whether the sweep summarises the budget's device-hours and wall-clock: with a [plan] (which
    reports them as the run's) on hardware whose count or hours are uncertain."""
    return (scenario.plan is not None and scenario.flops is None
            and not (scenario.count.fixed and scenario.hours.fixed))


def quantity_names(scenario: Scenario) -> tuple[str, ...]:
    """The quantities a scenario's sweep summarises, in QUANTITIES order: epochs only with unique
    tokens, gpu_hours and wall_days only when ``time_varies``."""
    skip = {"epochs"} if scenario.unique_tokens is None else set()
    axis = option_axis(scenario)
    skip |= {"experts", "precision_bits"} - ({axis.quantity} if axis is not None else set())
    if not time_varies(scenario):
        skip |= {"gpu_hours", "wall_days"}
    return tuple(q for q in QUANTITIES if q not in skip)


def solve_method(scenario: Scenario) -> str:
    """"closed" or "solve": how each sample's optimum is found."""
    return method_for(fixed_law(scenario), scenario.inference_tokens is not None)


def solve_samples(scenario: Scenario, law: Law, b: Budget, option_draw=None) -> Allocation:
    """Each sample's optimal allocation. Leaves that are Python constants (a fixed law, absent
    budget fields) are shared by all samples rather than broadcast. A sweep with a discrete
    decision ([moe], [precision]): at each sample's best option (``solve_options``,
    ``best_option``); ``option_draw`` is the draw's ``option``."""
    if option_axis(scenario) is not None:
        return best_option(solve_options(scenario, option_problems(scenario, law, b, option_draw)))[0]
    if solve_method(scenario) == "closed":
        return closed_form_scalar(law, b)  # elementwise: no vmap needed
    axes = jax.tree_util.tree_map(lambda v: 0 if jnp.ndim(v) else None, (law, b))
    return jax.vmap(solve_scalar, in_axes=axes)(law, b)


def solve_options(scenario: Scenario, p: Problems) -> Allocation:
    """Every sample's optimum at every option (``choices.Problems``): leaves [options, S], the
    loss times the option's loss scale. Each option's law is of the dense form, so each is the
    dense solve (a loss scale does not move the optimum)."""
    if solve_method(scenario) == "closed":
        a = closed_form_scalar(p.law, p.budget)
    else:
        a = map_problems(solve_scalar, p.law, p.budget)
    return a if isinstance(p.loss_scale, float) and p.loss_scale == 1.0 else a._replace(loss=a.loss * p.loss_scale)


INPUTS = frozenset({"flops", "gpu_hours", "wall_days"})  # the budget's: summarised whether or not a model fits it


def quantities(a: Allocation | Sampled, b: Budget, names: tuple[str, ...], time=None, chosen=None
               ) -> tuple[Float[Array, "q s"], Bool[Array, "q s"]]:
    """[Q, S] values of ``names`` in summary units and which enter the summaries: the outputs
    of a converged solve, and the budget's (inputs) always, so their distribution is reported
    even where no model fits them. ``time``: the draw's (log count, log hours) when ``names``
    has gpu_hours or wall_days; ``chosen``: a sweep with a discrete decision's (log value of
    each sample's best option, log compute that option trains on)."""
    log_c = b.log_c if chosen is None else chosen[1]
    row = {"experts": lambda: chosen[0], "precision_bits": lambda: chosen[0], "params": lambda: a.log_n,
           "tokens": lambda: a.log_d, "loss": lambda: a.loss,
           "tokens_per_param": lambda: a.log_d - a.log_n, "flops": lambda: log_c, "epochs": lambda: a.log_d - b.log_u,
           "gpu_hours": lambda: time[0] + time[1], "wall_days": lambda: time[1] - math.log(24.0)}
    vals = jnp.stack([jnp.broadcast_to(row[q](), a.log_n.shape) for q in names])
    is_input = jnp.array([q in INPUTS for q in names])[:, None]
    return vals, jnp.isfinite(vals) & (a.converged[None, :] | is_input)


def candidate_loss(law: Law, b: Budget, x: Float[Array, ""]) -> tuple[Float[Array, " s"], Bool[Array, " s"]]:
    """(loss, trainable) of committing to N = exp(x) in every sample. The size is trained on the
    tokens its sample affords: D = (C - 2 N D_inf) / 6N, at most the sample's token cap (compute
    then left unused). It cannot be trained where it is above the sample's max_params, below one
    parameter, or left less than one token (serving eats the budget): there it scores the loss
    of that size trained on one token — a stated penalty, a regret of order the law's B (or
    D_c^alpha_D) nats, far beyond any trainable size — and ``trainable`` is False. The size is
    never moved into the sample's feasible interval: the decision is scored on what the size it
    names really reaches."""
    log_d = log_tokens(b, x)
    if not absent(b.log_d_max, math.inf):
        log_d = jnp.minimum(log_d, b.log_d_max)
    ok = jnp.isfinite(log_d) & (log_d >= 0.0) & (x >= 0.0)
    if not absent(b.log_n_max, math.inf):
        ok = ok & (x <= b.log_n_max)
    return loss(law, x, jnp.where(ok, log_d, 0.0), b.log_u), ok


def regret_bin(r: Float[Array, " s"]) -> Int[Array, " s"]:
    """Regret histogram index: 0 below REGRET_RANGE (including zero), 1..REGRET_BINS inside,
    REGRET_BINS + 1 above."""
    lo, hi = REGRET_RANGE
    t = (jnp.log(jnp.maximum(r, 1e-30)) - lo) / (hi - lo) * REGRET_BINS
    return jnp.clip(jnp.floor(t).astype(jnp.int32) + 1, 0, REGRET_BINS + 1)


def decision_subsample(tree, stride: int, offset: Array):
    """Every leaf with a per-sample axis (its last, e.g. [S] or an option's [K, S]) at positions
    offset, offset + stride, ... (the block's samples with global index = 0 mod stride); shared
    leaves (scalars, a last axis of 1: the options' stacked constants) unchanged."""
    def take(v):
        if jnp.ndim(v) == 0 or stride == 1 or jnp.shape(v)[-1] == 1:
            return v
        return jnp.take(v.reshape(*jnp.shape(v)[:-1], -1, stride), offset, axis=-1)

    return jax.tree_util.tree_map(take, tree)


def candidate_stats(law: Law | None, b: Budget | None, opt: Array, use: Array, xs: Array,
                    problems: Problems | None = None) -> CandidateStats:
    """Every candidate log-size in ``xs`` scored against every sample where ``use`` (the caller
    passes the decision subsample's samples whose optimum converged): its regret L(N_k) - L*
    (``candidate_loss``: a size the sample cannot train scores its stated penalty, and is
    counted in ``untrainable``). No sample is dropped for a candidate it cannot train. With a
    discrete decision (``problems``: every option's, ``choices``) the candidates are rows (log N,
    option index), each scored on its option's problem (law and budget ignored)."""
    use = use & jnp.isfinite(opt)
    n_bins = REGRET_BINS + 2

    def one(_, x):
        # A scan step per candidate: the loop boundary keeps XLA from fusing (and recomputing)
        # the per-sample inputs into K consumers.
        if problems is not None:
            p = at_option(problems, x[1].astype(jnp.int32))
            lk, trainable = candidate_loss(p.law, p.budget, x[0])
            lk = lk * p.loss_scale
        else:
            lk, trainable = candidate_loss(law, b, x)
        r = jnp.maximum(lk - opt, 0.0)
        ok = use & jnp.isfinite(r)
        # a non-finite regret (not expected: the penalty is finite) lands in the overflow bin, in sight
        idx = jnp.where(use, jnp.where(ok, regret_bin(r), REGRET_BINS + 1), n_bins)
        return None, (fixed_point_sum(r, LOSS_BITS, ok, axis=0), Count(jnp.sum(ok & (r < WIN * opt)).astype(jnp.int64)),
                      Count(count_bins(idx, n_bins + 1).n[:-1]), Count(jnp.sum(use & ~trainable).astype(jnp.int64)))

    _, (regret_sum, win, hist, untrainable) = jax.lax.scan(one, None, xs)
    return CandidateStats(regret_sum, win, hist, Count(jnp.sum(use).astype(jnp.int64)),
                          fixed_point_sum(opt, LOSS_BITS, use, axis=0), untrainable)


class Sampled(NamedTuple):
    """What ``draw`` hands to ``accumulate``: the inputs and each sample's optimum."""

    draw: Draw
    log_n: Array
    log_d: Array
    loss: Array
    converged: Array
    chosen: tuple[Array, Array] | None = None  # with a discrete decision: (index, log compute) of the best option


class Kernel(NamedTuple):
    """The two jitted programs of a chunk and their layout. Call ``run(start, valid, ranges,
    candidates)`` for the chunk's stacked per-device state."""

    draw: Callable
    accumulate: Callable
    chunk: int
    devices: tuple

    def run(self, start: int, valid: int, ranges: Ranges, candidates) -> SweepState:
        lo, hi = np.uint32(start & 0xFFFFFFFF), np.uint32(start >> 32)
        return self.accumulate(self.draw(lo, hi), lo, np.uint32(valid), ranges, candidates)


def make_kernel(scenario: Scenario, chunk: int, dtype, devices) -> Kernel:
    """The chunk kernel over ``devices`` (this process's): ``chunk`` must be a multiple of
    len(devices) x the scenario's decision subsample stride."""
    n_dev = len(devices)
    per = chunk // n_dev
    stride = scenario.subsample
    if per * n_dev != chunk or per % stride:
        raise ValueError(f"chunk {chunk} does not split into {n_dev} blocks of a multiple of {stride}")
    sampler = make_sampler(scenario, dtype)
    names = quantity_names(scenario)
    axis = option_axis(scenario)
    mesh = Mesh(np.array(devices), ("dev",))

    def positions(start_lo, start_hi):
        j = jax.lax.axis_index("dev").astype(jnp.uint32) * jnp.uint32(per) + jnp.arange(per, dtype=jnp.uint32)
        return j, index_words(start_lo, start_hi, j)

    def draw_block(start_lo, start_hi) -> Sampled:
        _, (lo, hi) = positions(start_lo, start_hi)
        d = sampler(lo, hi)
        if not time_varies(scenario):
            d = d._replace(time=None)  # not summarised: not materialised between the programs
        law, b = complete_draw(scenario, d)
        if axis is None:
            a = solve_samples(scenario, law, b)
            return Sampled(d, a.log_n, a.log_d, a.loss, a.converged)
        p = option_problems(scenario, law, b, d.option)
        a, chosen = choose(axis, solve_options(scenario, p), p)
        return Sampled(d, a.log_n, a.log_d, a.loss, a.converged, chosen)

    def accumulate_block(s: Sampled, start_lo, valid, ranges, xs) -> SweepState:
        j, _ = positions(start_lo, jnp.uint32(0))
        live = j < valid
        law, b = complete_draw(scenario, s.draw)
        chosen = None if axis is None else chosen_values(axis, s.chosen, s.loss.dtype)
        vals, ok = quantities(s, b, names, s.draw.time, chosen)
        counts = None
        if axis is not None:  # per option, the live converged samples whose best it is
            n_opt = len(axis.labels)
            counts = Count(count_bins(jnp.where(live & s.converged, s.chosen[0], n_opt), n_opt + 1).n[:-1])
        state = SweepState(Count(jnp.sum(live).astype(jnp.int64)), Count(jnp.sum(live & s.converged).astype(jnp.int64)),
                           accumulate(vals, ok & live[None, :], ranges), None, counts)
        if xs.shape[0]:
            # this block starts at global index start + j[0]; its subsample is index = 0 mod stride
            offset = ((jnp.uint32(stride) - (start_lo + j[0]) % stride) % stride).astype(jnp.int32)
            if axis is None:
                law_s, b_s, opt_s, use_s = decision_subsample((law, b, s.loss, live & s.converged), stride, offset)
                stats = candidate_stats(law_s, b_s, opt_s, use_s, xs)
            else:  # every option's problem, its leaves [options | 1, S | 1], built on the subsample only
                law_s, b_s, option_s, opt_s, use_s = decision_subsample(
                    (law, b, s.draw.option, s.loss, live & s.converged), stride, offset)
                stats = candidate_stats(None, None, opt_s, use_s, xs, option_problems(scenario, law_s, b_s, option_s))
            state = state._replace(candidates=stats)
        return jax.tree_util.tree_map(lambda v: v[None], state)  # this device's slot

    # check_vma off: it types values for collectives, and there are none (the solver's
    # while-loop mixes per-sample and shared leaves, which it would otherwise reject)
    draw = jax.jit(jax.shard_map(draw_block, mesh=mesh, in_specs=(P(), P()), out_specs=P("dev"), check_vma=False))
    acc = jax.jit(jax.shard_map(accumulate_block, mesh=mesh, in_specs=(P("dev"), P(), P(), P(), P()),
                                out_specs=P("dev"), check_vma=False))
    return Kernel(draw, acc, chunk, tuple(devices))
