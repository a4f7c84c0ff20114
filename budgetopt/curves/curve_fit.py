"""Fit a loss-curve law to a model size's curves and predict other schedules (``budgetopt curves``).

Fit (DESIGN §16, as the official multi-power-law code fits): minimise
Σ_curves Σ_logged w_i Huber_δ(log L̂_i − log L_i), δ = 1e−3, over the law's log-parameters (so
scales and exponents stay positive), float64. Starts: ``CURVE_STARTS`` seeded draws in a box set by the
curves (L0 below the lowest loss, B ~ 0.02–2 / peak learning rate: a full decay lowers the loss by
B·η_peak·G, ~0.1); each runs ``SCOUT_ITER`` L-BFGS steps, the ``KEEP`` best then run to
convergence (``core.lbfgs``), vmapped over starts and model sizes in one call.

Bootstrap: logged points are autocorrelated along a curve, so replicates resample *blocks* of
consecutive points (moving blocks of ⌈√n⌉ points per curve), written as integer weights; each
replicate restarts from the full fit's best end points and is vmapped with the others. An
interval is the replicates' percentile interval; a prediction's also carries the law's own error
on schedules it was not fitted to (``prediction_error``), which the bootstrap cannot see.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ParameterError
from ..core.lbfgs import huber, lbfgs_minimize
from ..core.runtime import jax_x64
from .curve_laws import LAWS, RESOLUTION, Pairs, curve_loss, curve_pairs, join_pairs, to_coords

CURVE_STARTS = 24  # seeded starts per model size
SCOUT_ITER = 40  # every start's first L-BFGS steps, on pairs merged at SCOUT_RESOLUTION (cheaper, ~2e-5 off)
SCOUT_RESOLUTION = 0.3
KEEP = 4  # the best scouts run on to convergence
CURVE_MAX_ITER = 1000  # measured: the paper's split converges in 230-350 steps
REPLICATE_ITER = 400
CURVE_GRAD_TOL = 1e-10  # ||grad|| of the summed Huber objective (scale: delta x |residual| per point ~ 1e-6)
CURVE_CONVERGED_GRAD = 1e-6
CURVE_PAD = 256  # rows and pairs are padded to a multiple of this (one compiled shape for nearby sizes)


class Curve(NamedTuple):
    """One run's logged curve: ``steps`` (optimizer steps, increasing), ``loss`` at them, ``lrs``
    the learning rate of every step 0 .. len(lrs) − 1, the ``schedule`` it came from (a spec, or
    ``logged``), its model-size ``group``, and the file and data rows it was read from."""

    name: str
    group: str
    steps: np.ndarray
    loss: np.ndarray
    lrs: np.ndarray
    schedule: str
    path: str
    rows: np.ndarray


def _round_up(n: int) -> int:
    return max(CURVE_PAD, -(-n // CURVE_PAD) * CURVE_PAD)


def group_pairs(curves: list[Curve], resolution: float) -> tuple[Pairs, np.ndarray]:
    """One model size's curves as pairs and their log losses."""
    parts = [curve_pairs(c.lrs, c.steps, resolution) for c in curves]
    return join_pairs(parts), np.log(np.concatenate([c.loss for c in curves]))


def _pad_to(p: Pairs, log_l: np.ndarray, rows: int, pairs: int):
    q = join_pairs([p], pad_rows=rows, pad_pairs=pairs)
    return q, np.pad(log_l, (0, rows - len(log_l)))


