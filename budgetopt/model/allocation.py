"""Compute-optimal allocation: closed form, a vmapped 1-D solver under constraints, and duals.

The problem: minimise L(N, D) subject to 6 N D + 2 N D_inf = C (D_inf = lifetime inference
tokens, 0 by default), N <= N_max, D <= D_max, with unique data U entering the law.
The equality is eliminated by optimising x = log N with log D = log((C - 2 D_inf N) / 6N):
gradients in x are well scaled (in raw N they are ~1e-13) and bounds become an interval on x.

Why a safeguarded Newton/bisection and not optax L-BFGS here: along the constraint every law we
ship is unimodal in x (convex for the parametric, Kaplan and inference-aware forms; the
data-constrained form is C1 and unimodal), so a bracket on the sign of dL/dx is a certificate
that cannot be lost, and Newton steps inside it converge quadratically. Measured on CPU
(benchmarks/bench_solver.py) it needs ~6 iterations per problem in float64 where L-BFGS needs
20-40 with line-search evaluations, and it never leaves the feasible interval, so no projection
or penalty is needed. optax is used where the problem is many-dimensional (the fitter) or an
expectation over samples (the sweep's robust refinement).

All entry points are jitted once at the top; everything below is pure and vmappable.
Units: C in FLOPs, N parameters, D tokens, loss in nats/token; arrays hold natural logs.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float, Int

from ..core.units import INFER_FLOPS_PER_PARAM_TOKEN
from .laws import (
    LOG6,
    DataConstrained,
    Law,
    Parametric,
    TokensPerParam,
    closed_form_coefficients,
    has_loss,
    loss,
)

LOG2 = math.log(INFER_FLOPS_PER_PARAM_TOKEN)  # each inference token costs 2N FLOPs
MAX_ITER = 100  # bisection alone shrinks a bracket of width 64 below 1e-13 in 50 steps


class Budget(NamedTuple):
    """A (batch of) allocation problem(s); every leaf broadcasts against the others.

    log_c: log FLOPs; the training budget, or the lifetime budget when inference tokens are given.
    log_u: log unique tokens (+inf: unlimited). Only the data-constrained law reads it.
    log_n_max, log_d_max: caps on parameters and training tokens (+inf: none).
    log_d_inf: log lifetime inference tokens (-inf: none); they cost 2 N FLOPs each.
    """

    log_c: Float[ArrayLike, "*b"]
    log_u: Float[ArrayLike, "*b"] = math.inf
    log_n_max: Float[ArrayLike, "*b"] = math.inf
    log_d_max: Float[ArrayLike, "*b"] = math.inf
    log_d_inf: Float[ArrayLike, "*b"] = -math.inf


class Allocation(NamedTuple):
    """Result per problem. ``log_c_used`` <= log_c when caps leave compute unusable.
    ``converged`` is True only when the solve met its tolerance (closed forms: always);
    ``grad`` is |dL/dlog N| at the answer, projected on the feasible interval."""

    log_n: Float[Array, "*b"]
    log_d: Float[Array, "*b"]
    loss: Float[Array, "*b"]
    log_c_used: Float[Array, "*b"]
    converged: Bool[Array, "*b"]
    grad: Float[Array, "*b"]
    iterations: Int[Array, "*b"]


# ----------------------------------------------------------------------------------------------
# Geometry of the constraint


def absent(v, default: float) -> bool:
    """Whether a Budget field is the Python constant of "not given" (known at trace time, so
    the term it would enter is left out of the program rather than computed as a zero)."""
    return isinstance(v, (int, float)) and v == default


def log_tokens(b: Budget, x: Array) -> Array:
    """log D on the constraint 6 N D + 2 N D_inf = C, for x = log N."""
    if absent(b.log_d_inf, -math.inf):  # no serving: the correction below is log1p(0) = 0
        return b.log_c - x - LOG6
    # log((C e^-x - 2 D_inf) / 6) = log C - x - log 6 + log1p(-2 D_inf e^x / C)
    frac = jnp.exp(jnp.minimum(x + LOG2 + b.log_d_inf - b.log_c, 0.0))
    return b.log_c - x - LOG6 + jnp.log1p(-frac)


def log_lifetime_flops(log_n: Array, log_d: Array, log_d_inf: ArrayLike) -> Array:
    """log(6 N D + 2 N D_inf)."""
    return log_n + jnp.logaddexp(LOG6 + log_d, LOG2 + log_d_inf)


def interval(b: Budget) -> tuple[Array, Array]:
    """Feasible [lo, hi] on x = log N: N >= 1, N <= N_max, D >= 1 token, D <= D_max.
    lo > hi means the caps make the whole budget unusable."""
    # The same values with absent fields left out (logaddexp(a, -inf) = a exactly).
    no_serving = absent(b.log_d_inf, -math.inf)
    if absent(b.log_d_max, math.inf):
        lo = jnp.zeros_like(b.log_c)
    elif no_serving:
        lo = jnp.maximum(0.0, b.log_c - (LOG6 + b.log_d_max))
    else:
        lo = jnp.maximum(0.0, b.log_c - jnp.logaddexp(LOG6 + b.log_d_max, LOG2 + b.log_d_inf))
    hi = b.log_c - (LOG6 if no_serving else jnp.logaddexp(LOG6, LOG2 + b.log_d_inf))
    if not absent(b.log_n_max, math.inf):
        hi = jnp.minimum(b.log_n_max, hi)
    return lo, hi


def _finish(law: Law, b: Budget, x: Array, converged: Array, grad: Array, iters: Array) -> Allocation:
    """Fill an Allocation at x, handling the case where caps bind both N and D."""
    lo, hi = interval(b)
    capped = lo > hi
    x = jnp.where(capped, jnp.minimum(b.log_n_max, hi), x)
    log_d = jnp.where(capped, jnp.minimum(b.log_d_max, log_tokens(b, x)), log_tokens(b, x))
    value = loss(law, x, log_d, b.log_u) if has_loss(law) else jnp.full_like(x, jnp.nan)
    # hi < 0: not even one parameter fits (N_max < 1, or serving D_inf tokens costs the budget)
    return Allocation(x, log_d, value, log_lifetime_flops(x, log_d, b.log_d_inf),
                      converged & (hi >= 0) & jnp.isfinite(x) & jnp.isfinite(log_d), grad, iters)


def broadcast_problems(law: Law, b: Budget) -> tuple[Law, Budget]:
    """(law, budget) with every leaf broadcast to one common shape and float dtype: a batch of
    independent problems, as the solvers take them."""
    return _broadcast((law, b))


def _broadcast(trees: tuple) -> tuple:
    """Every leaf of ``trees`` broadcast to one common shape and float dtype."""
    leaves = jax.tree_util.tree_leaves(trees)
    # Python scalars (the defaults +-inf) are weakly typed: they adopt the arrays' precision
    dtype = jnp.result_type(*leaves)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.result_type(float)
    shape = jnp.broadcast_shapes(*[jnp.shape(v) for v in leaves])
    return jax.tree_util.tree_map(lambda v: jnp.broadcast_to(jnp.asarray(v, dtype), shape), trees)


def map_problems(fn, *trees):
    """``fn`` (one problem's solve) over the broadcast batch of ``trees``' leaves: one vmapped
    call over the flattened batch, its outputs in the batch's shape. The one batching of the
    allocation solvers (the dense laws' here, the fine-grained MoE law's in ``moe``)."""
    trees = _broadcast(trees)
    shape = jnp.shape(jax.tree_util.tree_leaves(trees)[0])
    flat = jax.tree_util.tree_map(lambda v: v.reshape(-1), trees)
    # One vmapped while-loop over the whole batch. Chunking it (lax.map, batch 1k-16k) was
    # measured slower on CPU: most chunks hold one slow problem anyway (benchmarks/NOTES.md).
    out = jax.vmap(fn)(*flat)
    return jax.tree_util.tree_map(lambda v: v.reshape(shape), out)


# ----------------------------------------------------------------------------------------------
# Closed forms


def closed_form_x(law: Parametric, log_c: Array) -> Array:
    """x = log N_opt = log G + a log(C/6) for the parametric law under C = 6ND."""
    log_g, a, _ = closed_form_coefficients(law)
    return log_g + a * (log_c - LOG6)


def optimal_loss_closed_form(law: Parametric, log_c: Array) -> Array:
    """L*(C) = E + K (C/6)^(-alpha beta/(alpha+beta)), K = A G^-alpha + B G^beta."""
    log_g, _, _ = closed_form_coefficients(law)
    log_k = jnp.logaddexp(law.log_A - law.alpha * log_g, law.log_B + law.beta * log_g)
    gamma = law.alpha * law.beta / (law.alpha + law.beta)
    return jnp.exp(law.log_E) + jnp.exp(log_k - gamma * (log_c - LOG6))


def log_compute_for_loss_closed_form(law: Parametric, target: Array) -> Array:
    """Inverse of ``optimal_loss_closed_form``: log C such that L*(C) = target (target > E)."""
    log_g, _, _ = closed_form_coefficients(law)
    log_k = jnp.logaddexp(law.log_A - law.alpha * log_g, law.log_B + law.beta * log_g)
    gamma = law.alpha * law.beta / (law.alpha + law.beta)
    return LOG6 - (jnp.log(target - jnp.exp(law.log_E)) - log_k) / gamma


def rule_x(law: TokensPerParam, b: Budget) -> Array:
    """x for D = k N on the constraint: 6k N^2 + 2 D_inf N = C (positive root, stable form)."""
    log_k = jnp.log(law.ratio)
    # N = 2C / (2 D_inf + sqrt(4 D_inf^2 + 24 k C)); in logs, never forming C itself
    log_disc = 0.5 * jnp.logaddexp(2 * (LOG2 + b.log_d_inf), math.log(24.0) + log_k + b.log_c)
    return LOG2 + b.log_c - jnp.logaddexp(LOG2 + b.log_d_inf, log_disc)


# ----------------------------------------------------------------------------------------------
# The 1-D solver


class _SolverState(NamedTuple):
    lo: Array  # bracket: dL/dx < 0 at lo ...
    hi: Array  # ... and > 0 at hi
    x: Array  # current iterate, with g = dL/dx and h = d2L/dx2 there
    g: Array
    h: Array
    g_old: Array  # |g| before the last Newton step (inf after a bisection)
    x_prev: Array  # previous iterate and its curvature, for the exponential model step
    h_prev: Array
    it: Array
    done: Array
    probed: Array  # the last step was a tolerance-sized probe


def _objective(law: Law, b: Budget):
    return lambda x: loss(law, x, log_tokens(b, x), b.log_u)


def _initial_guess(law: Law, b: Budget, lo: Array, hi: Array) -> Array:
    """The base law's closed form on the budget when there is one (usually within a few % of
    the answer), else the middle of the bracket."""
    base = law.base if isinstance(law, DataConstrained) else law
    if isinstance(base, Parametric):
        x0 = closed_form_x(base, b.log_c)
    else:
        x0 = 0.5 * (lo + hi)
    return jnp.clip(x0, lo, hi)


def solve_scalar(law: Law, b: Budget, max_iter: int = MAX_ITER) -> Allocation:
    """Minimise the loss over x in the feasible interval for ONE problem (vmap for batches).

    Safeguarded Newton on dL/dx: the bracket [lo, hi] always holds a sign change of the
    derivative; a Newton step is taken when it stays inside the bracket and |dL/dx| at least
    halves, otherwise bisection. Converged when the bracket is below 2.5 xtol,
    xtol = max(1e-12, 8 eps |x|) (so relative accuracy in N), when |dL/dx| reaches the float
    noise floor 16 eps, when Newton visibly converges quadratically to within xtol, or when the
    optimum is at a bound with the derivative pointing outward (a KKT point). Cost: one
    gradient+curvature evaluation per iteration, plus one at the start and one gradient at the
    bound the start points to."""
    f = _objective(law, b)

    def df(x):
        # forward mode: for a scalar -> scalar function it skips reverse mode's backward pass
        return jax.jvp(f, (x,), (jnp.ones_like(x),))[1]

    def grad_and_curv(x):
        # One materialised (g, h): without the barrier XLA may recompute g inside several
        # fusions with different FMA contraction, and near the optimum (|g| ~ 1e-17) the copies
        # can disagree in sign, so the bracket update and the probe direction contradict.
        return jax.lax.optimization_barrier(jax.jvp(df, (x,), (jnp.ones_like(x),)))

    lo, hi = interval(b)
    feasible = lo <= hi
    hi = jnp.where(feasible, hi, lo)
    eps = jnp.finfo(lo.dtype).eps
    xtol = lambda x: jnp.maximum(1e-12, 8 * eps * jnp.abs(x))  # noqa: E731

    def bracket(x, g, lo, hi):
        return jnp.where(g < 0, jnp.maximum(x, lo), lo), jnp.where(g > 0, jnp.minimum(x, hi), hi)

    def stop(g, lo, hi, x):
        # The bracket is the certificate: a tiny Newton step alone proves nothing near a
        # singular bound (D -> 1 token, where the curvature explodes). |g| at the float noise
        # floor (losses are O(1) nats) also ends the solve: any sign drawn from it is noise.
        return (jnp.abs(g) <= 16 * eps) | (hi - lo <= 2.5 * xtol(x))

    def cond(s: _SolverState):
        return ~s.done & (s.it < max_iter)

    def body(s: _SolverState):
        tol = xtol(s.x)
        # Model step: fit g(x) = A e^(k x) + C through the last two curvatures (k from their
        # ratio) and jump to its root. Near the optimum and for k -> 0 it is Newton's step; in
        # the heavily-repeated data regime dL/dx is exponential-like and plain Newton only
        # gains a factor ~3 per step.
        dx = s.x - s.x_prev
        k = jnp.log(s.h / s.h_prev) / jnp.where(dx == 0, 1.0, dx)
        arg = -s.g * k / s.h
        model = jnp.log1p(arg) / k
        ok = (dx != 0) & (s.h_prev > 0) & (s.h > 0) & (jnp.abs(k * dx) > 1e-3) & (arg > -0.99) & jnp.isfinite(model)
        newton_step = jnp.where(ok, model, -s.g / s.h)
        # Newton while it stays inside the bracket and at least halves |g| per step; else
        # bisect. (rtsafe's "halve the step" rule stalls when the root sits at a bracket edge.)
        inside = (s.x + newton_step > s.lo) & (s.x + newton_step < s.hi)
        use_newton = (s.h > 0) & inside & (jnp.abs(s.g) <= 0.5 * s.g_old) & ~s.probed
        tiny_newton = (s.h > 0) & (jnp.abs(newton_step) < tol) & ~s.probed
        newton = use_newton | tiny_newton
        step = jnp.where(newton, newton_step, 0.5 * (s.lo + s.hi) - s.x)
        # Steps below tolerance become probes of size tol towards the minimum (as in Brent's
        # zeroin): the next gradient either closes the bracket or, failing that, forces a
        # bisection step (``probed``), so progress never stalls at tolerance-sized creeps.
        probe = jnp.abs(step) < tol
        step = jnp.where(probe, jnp.where(s.g < 0, tol, -tol), step)
        x = jnp.clip(s.x + step, s.lo, s.hi)
        g, h = grad_and_curv(x)
        lo, hi = bracket(x, g, s.lo, s.hi)
        # Observed quadratic convergence — this Newton step cut |g| at least 100-fold and the
        # next one is below tolerance — is accepted without a probe (saves the last iteration;
        # near a singular bound |g| stays huge, so this cannot fire there).
        next_step = -g / h
        quadratic = (newton & ~probe & (h > 0) & (jnp.abs(g) <= 0.01 * jnp.abs(s.g))
                     & (jnp.abs(next_step) < tol) & (x + next_step >= lo) & (x + next_step <= hi))
        done = stop(g, lo, hi, x) | quadratic
        x = jnp.where(quadratic, x + next_step, x)
        g_old = jnp.where(newton, jnp.abs(s.g), jnp.inf)  # memory spans consecutive Newton steps
        return _SolverState(lo, hi, x, g, h, g_old, s.x, s.h, s.it + 1, done, probe & ~done)

    x0 = _initial_guess(law, b, lo, hi)
    g0, h0 = grad_and_curv(x0)
    # Only the bound the derivative at x0 points to can hold the optimum: test that one.
    xb = jnp.where(g0 >= 0, lo, hi)
    gb = df(xb)
    at_lo = (g0 >= 0) & (gb >= 0)  # loss increases from the lower bound on
    at_hi = (g0 < 0) & (gb <= 0)  # loss decreases all the way to the upper bound
    lo0, hi0 = bracket(x0, g0, lo, hi)
    start = _SolverState(lo0, hi0, x0, g0, h0, jnp.full_like(lo, jnp.inf), x0, h0, jnp.zeros((), jnp.int32),
                         at_lo | at_hi | ~feasible | stop(g0, lo0, hi0, x0), jnp.zeros_like(at_lo))
    end = jax.lax.while_loop(cond, body, start)
    at_bound = at_lo | at_hi
    x = jnp.where(at_lo, lo, jnp.where(at_hi, hi, end.x))
    # projected gradient: zero when the derivative pushes against the active bound
    pg = jnp.where(at_bound, 0.0, jnp.abs(end.g))
    return _finish(law, b, x, end.done, pg, end.it)


def closed_form_scalar(law: Law, b: Budget) -> Allocation:
    """Closed-form allocation for the parametric law (no inference tokens) or an allocation
    rule, clipped to the feasible interval — exact, because the objective is convex in x."""
    lo, hi = interval(b)
    if isinstance(law, TokensPerParam):
        x = rule_x(law, b)
    else:
        x = closed_form_x(law, b.log_c)
    x = jnp.clip(x, lo, jnp.maximum(lo, hi))
    zero = jnp.zeros_like(x)
    return _finish(law, b, x, jnp.ones_like(x, bool), zero, zero.astype(jnp.int32))


def method_for(law: Law, has_inference: bool = False) -> str:
    """"closed" when the closed form answers this law exactly (an allocation rule, or the
    parametric law without inference tokens), else "solve"."""
    exact = isinstance(law, TokensPerParam) or (isinstance(law, Parametric) and not has_inference)
    return "closed" if exact else "solve"


def _allocate(law: Law, b: Budget, method: str, max_iter: int) -> Allocation:
    if method == "closed":
        if not (isinstance(law, TokensPerParam) or isinstance(law, Parametric)):
            raise ValueError(f"no closed form for {type(law).__name__}")
        fn = closed_form_scalar
    else:
        if isinstance(law, TokensPerParam):
            raise ValueError("an allocation rule has no loss surface to solve")
        fn = partial(solve_scalar, max_iter=max_iter)
    return map_problems(fn, law, b)


@partial(jax.jit, static_argnames=("method", "max_iter"))
def allocate(law: Law, budget: Budget, method: str = "solve", max_iter: int = MAX_ITER) -> Allocation:
    """Optimal (N, D) for every problem in the broadcast batch of ``law`` x ``budget``.

    method: "solve" (numerical, any law with a loss surface), "closed" (parametric law without
    inference tokens, or an allocation rule). One compile per (law type, shapes, method)."""
    return _allocate(law, budget, method, max_iter)


# ----------------------------------------------------------------------------------------------
# Duals: compute needed to reach a target loss


class ComputeForLoss(NamedTuple):
    """log_c: smallest log budget whose optimal loss is <= target; ``reachable`` False when even
    the largest budget searched (1e60 FLOPs) cannot reach it (then log_c = +inf)."""

    log_c: Float[Array, "*b"]
    allocation: Allocation
    reachable: Bool[Array, "*b"]
    converged: Bool[Array, "*b"]


LOG_C_SEARCH = (math.log(6.0), math.log(1e60))


def compute_for_loss_scalar(law: Law, target: Array, b: Budget, method: str, max_iter: int,
                            outer_iter: int = 200) -> ComputeForLoss:
    """Bisection on log C of the monotone map C -> optimal loss, the primal solved inside.
    Works for every law and constraint (including inference tokens, where C is lifetime
    FLOPs: this is 'minimise lifetime compute to reach a target loss')."""
    inner = closed_form_scalar if method == "closed" else partial(solve_scalar, max_iter=max_iter)

    def best(log_c):
        return inner(law, b._replace(log_c=log_c))

    lo0 = jnp.full_like(target, LOG_C_SEARCH[0])
    hi0 = jnp.full_like(target, LOG_C_SEARCH[1])
    reachable = best(hi0).loss <= target
    eps = jnp.finfo(lo0.dtype).eps

    def cond(s):
        lo, hi, it = s
        return (hi - lo > jnp.maximum(1e-13, 4 * eps * hi)) & (it < outer_iter)

    def body(s):
        lo, hi, it = s
        mid = 0.5 * (lo + hi)
        ok = best(mid).loss <= target
        return jnp.where(ok, lo, mid), jnp.where(ok, mid, hi), it + 1

    lo, hi, it = jax.lax.while_loop(cond, body, (lo0, hi0, jnp.zeros((), jnp.int32)))
    alloc = best(hi)
    log_c = jnp.where(reachable, hi, jnp.inf)
    return ComputeForLoss(log_c, alloc, reachable, (it < outer_iter) & alloc.converged)


def _compute_for_loss(law: Law, target: Array, b: Budget, method: str, max_iter: int) -> ComputeForLoss:
    target = jnp.asarray(target, float)
    fn = partial(compute_for_loss_scalar, method=method, max_iter=max_iter)
    return map_problems(fn, law, target, b._replace(log_c=jnp.zeros_like(target)))


@partial(jax.jit, static_argnames=("method", "max_iter"))
def compute_for_loss(law: Law, target: ArrayLike, budget: Budget, method: str = "solve",
                     max_iter: int = MAX_ITER) -> ComputeForLoss:
    """Smallest compute (lifetime compute with inference tokens) whose optimal allocation
    reaches ``target`` loss, under ``budget``'s caps and unique data (its log_c is ignored)."""
    return _compute_for_loss(law, target, budget, method, max_iter)


@jax.jit
def optimal_loss(law: Parametric, log_c: ArrayLike) -> Array:
    """Jitted L*(C) of the parametric law (closed form)."""
    return optimal_loss_closed_form(law, jnp.asarray(log_c))


@jax.jit
def log_compute_for_loss(law: Parametric, target: ArrayLike) -> Array:
    """Jitted closed-form dual of the parametric law: log C with L*(C) = target."""
    return log_compute_for_loss_closed_form(law, jnp.asarray(target))
