"""Mixture-of-experts laws (DESIGN §14): two published forms whose variables differ, never mixed.

- ``JointMoE`` — Ludziejewski et al. 2025 (arXiv 2502.05172, eq. 1/6, Table 3):
  L(N_act, D, E) = a Ê^δ N_act^(α + γ ln Ê) + b Ê^ω D^(β + ζ ln Ê) + c, with
  1/Ê = 1/(E − 1 + (1/E_start − 1/E_max)^−1) + 1/E_max; top-1 routing, granularity 1, E = 1 the
  dense model. **N_act = active parameters including embeddings**; compute 6·N_act·D (routing
  neglected, as in the paper). At a fixed E the law *is* a Chinchilla-form law in (N_act, D)
  (``joint_at``), so its allocation is the package's tested solver, vmapped over expert counts.
  Total parameters (eq. 9/10): N_total = 2dV + (4 + 9E)·n·d², N_act = 2dV + 13·n·d²; without a
  shape, ``joint_total_params`` applies (4 + 9E)/13 to all of N_act — it counts the embeddings as
  if routed, so it over-states N_total slightly (conservative under a memory cap).
- ``FineGrainedMoE`` — Krajewski et al. 2024 (arXiv 2402.07871, eq. 9-11, Table 1):
  L(N, D, G) = c + (g/G^γ + a)·N^−α + b·D^−β at expansion rate E = 64, **N = total non-embedding
  parameters**, G = d_ff/d_expert. FLOPs per token (eq. 10-11): (c_f·12·d² + c_r·E·G·d)·n_blocks
  with c_f = 6, c_r = 14 (the router) and the paper's shape rule d = 64·n_blocks; N = (8E + 4)·d²·n
  and the active non-embedding part 12·d²·n. Serving a token costs a third of training's FLOPs per
  token (one forward pass: c_f = 6 = 2 forward + 4 backward).

Units: N parameters, D tokens, C FLOPs, loss in nats/token; arrays hold natural logs.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Bool, Float

from .allocation import Allocation, Budget, allocate, map_problems
from .laws import FineGrainedMoE, JointMoE, Parametric

#: bisection steps of the fine-grained solve: a bracket of width 200 (in log N) shrinks below
#: 1e-13 in 51 steps; 80 leaves a margin at float64 and is exact at float32
BISECT_STEPS = 80


# ----------------------------------------------------------------------------------------------
# The joint law (Ludziejewski et al. 2025)


def log_effective_experts(experts: ArrayLike, e_start: ArrayLike, e_max: ArrayLike) -> Array:
    """ln Ê of eq. 6 (Clark et al. 2022's saturating transform): 1/Ê = 1/(E − 1 + (1/E_start −
    1/E_max)^−1) + 1/E_max (Ê = E_start at E = 1, Ê -> E_max as E grows)."""
    shift = 1.0 / (1.0 / e_start - 1.0 / e_max)
    return -jnp.log(1.0 / (experts - 1.0 + shift) + 1.0 / e_max)


def joint_at(law: JointMoE, experts: ArrayLike) -> Parametric:
    """The joint law at a fixed expert count as the Chinchilla form in (N_act, D):
    A = a Ê^δ, alpha = −(α + γ ln Ê), B = b Ê^ω, beta = −(β + ζ ln Ê), E = c."""
    le = log_effective_experts(experts, law.e_start, law.e_max)
    return Parametric(log_A=law.log_a + law.delta * le, log_B=law.log_b + law.omega * le,
                      log_E=jnp.log(law.c) + 0.0 * le, alpha=-(law.alpha + law.gamma * le),
                      beta=-(law.beta + law.zeta * le))


def joint_loss(law: JointMoE, log_n_act: Array, log_d: Array, experts: ArrayLike) -> Array:
    """Eq. 1 written as printed: a Ê^δ N^(α + γ ln Ê) + b Ê^ω D^(β + ζ ln Ê) + c."""
    le = log_effective_experts(experts, law.e_start, law.e_max)
    return (jnp.exp(law.log_a + law.delta * le + (law.alpha + law.gamma * le) * log_n_act)
            + jnp.exp(law.log_b + law.omega * le + (law.beta + law.zeta * le) * log_d) + law.c)


def joint_total_params(params_active: ArrayLike, experts: ArrayLike) -> Array:
    """N_total from N_act at E experts, eq. 9/10 without a shape: N_act (4 + 9E) / 13."""
    return jnp.asarray(params_active) * (4.0 + 9.0 * jnp.asarray(experts)) / 13.0


def allocate_joint(law: JointMoE, log_c: ArrayLike, log_total_max: ArrayLike, experts: ArrayLike,
                   log_d_inf: ArrayLike = -math.inf) -> Allocation:
    """The joint optimum for every problem of the broadcast batch of budgets, total-parameter
    caps (+inf: none) and expert counts, with D_inf inference tokens (-inf: none): the law at
    each E as a Chinchilla law in (N_act, D), its cap N_act <= M·13/(4 + 9E), solved by the
    package's Newton-bisection in one vmapped call."""
    experts = jnp.asarray(experts)
    log_n_max = jnp.asarray(log_total_max) + jnp.log(13.0 / (4.0 + 9.0 * experts))
    return allocate(joint_at(law, experts), Budget(jnp.asarray(log_c), log_n_max=log_n_max, log_d_inf=log_d_inf),
                    method="solve")


# ----------------------------------------------------------------------------------------------
# The fine-grained law (Krajewski et al. 2024)


