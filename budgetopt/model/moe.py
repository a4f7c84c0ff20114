"""Mixture-of-experts laws (DESIGN §14): two published forms whose variables differ, never mixed.

- ``JointMoE`` — Ludziejewski et al. 2025 (arXiv 2502.05172, eq. 1/6, Table 3):
  L(N_act, D, E) = a Ê^δ N_act^(α + γ ln Ê) + b Ê^ω D^(β + ζ ln Ê) + c, with
  1/Ê = 1/(E − 1 + (1/E_start − 1/E_max)^−1) + 1/E_max; top-1 routing, granularity 1, E = 1 the
  dense model. **N_act = active parameters including embeddings**; compute 6·N_act·D (routing
  neglected, as in the paper). At a fixed E the law *is* a Chinchilla-form law in (N_act, D)
  (``joint_at``), so its allocation is the package's tested solver, vmapped over expert counts.
  Total parameters (eq. 9/10): N_total = 2dV + (4 + 9E)·n·d², N_act = 2dV + 13·n·d², on the
  paper's shape rule d = 64·n (Appendix A.3) and its vocabulary V = 50,257 (A.1; ``JointShape``,
  data/laws.toml): N_act fixes d, so the total and the serving KV cache (2·T·n·d elements for T
  tokens, §4.3) follow from it, and a memory cap M >= N_total + KV becomes a cap on N_act at
  each E (``joint_log_active_cap``).
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

from ..core.files import data_toml
from .allocation import Allocation, Budget, allocate, map_problems
from .laws import FineGrainedMoE, JointMoE, Parametric

#: bisection steps of the fine-grained solve: a bracket of width 200 (in log N) shrinks below
#: 1e-13 in 51 steps; 80 leaves a margin at float64 and is exact at float32
BISECT_STEPS = 80


def _bisect(sign_fn, lo: Array, hi: Array) -> tuple[Array, Array]:
    """The last point where ``sign_fn`` is False, by bisection on [lo, hi] (monotone False->True)."""
    def step(_, bracket):
        a, b = bracket
        mid = 0.5 * (a + b)
        up = sign_fn(mid)
        return jnp.where(up, a, mid), jnp.where(up, mid, b)

    return jax.lax.fori_loop(0, BISECT_STEPS, step, (lo, hi))


#: Newton steps of ``poly_root``: from its start the relative error falls 0.22, 0.021, 2e-4,
#: 2e-8, 4e-16 (measured over 200,000 caps of 2e5-1e16 parameters, E of 1-256, 0-1e7 serving tokens)
NEWTON_STEPS = 6


def poly_root(coef: list, power: tuple[int, ...], log_target: ArrayLike) -> Array:
    """The x > 0 with Σ_i coef_i·x^power_i = exp(log_target) (coefficients >= 0, whole powers
    >= 1): a count that grows as a sum of powers of a width, inverted. The sum is convex and
    increasing for x > 0, so Newton started right of the root — the smallest single term's root,
    where that term alone reaches the target — descends onto it monotonically. Two exponentials
    and multiplications: it runs for every (sample, expert count) of a sweep."""
    log_target = jnp.asarray(log_target)
    log_start = jnp.min(jnp.stack(jnp.broadcast_arrays(*[
        (log_target - jnp.log(jnp.maximum(c, 1e-30))) / p + jnp.where(jnp.asarray(c) > 0, 0.0, jnp.inf)
        for c, p in zip(coef, power)])), axis=0)
    x, target = jnp.exp(log_start), jnp.exp(log_target)
    for _ in range(NEWTON_STEPS):
        value = sum(c * x ** p for c, p in zip(coef, power)) - target
        slope = sum(p * c * x ** (p - 1) for c, p in zip(coef, power))
        x = x - value / slope
    return x


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


class JointShape(NamedTuple):
    """The shape the joint law's parameter counts stand on (Ludziejewski et al. 2025, Appendix
    A.1 and A.3): vocabulary ``vocab`` (GPT-2's 50,257) and d_model = ``width_per_block`` ·
    n_blocks (64)."""

    vocab: float
    width_per_block: float


def joint_shape() -> JointShape:
    """The published shape rule (data/laws.toml, ``ludziejewski2025-moe.shape``)."""
    s = data_toml("laws.toml")["ludziejewski2025-moe"]["shape"]
    return JointShape(float(s["vocab"]), float(s["width_per_block"]))


class JointCounts(NamedTuple):
    """Logs of a joint-law model's counts at d_model = exp(log_width): active and total
    parameters (embeddings included, eq. 9/10) and the KV cache's elements for the serving
    tokens (-inf without)."""

    log_active: Array
    log_total: Array
    log_kv: Array


def joint_counts(log_width: ArrayLike, experts: ArrayLike, shape: JointShape,
                 kv_tokens: ArrayLike = 0.0) -> JointCounts:
    """Eq. 9/10 at d = exp(log_width), n = d / w: N_act = 2dV + 13 n d², N_total = 2dV + (4 + 9E) n d²,
    KV = 2 T n d (multi-head attention, §4.3)."""
    x = jnp.asarray(log_width)
    log_w, t = math.log(shape.width_per_block), jnp.asarray(kv_tokens)
    log_emb = math.log(2.0 * shape.vocab) + x
    return JointCounts(jnp.logaddexp(log_emb, math.log(13.0) - log_w + 3.0 * x),
                       jnp.logaddexp(log_emb, jnp.log(4.0 + 9.0 * jnp.asarray(experts)) - log_w + 3.0 * x),
                       jnp.where(t > 0, jnp.log(jnp.maximum(2.0 * t, 1e-30)) - log_w + 2.0 * x, -jnp.inf))


def joint_log_width(log_n_act: ArrayLike, shape: JointShape) -> Array:
    """log d_model of the model with exp(log_n_act) active parameters (eq. 10 inverted)."""
    return jnp.log(poly_root([2.0 * shape.vocab, 13.0 / shape.width_per_block], (1, 3), log_n_act))


def joint_log_active_cap(log_memory: ArrayLike, experts: ArrayLike, shape: JointShape,
                         kv_tokens: ArrayLike = 0.0) -> Array:
    """log of the most active parameters a memory cap of exp(log_memory) parameters (all E
    experts held, plus the KV cache of ``kv_tokens`` serving tokens) leaves at E experts: the
    widest d with N_total + KV = M (both grow with d), then N_act at that d; +inf without a cap."""
    log_memory = jnp.asarray(log_memory)
    finite = jnp.isfinite(log_memory)
    w = shape.width_per_block
    d = poly_root([2.0 * shape.vocab, 2.0 * jnp.asarray(kv_tokens) / w, (4.0 + 9.0 * jnp.asarray(experts)) / w],
                  (1, 2, 3), jnp.where(finite, log_memory, 0.0))
    return jnp.where(finite, jnp.log(2.0 * shape.vocab * d + 13.0 / w * d ** 3), jnp.inf)


def allocate_joint(law: JointMoE, log_c: ArrayLike, log_total_max: ArrayLike, experts: ArrayLike,
                   log_d_inf: ArrayLike = -math.inf, shape: JointShape | None = None,
                   kv_tokens: ArrayLike = 0.0) -> Allocation:
    """The joint optimum for every problem of the broadcast batch of budgets, memory caps
    (parameters, +inf: none), expert counts and serving tokens, with D_inf inference tokens
    (-inf: none): the law at each E as a Chinchilla law in (N_act, D), its memory cap as a cap
    on N_act (``joint_log_active_cap``; ``shape`` defaults to the paper's), solved by the
    package's Newton-bisection in one vmapped call."""
    experts = jnp.asarray(experts)
    log_n_max = joint_log_active_cap(log_total_max, experts, joint_shape() if shape is None else shape, kv_tokens)
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


def fine_grained_log_total_cap(law: FineGrainedMoE, log_memory: ArrayLike, kv_tokens: ArrayLike = 0.0) -> Array:
    """log of the most total non-embedding parameters N a memory cap of exp(log_memory)
    parameters leaves beside the KV cache of ``kv_tokens`` serving tokens: N + 2·T·n·d = M with
    the shape of eq. 10-11 (N = (8E + 4)·d³/64, n = d/64); the cap itself without serving tokens
    (a dense model is ``law`` at expansion 1: N = 12·d³/64)."""
    log_memory = jnp.asarray(log_memory)
    t = jnp.asarray(kv_tokens)
    serving = jnp.isfinite(log_memory) & (t > 0)
    k3 = (8.0 * jnp.asarray(law.expansion) + 4.0) / 64.0
    d = poly_root([2.0 * t / 64.0, k3], (2, 3), jnp.where(serving, log_memory, 0.0))
    return jnp.where(serving, jnp.log(k3) + 3.0 * jnp.log(d), log_memory)


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
