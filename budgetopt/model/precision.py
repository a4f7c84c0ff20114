"""Training and serving precision (DESIGN §15): Kumar et al. 2024's precision law, the
compute-optimal training precision under its cost model, post-training-quantisation
degradation and the critical data size, and the published empirical penalties and speed-ups of
floating-point formats (``data/precision_formats.toml``).

- The law (``laws.KumarPrecision``): L = A·N_eff^−α + B·D^−β + E, N_eff = N·f_w(P_w)·f_a(P_a)·
  f_kv(P_kv) with, per tensor x, the **offset** form f = max(0, 1 − e^(n_x − P/γ_x)) (the
  appendix's fitted offsets; it reproduces the paper's compute-optimal training precision of ~7–8
  bits) or the **main-text** form f = 1 − e^(−P/γ_x) (no offsets: ~3.5 bits). At fixed precision
  it is the Chinchilla form with A' = A·F^−α (``at_precision``), so the package's closed form
  allocates it.
- Cost model (the paper's): compute ∝ N·D·P. Here a budget is BF16-equivalent FLOPs: a run in P
  bits on N, D costs 6·N·D·P/16, so 16 bits is today's 6ND and 8 bits buys twice the N·D.
- δ_PTQ(N, D, P_post) = C_T·D^γ_D·N^−γ_N·e^(−P_post/γ_post) (eq. 2): more tokens per parameter,
  more fragile; D_crit = (β·B·N^γ_N·e^(P_post/γ_post)/(γ_D·C_T))^(1/(γ_D+β)) (eq. 13) is where
  more tokens start to raise the post-quantisation loss.

Units: N parameters (non-embedding, the paper's), D tokens, P bits, loss in nats/token.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike

from .allocation import closed_form_x, optimal_loss_closed_form
from .laws import KumarPrecision, Parametric

PRECISION_FORMS = ("offset", "main-text")
REFERENCE_BITS = 16.0  # the cost model's unit: a 16-bit run costs 6ND
BITS_RANGE = (1.0, 32.0)  # where the compute-optimal training precision is sought
GRID_STEP = 0.01  # bits between the grid points before the golden-section refinement
GOLDEN_STEPS = 60  # a 0.04-bit bracket shrinks by 0.618^60 ~ 3e-13


def factor(bits: ArrayLike, gamma: ArrayLike, offset_n: ArrayLike, form: str) -> Array:
    """f(P) of one tensor: max(0, 1 − e^(n − P/γ)) (offset) or 1 − e^(−P/γ) (main-text)."""
    if form == "offset":
        return jnp.maximum(1.0 - jnp.exp(offset_n - bits / gamma), 0.0)
    return 1.0 - jnp.exp(-bits / gamma)


def log_factor(law: KumarPrecision, p_w: ArrayLike, p_a: ArrayLike, p_kv: ArrayLike, form: str) -> Array:
    """log(N_eff / N) = Σ log f_x(P_x) over weights, activations, KV cache (−inf where a factor
    is 0: a precision so low the tensor carries nothing)."""
    return (jnp.log(factor(p_w, law.gamma_w, law.n_w, form)) + jnp.log(factor(p_a, law.gamma_a, law.n_a, form))
            + jnp.log(factor(p_kv, law.gamma_kv, law.n_kv, form)))


def at_precision(law: KumarPrecision, bits: ArrayLike, form: str) -> Parametric:
    """The law trained with weights, activations and KV cache all in ``bits``, as the Chinchilla
    form in (N, D): A' = A·F^−α with F = f_w f_a f_kv."""
    lf = log_factor(law, bits, bits, bits, form)
    return Parametric(law.log_A - law.alpha * lf, law.log_B, law.log_E, law.alpha + 0.0 * lf, law.beta + 0.0 * lf)


def penalised_law(dense: Parametric, log_factor_rel: ArrayLike = 0.0, log_token_factor: ArrayLike = 0.0) -> Parametric:
    """A dense law trained in a lower-precision format: A' = A e^(−α rel), rel = log F(bits)/F(16)
    (the precision law's effective parameters; ``plan.precision_choice.relative_log_factor``), and
    B' = B t^β, t = log_token_factor's exp (the tokens the format needs for the same loss: D counts
    as D / t, MXFP4's 1.36). Scalars or arrays (a sweep's [formats, 1] columns)."""
    return dense._replace(log_A=dense.log_A - dense.alpha * log_factor_rel,
                          log_B=dense.log_B + dense.beta * log_token_factor)


