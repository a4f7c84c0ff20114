"""Variable projection (VPNLS) for L = E + A·N^-alpha + B·D^-beta.

For fixed (alpha, beta) the law is linear in (E, A, B): those are the non-negative least-squares
solution of L on the columns [1, N^-alpha, D^-beta], so only (alpha, beta) are searched — a 2-D
grid, then a zoom around its best point — and no multi-start grid over five parameters is
needed (Open-Athena's scaling-law-analysis proposes it because Approach 2 is biased on
asymmetric surfaces). The objective is the (weighted) residual sum of squares in loss space, as
theirs.

The non-negative solve with three unknowns is exact by enumeration: the NNLS optimum is the
least-squares solution on its own support, so it is the best of the subsets' solutions that
are feasible. Every step has a fixed cost and shape, so a batch of fits — groups of a runs
file, bootstrap replicates, simulated ladders — advances in lockstep under ``vmap``; runs with
weight 0 are padding.

Units: N parameters, D tokens, L nats per token; exponents dimensionless.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

EXPONENT_RANGE = (0.01, 1.5)  # the outer grid of alpha and beta (both)
GRID_POINTS = 40  # points per exponent on the outer grid
ZOOM_POINTS = 9  # per exponent at each zoom level
ZOOM_LEVELS = 10  # each shrinks the spacing 4x: 0.038 / 4^10, about 4e-8


class VPFit(NamedTuple):
    """One VPNLS fit (leaves gain leading axes under vmap): the law, its weighted RSS, the
    gradient norm of the projected objective in (alpha, beta) at the end, and flags: the
    outer grid's best on its edge (the optimum may lie outside EXPONENT_RANGE), the last zoom's
    best on its window's edge (not converged), and which of (E, A, B) the NNLS clamped to 0."""

    E: Array
    A: Array
    B: Array
    alpha: Array
    beta: Array
    rss: Array
    grad_norm: Array
    at_grid_edge: Array
    at_zoom_edge: Array
    clamped: Array  # [3] bool: E, A, B held at zero

    def log_theta(self) -> Array:
        """(log A, log B, log E, alpha, beta) on the last axis (``fit.PARAM_NAMES`` order); a
        coefficient held at 0 gives log 1e-300."""
        def log(v):
            return jnp.log(jnp.maximum(v, 1e-300))

        return jnp.stack([log(self.A), log(self.B), log(self.E), self.alpha, self.beta], axis=-1)


def solve3(a: Float[Array, "3 3"], b: Float[Array, " 3"]) -> Array:
    """a^-1 b for a 3x3 matrix by its adjugate: a few dozen multiply-adds, where a general
    solver's pivoting loop compiled to ~8 s under the nested vmaps."""
    c0 = jnp.cross(a[1], a[2])
    c1 = jnp.cross(a[2], a[0])
    c2 = jnp.cross(a[0], a[1])
    det = a[0] @ c0
    return (c0 * b[0] + c1 * b[1] + c2 * b[2]) / det


def nnls_normal(g: Float[Array, "3 3"], h: Float[Array, " 3"], yy: Float[Array, ""]) -> tuple[Array, Array]:
    """(coefficients >= 0, RSS) of the non-negative least-squares problem with normal equations
    g c = h and y.y = yy: the best feasible least-squares solution over the column subsets.
    Columns are scaled to unit norm first (so N^-alpha ~ 1e-3 and a column of ones agree, and
    the scaled matrix has a unit diagonal): then a single column's solution is c_i = h_i, a
    pair's is a 2x2 solve written out, only the full support needs ``solve3``. Every RSS is
    y.y - 2 c.h + c.g.c, whose error is second order in the error of c (y.y - c.h, equal at an
    exact solution, lost the noise-free optimum to rounding in c). Written out per support, the grid's ~2400
    problems per fit cost a third of seven general 3x3 solves."""
    scale = jnp.sqrt(jnp.maximum(jnp.diag(g), 1e-300))
    gs = g / (scale[:, None] * scale[None, :])
    hs = h / scale
    zero = jnp.zeros_like(hs[0])
    cands, rss = [], []
    for i in range(3):  # one column
        c = [zero, zero, zero]
        c[i] = hs[i]
        cands.append(jnp.stack(c))
        rss.append(yy - hs[i] * hs[i])
    for i, j in ((0, 1), (0, 2), (1, 2)):  # two columns: [[1, r], [r, 1]] c = h
        r = gs[i, j]
        det = 1.0 - r * r
        ci, cj = (hs[i] - r * hs[j]) / det, (hs[j] - r * hs[i]) / det
        c = [zero, zero, zero]
        c[i], c[j] = ci, cj
        cands.append(jnp.stack(c))
        rss.append(yy - 2.0 * (ci * hs[i] + cj * hs[j]) + ci * ci + cj * cj + 2.0 * r * ci * cj)
    full = solve3(gs, hs)
    cands.append(full)
    rss.append(yy - 2.0 * full @ hs + full @ gs @ full)
    cs, rss = jnp.stack(cands), jnp.stack(rss)
    rss = jnp.where(jnp.all(cs >= 0.0, axis=1) & jnp.isfinite(rss) & jnp.all(jnp.isfinite(cs), axis=1), rss, jnp.inf)
    k = jnp.argmin(rss)
    use = rss[k] < yy  # else the empty support (all coefficients 0) is best
    return jnp.where(use, cs[k], 0.0) / scale, jnp.maximum(jnp.where(use, rss[k], yy), 0.0)