def fine_grained_loss(law: FineGrainedMoE, log_n: Array, log_d: Array, granularity: ArrayLike) -> Array:
    """Eq. 9: c + (g / G^γ + a) N^−α + b D^−β, N total non-embedding parameters."""
    return (law.c + (law.g * jnp.asarray(granularity) ** -law.gamma + law.a) * jnp.exp(-law.alpha * log_n)
            + law.b * jnp.exp(-law.beta * log_d))


def fine_grained_log_flops_per_token(law: FineGrainedMoE, log_n: Array, granularity: ArrayLike) -> Array:
    """log of training FLOPs per token, eq. 10-11 with d = 64·n_blocks: N = (8E + 4) d³ / 64, so
    (c_f·12·d² + c_r·E·G·d)·n_blocks = c_f·12·N/(8E + 4) + c_r·E·G·d²/64."""
    width = 8.0 * law.expansion + 4.0
    log_d_model = (math.log(64.0) - jnp.log(width) + log_n) / 3.0
    return jnp.logaddexp(jnp.log(12.0 * law.c_f / width) + log_n,
                         jnp.log(law.c_r * law.expansion * jnp.asarray(granularity) / 64.0) + 2.0 * log_d_model)


def fine_grained_active_params(law: FineGrainedMoE, params_total: ArrayLike) -> Array:
    """Active non-embedding parameters of total ``params_total``: 12 N / (8E + 4)."""
    return 12.0 * jnp.asarray(params_total) / (8.0 * law.expansion + 4.0)


class FineGrainedAllocation(NamedTuple):
    """The optimum of one (budget, granularity) problem: logs of N (total non-embedding) and D,
    the loss, whether the bisection closed its bracket on a sign change (or a monotone bound),
    and whether any model is feasible at all."""

    log_n: Float[Array, "*b"]
    log_d: Float[Array, "*b"]
    loss: Float[Array, "*b"]
    converged: Bool[Array, "*b"]
    feasible: Bool[Array, "*b"]


def _fine_grained_log_tokens(law: FineGrainedMoE, x: Array, log_c: Array, log_d_inf: Array,
                             granularity: Array) -> Array:
    """log D on k(N) (D + D_inf / 3) = C: D = C / k − D_inf / 3."""
    log_k = fine_grained_log_flops_per_token(law, x, granularity)
    frac = jnp.exp(jnp.minimum(log_d_inf - math.log(3.0) + log_k - log_c, 0.0))
    return log_c - log_k + jnp.log1p(-frac)


def _bisect(sign_fn, lo: Array, hi: Array) -> tuple[Array, Array]:
    """The last point where ``sign_fn`` is False, by bisection on [lo, hi] (monotone False->True)."""
    def step(_, bracket):
        a, b = bracket
        mid = 0.5 * (a + b)
        up = sign_fn(mid)
        return jnp.where(up, a, mid), jnp.where(up, mid, b)

    return jax.lax.fori_loop(0, BISECT_STEPS, step, (lo, hi))


def fine_grained_scalar(law: FineGrainedMoE, log_c: Array, log_n_max: Array, log_d_inf: Array,
                        granularity: Array) -> FineGrainedAllocation:
    """Minimise eq. 9 along the compute constraint for one problem: x = log N on [0, x_hi], x_hi
    the largest N that still trains one token (and at most the memory cap); the loss is unimodal
    in x (tested against a brute-force grid), so bisection on the sign of dL/dx finds its
    minimum, and a derivative of one sign puts it on that bound."""
    need = jnp.log1p(jnp.exp(log_d_inf) / 3.0)  # D >= 1: k(N) (1 + D_inf / 3) <= C
    top = jnp.full_like(log_c, 200.0)
    x_cap, _ = _bisect(lambda x: fine_grained_log_flops_per_token(law, x, granularity) + need > log_c,
                       jnp.zeros_like(log_c), top)
    x_hi = jnp.minimum(jnp.minimum(x_cap, top), log_n_max)
    feasible = (fine_grained_log_flops_per_token(law, jnp.zeros_like(log_c), granularity) + need <= log_c) & (
        log_n_max >= 0.0)

    def along(x):
        return fine_grained_loss(law, x, _fine_grained_log_tokens(law, x, log_c, log_d_inf, granularity), granularity)

    slope = jax.grad(along)
    a, b = _bisect(lambda x: slope(x) > 0.0, jnp.zeros_like(log_c), x_hi)
    x = 0.5 * (a + b)
    log_d = _fine_grained_log_tokens(law, x, log_c, log_d_inf, granularity)
    value = along(x)
    # the bracket closed to the float's resolution (float32: ~1e-6 relative; float64: 1e-9)
    tol = max(1e-9, 8.0 * float(jnp.finfo(x.dtype).eps))
    converged = feasible & (b - a <= tol * jnp.maximum(1.0, jnp.abs(x))) & jnp.isfinite(value)
    return FineGrainedAllocation(x, log_d, value, converged, feasible)


@jax.jit
def allocate_fine_grained(law: FineGrainedMoE, log_c: ArrayLike, log_n_max: ArrayLike, log_d_inf: ArrayLike,
                          granularity: ArrayLike) -> FineGrainedAllocation:
    """The fine-grained optimum for every problem of the broadcast batch of budgets, caps,
    inference tokens and granularities (log_n_max = +inf: no cap; log_d_inf = -inf: no
    serving). One vmapped program: every candidate granularity of every budget at once."""
    return map_problems(fine_grained_scalar, law, log_c, log_n_max, log_d_inf, granularity)