def precision_loss(law: KumarPrecision, log_n: Array, log_d: Array, p_w: ArrayLike, p_a: ArrayLike,
                   p_kv: ArrayLike, form: str) -> Array:
    """L(N, D, P_w, P_a, P_kv) = A (N F)^−α + B D^−β + E."""
    log_neff = log_n + log_factor(law, p_w, p_a, p_kv, form)
    return jnp.exp(law.log_A - law.alpha * log_neff) + jnp.exp(law.log_B - law.beta * log_d) + jnp.exp(law.log_E)


def ptq_degradation(law: KumarPrecision, log_n: ArrayLike, log_d: ArrayLike, p_post: ArrayLike) -> Array:
    """δ_PTQ = C_T D^γ_D / N^γ_N e^(−P_post/γ_post) (eq. 2): the loss a post-training
    quantisation to ``p_post`` bits adds."""
    return law.c_t * jnp.exp(law.gamma_d * log_d - law.gamma_n * log_n - p_post / law.gamma_post)


def critical_data_size(law: KumarPrecision, log_n: ArrayLike, p_post: ArrayLike) -> Array:
    """D_crit (eq. 13): the tokens beyond which more data raises the loss after quantisation to
    ``p_post`` bits: d/dD [B D^−β + δ_PTQ] = 0."""
    log = (jnp.log(law.beta) + law.log_B + law.gamma_n * log_n + p_post / law.gamma_post
           - jnp.log(law.gamma_d * law.c_t)) / (law.gamma_d + law.beta)
    return jnp.exp(log)


def log_budget_at(log_c: ArrayLike, bits: ArrayLike) -> Array:
    """log of the 6·N·D a BF16-equivalent budget buys at ``bits`` (cost ∝ N·D·P)."""
    return log_c + jnp.log(REFERENCE_BITS / bits)


class PrecisionOptimum(NamedTuple):
    """The compute-optimal training precision of a budget: bits, log N, log D, loss; whether the
    golden-section search met its tolerance; and whether it sits at an end of BITS_RANGE."""

    bits: Array
    log_n: Array
    log_d: Array
    loss: Array
    converged: Array
    at_bound: Array


def optimal_loss_at(law: KumarPrecision, log_c: ArrayLike, bits: ArrayLike, form: str) -> Array:
    """The compute-optimal loss of a BF16-equivalent budget trained in ``bits`` (inf where the
    precision leaves no effective parameters)."""
    loss = optimal_loss_closed_form(at_precision(law, bits, form), log_budget_at(log_c, bits))
    return jnp.where(jnp.isfinite(loss), loss, jnp.inf)


class GridMin(NamedTuple):
    """``grid_golden``'s answer: the minimiser, its value, whether the bracket shrank below the
    tolerance, and whether the grid's best point was at one of its ends."""

    x: Array
    value: Array
    converged: Array
    at_bound: Array


def grid_golden(f, grid: Array, tol: float = 1e-6) -> GridMin:
    """The minimum of a function of one variable: ``f`` vmapped over ``grid``, then golden-section
    search in the bracket of the best point's neighbours (``f`` smooth and unimodal there);
    never worse than the best grid point."""
    values = jax.vmap(f)(grid)
    k = jnp.argmin(values)
    a, b = grid[jnp.maximum(k - 1, 0)], grid[jnp.minimum(k + 1, grid.shape[0] - 1)]
    ratio = (math.sqrt(5.0) - 1.0) / 2.0

    def step(carry, _):
        a, b = carry
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        left = f(c) < f(d)
        return (jnp.where(left, a, c), jnp.where(left, d, b)), None

    (a, b), _ = jax.lax.scan(step, (a, b), None, length=GOLDEN_STEPS)
    x = 0.5 * (a + b)
    fx, best = f(x), values[k]
    better = fx <= best
    return GridMin(jnp.where(better, x, grid[k]), jnp.where(better, fx, best),
                   (b - a) < tol * jnp.maximum(1.0, jnp.abs(x)), (k == 0) | (k == grid.shape[0] - 1))


def bits_grid(dtype) -> Array:
    """BITS_RANGE every GRID_STEP bits."""
    lo, hi = BITS_RANGE
    return jnp.linspace(lo, hi, int(round((hi - lo) / GRID_STEP)) + 1, dtype=dtype)


def optimal_precision(law: KumarPrecision, log_c: ArrayLike, form: str) -> PrecisionOptimum:
    """The training precision minimising the compute-optimal loss of budget exp(log_c) (one
    budget; vmap for many): ``grid_golden`` over BITS_RANGE (the loss is smooth in P near its
    minimum), the allocation there by the closed form."""
    m = grid_golden(lambda b: optimal_loss_at(law, log_c, b, form), bits_grid(jnp.result_type(log_c)))
    return optimum_at(law, log_c, m.x, form)._replace(loss=m.value, converged=m.converged, at_bound=m.at_bound)


