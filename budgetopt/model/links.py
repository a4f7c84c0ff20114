"""Links from loss to a downstream metric, step 2 of a two-step forecast (step 1 is the loss law).

- ``exp`` (Gadre et al. 2024, arXiv 2403.08540): err = epsilon - k·exp(-gamma·L), with err an
  average top-1 error.
- ``sigmoid`` (Llama 3 report §3.2.1; Bhagia et al. 2024, the OLMo ladder):
  m = a / (1 + exp(-k·(L - l0))) + b.

L is a loss in nats per token; the metric is in the units of the data it was fitted on.

Fitting (least squares on the metric itself, as Gadre et al. do with SciPy's ``curve_fit``):
each link is linear in two of its parameters for fixed others — (epsilon, k) given gamma,
(a, b) given (k, l0) — so those are solved exactly inside and only gamma, or (k, l0), are
searched outside: a grid, then a zoom, in fixed steps, so bootstrap replicates vmap.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..core.errors import InputError

LINK_PARAMS = {"exp": ("epsilon", "k", "gamma"), "sigmoid": ("a", "k", "l0", "b")}


def exp_link(loss, epsilon, k, gamma):
    """Gadre et al.'s error from loss: epsilon - k exp(-gamma L)."""
    return epsilon - k * jnp.exp(-gamma * loss)


def sigmoid_link(loss, a, k, l0, b):
    """A metric that saturates in both directions: a / (1 + exp(-k (L - l0))) + b."""
    return a / (1.0 + jnp.exp(-k * (loss - l0))) + b


LINK_FUNCTIONS = {"exp": exp_link, "sigmoid": sigmoid_link}


def check_link(link: dict, where: str) -> dict:
    """A link record {kind, its parameters, metric?}: a known kind with finite parameters."""
    kind = link.get("kind")
    if kind not in LINK_PARAMS:
        raise InputError(f"{where}.kind", f"must be one of {', '.join(LINK_PARAMS)}, got {kind!r}")
    for p in LINK_PARAMS[kind]:
        v = link.get(p)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not jnp.isfinite(v):
            raise InputError(f"{where}.{p}", f"must be a finite number, got {v!r}")
    return link


def predict_link(link: dict, loss):
    """The metric a link predicts at ``loss`` (a float or an array)."""
    return LINK_FUNCTIONS[link["kind"]](loss, *(link[p] for p in LINK_PARAMS[link["kind"]]))


class LinkFit(NamedTuple):
    """A fitted link (leaves gain leading axes under vmap): ``theta`` in LINK_PARAMS order, the
    weighted RSS, and whether the search's best point is on the edge of its range (not
    converged: the data do not pin the link down)."""

    theta: jnp.ndarray
    rss: jnp.ndarray
    at_edge: jnp.ndarray


LINK_GRID_POINTS = {"exp": 400, "sigmoid": 48}  # outer grid points per searched axis
LINK_ZOOM_LEVELS = 10


def _ranges(kind: str, loss, w):
    """The searched box: exp over log gamma; sigmoid over (log k, l0) around the losses seen."""
    if kind == "exp":
        return jnp.array([jnp.log(0.01)]), jnp.array([jnp.log(20.0)])
    big = jnp.where(w > 0, loss, -jnp.inf).max()
    small = jnp.where(w > 0, loss, jnp.inf).min()
    return jnp.array([jnp.log(0.05), small - 2.0]), jnp.array([jnp.log(50.0), big + 2.0])


def _columns(kind: str, u, loss):
    """[n, 2] columns of the linear pair at searched point u."""
    if kind == "exp":  # err = epsilon * 1 + k * (-exp(-gamma L))
        return jnp.stack([jnp.ones_like(loss), -jnp.exp(-jnp.exp(u[0]) * loss)], axis=1)
    return jnp.stack([1.0 / (1.0 + jnp.exp(-jnp.exp(u[0]) * (loss - u[1]))), jnp.ones_like(loss)], axis=1)


def _inner(kind: str, u, loss, y, w):
    """(linear coefficients, weighted RSS) at searched point u: a 2x2 weighted least squares."""
    x = _columns(kind, u, loss)
    g = (x * w[:, None]).T @ x
    h = (x * w[:, None]).T @ y
    det = g[0, 0] * g[1, 1] - g[0, 1] * g[1, 0]
    c = jnp.array([g[1, 1] * h[0] - g[0, 1] * h[1], g[0, 0] * h[1] - g[1, 0] * h[0]]) / det
    r = y - x @ c
    rss = jnp.sum(w * r * r)
    return c, jnp.where(jnp.isfinite(rss), rss, jnp.inf)


def fit_link(kind: str, loss, y, w) -> LinkFit:
    """The least-squares link of ``kind`` through (loss, metric) with weights ``w`` (run
    multiplicities, 0 = padding). Pure; vmap over replicates."""
    lo, hi = _ranges(kind, loss, w)
    dims, n = lo.shape[0], LINK_GRID_POINTS[kind]
    axes = [jnp.linspace(lo[i], hi[i], n) for i in range(dims)]
    pts = jnp.stack(jnp.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dims)
    rss_at = jax.vmap(lambda u: _inner(kind, u, loss, y, w)[1])
    vals = rss_at(pts)
    k = jnp.argmin(vals)
    idx = jnp.stack(jnp.unravel_index(k, (n,) * dims))
    at_edge = jnp.any((idx == 0) | (idx == n - 1))
    offsets = jnp.stack(jnp.meshgrid(*[jnp.arange(-4.0, 5.0)] * dims, indexing="ij"), -1).reshape(-1, dims)

    def zoom(carry, _):
        centre, step, best = carry
        step = step / 4.0
        cand = jnp.clip(centre + step * offsets, lo, hi)
        v = rss_at(cand)
        j = jnp.argmin(v)
        better = v[j] <= best
        return (jnp.where(better, cand[j], centre), step, jnp.minimum(v[j], best)), None

    (u, _, _), _ = jax.lax.scan(zoom, (pts[k], (hi - lo) / (n - 1), vals[k]), None, length=LINK_ZOOM_LEVELS)
    c, rss = _inner(kind, u, loss, y, w)
    theta = jnp.stack([c[0], c[1], jnp.exp(u[0])]) if kind == "exp" else jnp.stack([c[0], jnp.exp(u[0]), u[1], c[1]])
    return LinkFit(theta, rss, at_edge)


@partial(jax.jit, static_argnames="kind")
def fit_links(kind: str, loss, y, w) -> LinkFit:
    """``fit_link`` for every row of weights ``w`` [R, n] (bootstrap replicates) in one call."""
    return jax.vmap(lambda ww: fit_link(kind, loss, y, ww))(w)


def predict_theta(kind: str, theta, loss):
    """The metric at ``loss`` from a fitted ``theta`` (LINK_PARAMS order)."""
    return LINK_FUNCTIONS[kind](loss, *(theta[..., i] for i in range(len(LINK_PARAMS[kind]))))