def block_weights(lengths: list[int], replicates: int, seed: int) -> np.ndarray:
    """[replicates, Σ lengths] integer weights: per curve, ⌈n/b⌉ moving blocks of b = ⌈√n⌉
    consecutive points drawn with replacement (the first n resampled points kept)."""
    rng = np.random.default_rng(seed)
    out = np.zeros((replicates, sum(lengths)))
    at = 0
    for n in lengths:
        b = max(1, math.ceil(math.sqrt(n)))
        for r in range(replicates):
            starts = rng.integers(0, n - b + 1, -(-n // b))
            idx = (starts[:, None] + np.arange(b)).ravel()[:n]
            out[r, at:at + n] = np.bincount(idx, minlength=n)
        at += n
    return out


def curve_starts(curves: list[Curve], count: int, seed: int, name: str) -> np.ndarray:
    """[count, P] starts (fitting coordinates) in the box the curves suggest (seeded)."""
    rng = np.random.default_rng(seed)
    lo_loss = min(float(c.loss.min()) for c in curves)
    peak = max(float(c.lrs.max()) for c in curves)
    u = lambda a, b: np.exp(rng.uniform(np.log(a), np.log(b), count))  # noqa: E731  (log-uniform)
    cols = {"L0": lo_loss * rng.uniform(0.6, 0.98, count), "A": u(0.1, 3.0), "alpha": u(0.15, 1.0),
            "B": u(0.02 / peak, 2.0 / peak), "C": u(0.1, 10.0), "beta": u(0.15, 1.0), "gamma": u(0.15, 1.0)}
    if name == "annealing":
        cols["C"] = u(0.05 / peak, 5.0 / peak)
    return np.stack([to_coords(name, row) for row in np.stack([cols[p] for p in LAWS[name].params], axis=1)])


def replicate_batch() -> int | None:
    """Bootstrap replicates solved together: on CPU one at a time, each stopping at its own
    convergence (measured, 3 curves x 24k steps, 2 cores: 20 replicates in 7.3 s one at a time,
    24 s vmapped, where every lane runs to the slowest's 90 steps — they need 31 to 90 — and the
    wide lanes miss the cache); on an accelerator all at once (None)."""
    return 1 if jax.default_backend() == "cpu" else None


@partial(jax.jit, static_argnames=("name", "rows", "max_iter", "tol", "rep_batch"))
def _solve(name: str, theta0, pairs: Pairs, log_l, weights, delta, rows: int, max_iter: int, tol=CURVE_GRAD_TOL,
           rep_batch: int | None = None):
    """theta0 [G, R, S, P], pairs/log_l per group [G, ...], weights [G, R, rows] -> L-BFGS end
    points, objectives, gradient norms and steps, each [G, R, S(, P)]. Replicates vmapped, or
    mapped ``rep_batch`` at a time (``replicate_batch``)."""
    def one(th, p, y, w):
        objective = lambda t: jnp.sum(w * huber(jnp.log(curve_loss(name, t, p, rows)) - y, delta))  # noqa: E731
        return lbfgs_minimize(th, objective, max_iter, tol)

    starts_ = jax.vmap(one, in_axes=(0, None, None, None))
    if rep_batch is None:
        reps = jax.vmap(starts_, in_axes=(0, None, None, 0))
    else:
        def reps(th, p, y, w):
            return jax.lax.map(lambda a: starts_(a[0], p, y, a[1]), (th, w), batch_size=rep_batch)
    return jax.vmap(reps)(theta0, pairs, log_l, weights)


@partial(jax.jit, static_argnames=("name", "rows"))
def _evaluate(name: str, thetas, pairs: Pairs, rows: int):
    """The law at every row of ``pairs`` for each of ``thetas`` [K, P] -> [K, rows]."""
    return jax.vmap(lambda t: curve_loss(name, t, pairs, rows))(thetas)


def evaluate(name: str, thetas: np.ndarray, pairs: Pairs) -> np.ndarray:
    """``_evaluate`` on padded pairs, float64: [K, rows of ``pairs``]."""
    n = len(pairs.s1)
    q = join_pairs([pairs], pad_rows=_round_up(n), pad_pairs=_round_up(len(pairs.row)))
    with jax_x64():
        out = _evaluate(name, jnp.asarray(np.atleast_2d(thetas)), Pairs(*map(jnp.asarray, q)), _round_up(n))
        return np.asarray(jax.device_get(out))[:, :n]


def _batch(groups: list[list[Curve]], resolution: float):
    """Every model size's pairs and log losses stacked ([G, ...], padded alike), the padded row
    count, and each size's unpadded (pairs, log losses)."""
    built = [group_pairs(g, resolution) for g in groups]
    rows = _round_up(max(len(b[0].s1) for b in built))
    npairs = _round_up(max(len(b[0].row) for b in built))
    padded = [_pad_to(b[0], b[1], rows, npairs) for b in built]
    stacked = Pairs(*(np.stack([getattr(p[0], f) for p in padded]) for f in Pairs._fields))
    return (stacked, np.stack([p[1] for p in padded])), rows, built


class CurveFit(NamedTuple):
    """Per model size: the best fitting coordinates (``curve_laws.to_params``), its objective,
    ||grad||, steps, and the bootstrap replicates' coordinates ([R, P], empty without bootstrap)."""

    theta: np.ndarray
    objective: float
    grad_norm: float
    steps: int
    replicates: np.ndarray
    replicate_converged: float


def fit_curve_groups(name: str, groups: dict[str, list[Curve]], delta: float = 1e-3, bootstrap: int = 0,
                     seed: int = 0, n_starts: int = CURVE_STARTS,
                     resolution: float = RESOLUTION) -> dict[str, CurveFit]:
    """Fit law ``name`` to each model size's curves, every size in one vmapped call."""
    if name not in LAWS:
        raise ParameterError("form", f"unknown curve law {name!r}; known: {', '.join(LAWS)}")
    keys = list(groups)
    coarse, rows, _ = _batch([groups[k] for k in keys], max(resolution, SCOUT_RESOLUTION))
    (pairs, log_l), rows, built = _batch([groups[k] for k in keys], resolution)
    ones = np.stack([np.pad(np.ones(len(b[1])), (0, rows - len(b[1]))) for b in built])[:, None, :]
    th0 = np.stack([curve_starts(groups[k], n_starts, seed, name) for k in keys])[:, None]
    with jax_x64():
        ends, vals, _, _ = jax.device_get(_solve(name, jnp.asarray(th0), Pairs(*map(jnp.asarray, coarse[0])),
                                                 jnp.asarray(coarse[1]), jnp.asarray(ones), delta, rows, SCOUT_ITER))
        args = (Pairs(*map(jnp.asarray, pairs)), jnp.asarray(log_l))
        v = np.where(np.isfinite(vals[:, 0]), vals[:, 0], np.inf)
        order = np.argsort(v, axis=1)[:, :KEEP]
        keep = np.take_along_axis(ends[:, 0], order[:, :, None], axis=1)[:, None]
        ends, vals, grads, steps = jax.device_get(_solve(name, jnp.asarray(keep), *args, jnp.asarray(ones), delta,
                                                         rows, CURVE_MAX_ITER))
        v = np.where(np.isfinite(vals[:, 0]) & np.isfinite(grads[:, 0]), vals[:, 0], np.inf)
        best = np.argmin(v, axis=1)
        reps = None
        if bootstrap:
            w = np.stack([np.pad(block_weights([len(c.steps) for c in groups[k]], bootstrap, seed),
                                 ((0, 0), (0, rows - len(b[1])))) for k, b in zip(keys, built)])
            # each replicate from the full fit's optimum, stopped at the convergence threshold: a resample moves the
            # optimum a little (measured: to ||grad|| 1e-10 the 40 vmapped lanes ran all 400 steps, 22 s a replicate
            # on 2 cores; SciPy's L-BFGS-B, stopping at its defaults, reached no lower objective)
            r0 = np.broadcast_to(np.stack([ends[g, 0, best[g]] for g in range(len(keys))])[:, None, None],
                                 (len(keys), bootstrap, 1, ends.shape[-1]))
            reps = jax.device_get(_solve(name, jnp.asarray(np.ascontiguousarray(r0)), *args, jnp.asarray(w), delta,
                                         rows, REPLICATE_ITER, CURVE_CONVERGED_GRAD, replicate_batch()))
    out = {}
    for g, k in enumerate(keys):
        b = best[g]
        theta_r, conv = np.zeros((0, ends.shape[-1])), 1.0
        if reps is not None:
            rv = np.where(np.isfinite(reps[1][g]), reps[1][g], np.inf)
            rb = np.argmin(rv, axis=1)
            theta_r = reps[0][g][np.arange(bootstrap), rb]
            conv = float(np.mean(reps[2][g][np.arange(bootstrap), rb] < CURVE_CONVERGED_GRAD))
            theta_r = theta_r[np.isfinite(rv[np.arange(bootstrap), rb])]
        out[k] = CurveFit(ends[g, 0, b], float(vals[g, 0, b]), float(grads[g, 0, b]), int(steps[g, 0, b]), theta_r,
                          conv)
    return out