def optimum_at(law: KumarPrecision, log_c: ArrayLike, bits: ArrayLike, form: str) -> PrecisionOptimum:
    """The compute-optimal (N, D) and loss of a BF16-equivalent budget trained in ``bits`` (the
    closed form of ``at_precision``); converged wherever the loss is finite."""
    log_c6 = log_budget_at(log_c, bits)
    log_n = closed_form_x(at_precision(law, bits, form), log_c6)
    loss = optimal_loss_at(law, log_c, bits, form)
    return PrecisionOptimum(jnp.asarray(bits), log_n, log_c6 - math.log(6.0) - log_n, loss, jnp.isfinite(loss),
                            jnp.asarray(False))


SIZE_GRID = 2001  # log N points between one parameter and the largest the budget allows


def serving_log_tokens(log_c: ArrayLike, log_n: Array, bits: ArrayLike, serve_bits: ArrayLike,
                       log_d_inf: ArrayLike) -> Array:
    """log D a lifetime budget leaves for training N parameters in ``bits`` after serving D_inf
    tokens in ``serve_bits`` (cost model: 6 N D P/16 + 2 N D_inf P_serve/16 = C); −inf where
    serving takes it all."""
    train = jnp.log(REFERENCE_BITS) + log_c - (jnp.log(2.0) + log_n + jnp.log(serve_bits) + log_d_inf)
    left = jnp.exp(jnp.minimum(train, 700.0))  # 16C / (2 N D_inf P_serve): > 1 leaves tokens to train on
    log_train = jnp.log(REFERENCE_BITS) + log_c + jnp.log1p(-jnp.minimum(1.0 / left, 1.0))
    return jnp.where(left > 1.0, log_train - jnp.log(6.0) - log_n - jnp.log(bits), -jnp.inf)


def post_quantisation_loss(law: KumarPrecision, log_n: Array, log_d: Array, bits: ArrayLike,
                           serve_bits: ArrayLike, form: str) -> Array:
    """The loss of the model served in ``serve_bits`` after training in ``bits``: L + δ_PTQ."""
    return (precision_loss(law, log_n, log_d, bits, bits, bits, form)
            + ptq_degradation(law, log_n, log_d, serve_bits))


class ServingOptimum(NamedTuple):
    """The model to train for serving quantised: training bits, log N, log D, the loss after
    quantisation and δ_PTQ in it, convergence (both searches) and whether a search ended on a
    grid edge."""

    bits: Array
    log_n: Array
    log_d: Array
    loss: Array
    ptq: Array
    converged: Array
    at_bound: Array


def serving_optimum(law: KumarPrecision, log_c: ArrayLike, form: str, serve_bits: ArrayLike,
                    log_d_inf: ArrayLike = -jnp.inf, bits: ArrayLike | None = None) -> ServingOptimum:
    """Minimise the post-quantisation loss L(N, D, P) + δ_PTQ(N, D, P_serve) over N (and the
    training precision P unless ``bits`` is given) under the lifetime budget 6 N D P/16 +
    2 N D_inf P_serve/16 = C: a model served quantised wants fewer tokens per parameter than the
    loss alone says (δ_PTQ grows with D/N), serving in fewer bits costs less compute."""
    dtype = jnp.result_type(log_c)
    top = jnp.log(REFERENCE_BITS) + log_c - jnp.log(6.0)  # N at D = 1 token with P = 1 bit: past every optimum

    def best_size(p):
        grid = jnp.linspace(0.0, top, SIZE_GRID, dtype=dtype)

        def f(x):
            log_d = serving_log_tokens(log_c, x, p, serve_bits, log_d_inf)
            v = post_quantisation_loss(law, x, jnp.maximum(log_d, 0.0), p, serve_bits, form)
            return jnp.where((log_d >= 0.0) & jnp.isfinite(v), v, jnp.inf)

        return grid_golden(f, grid)

    if bits is None:
        outer = grid_golden(lambda p: best_size(p).value, bits_grid(dtype))
        p = outer.x
    else:
        p = jnp.asarray(bits, dtype)
        outer = None
    inner = best_size(p)
    log_d = serving_log_tokens(log_c, inner.x, p, serve_bits, log_d_inf)
    converged = inner.converged if outer is None else inner.converged & outer.converged
    at_bound = inner.at_bound if outer is None else inner.at_bound | outer.at_bound
    return ServingOptimum(p, inner.x, log_d, inner.value, ptq_degradation(law, inner.x, log_d, serve_bits), converged,
                          at_bound)