def grid_rss(alphas: Float[Array, " a"], betas: Float[Array, " b"], log_n, log_d, loss, w) -> tuple[Array, Array]:
    """(coefficients [a, b, 3], RSS [a, b]) at every (alpha, beta) pair of a grid. The normal
    equations of all pairs come from a few sums and one [a, n] x [n, b] product: the cost per
    pair is independent of the number of runs."""
    p = jnp.exp(-alphas[:, None] * log_n[None, :])  # [a, n]: N^-alpha
    q = jnp.exp(-betas[:, None] * log_d[None, :])  # [b, n]: D^-beta
    pw, qw = p * w, q * w
    s1, sp, sq = jnp.sum(w), jnp.sum(pw, axis=1), jnp.sum(qw, axis=1)
    spp, sqq, spq = jnp.sum(pw * p, axis=1), jnp.sum(qw * q, axis=1), pw @ q.T
    sy, spy, sqy, syy = jnp.sum(w * loss), pw @ loss, qw @ loss, jnp.sum(w * loss * loss)
    na, nb = alphas.shape[0], betas.shape[0]
    full = lambda v: jnp.broadcast_to(v, (na, nb))  # noqa: E731
    g = jnp.stack([jnp.stack([full(s1), full(sp[:, None]), full(sq[None, :])], -1),
                   jnp.stack([full(sp[:, None]), full(spp[:, None]), spq], -1),
                   jnp.stack([full(sq[None, :]), spq, full(sqq[None, :])], -1)], -2)
    h = jnp.stack([full(sy), full(spy[:, None]), full(sqy[None, :])], -1)
    return jax.vmap(jax.vmap(nnls_normal, in_axes=(0, 0, None)), in_axes=(0, 0, None))(g, h, syy)


def projected(ab: Float[Array, " 2"], log_n, log_d, loss, w) -> tuple[Array, Array]:
    """(E, A, B) and the weighted RSS at exponents ab = (alpha, beta), the RSS from the residuals
    themselves (no cancellation)."""
    coef, _ = grid_rss(ab[:1], ab[1:], log_n, log_d, loss, w)
    coef = coef[0, 0]
    r = loss - coef[0] - coef[1] * jnp.exp(-ab[0] * log_n) - coef[2] * jnp.exp(-ab[1] * log_d)
    return coef, jnp.sum(w * r * r)


def fit_one(log_n: Float[Array, " n"], log_d: Float[Array, " n"], loss: Float[Array, " n"],
            w: Float[Array, " n"]) -> VPFit:
    """VPNLS of one ladder (weights: run multiplicities; 0 = padding). Pure, vmappable."""
    lo, hi = EXPONENT_RANGE
    axis = jnp.linspace(lo, hi, GRID_POINTS, dtype=log_n.dtype)
    _, vals = grid_rss(axis, axis, log_n, log_d, loss, w)
    k = jnp.argmin(vals)
    i, j = k // GRID_POINTS, k % GRID_POINTS
    at_grid_edge = (i == 0) | (i == GRID_POINTS - 1) | (j == 0) | (j == GRID_POINTS - 1)
    offsets = jnp.arange(ZOOM_POINTS, dtype=log_n.dtype) - (ZOOM_POINTS - 1) / 2
    half = (ZOOM_POINTS - 1) // 2

    def zoom(carry, _):
        centre, step, best = carry
        step = step / 4.0
        a_pts = jnp.clip(centre[0] + step * offsets, lo, hi)
        b_pts = jnp.clip(centre[1] + step * offsets, lo, hi)
        coef, _ = grid_rss(a_pts, b_pts, log_n, log_d, loss, w)
        # the window's RSS from the residuals themselves: the normal equations' y.y - 2c.h + c.g.c
        # cancels to ~1e-12 of the RSS, the size of the RSS differences of the last zoom levels,
        # so which point won there depended on XLA's rounding (a group fitted alone or in a batch
        # differed by several final steps)
        p = jnp.exp(-a_pts[:, None] * log_n[None, :])  # [9, n]
        q = jnp.exp(-b_pts[:, None] * log_d[None, :])
        r = (loss[None, None, :] - coef[..., 0:1] - coef[..., 1:2] * p[:, None, :] - coef[..., 2:3] * q[None, :, :])
        v = jnp.sum(w * r * r, axis=-1)
        kk = jnp.argmin(v)
        ii, jj = kk // ZOOM_POINTS, kk % ZOOM_POINTS
        better = v[ii, jj] <= best
        centre = jnp.where(better, jnp.stack([a_pts[ii], b_pts[jj]]), centre)
        edge = better & ((jnp.abs(ii - half) == half) | (jnp.abs(jj - half) == half))
        return (centre, step, jnp.minimum(v[ii, jj], best)), edge

    step0 = jnp.asarray((hi - lo) / (GRID_POINTS - 1), log_n.dtype)
    start = (jnp.stack([axis[i], axis[j]]), step0, jnp.asarray(jnp.inf, log_n.dtype))
    (ab, _, _), edges = jax.lax.scan(zoom, start, None, length=ZOOM_LEVELS)
    coef, rss = projected(ab, log_n, log_d, loss, w)
    g = jax.grad(lambda t: projected(t, log_n, log_d, loss, w)[1])(ab)
    # edges at the first levels mean the optimum moved farther than the window: not converged
    # (at the last levels the RSS differences are at rounding level, and an edge means nothing)
    return VPFit(coef[0], coef[1], coef[2], ab[0], ab[1], rss, jnp.linalg.norm(g), at_grid_edge,
                 jnp.any(edges[:ZOOM_LEVELS // 2]), coef <= 0.0)


@jax.jit
def fit_batch(log_n: Float[Array, "b n"], log_d: Float[Array, "b n"], loss: Float[Array, "b n"],
              w: Float[Array, "b n"]) -> VPFit:
    """``fit_one`` over a batch of ladders padded to one length (weight 0 past each one's runs):
    groups, bootstrap replicates and simulated ladders in one call."""
    return jax.vmap(fit_one)(log_n, log_d, loss, w)
