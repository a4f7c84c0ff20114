"""Approach 3 (``fit --approach 3``; Hoffmann et al. 2022; Besiroglu et al. 2024): minimise
    sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i )
over theta = (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta) from a grid of 4500
starts, vmapped over the starts, in float64; the best is kept. Bootstrap: runs resampled with
replacement, written as integer weights per run so every replicate has the same shape and the
refits vmap over replicates x starts.

Units: N parameters, D tokens, L nats per token; theta holds natural logs of A, B, E.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ParameterError
from ..core.lbfgs import huber, lbfgs_minimize
from ..core.runtime import jax_x64
from .runs import PAD, Runs, bootstrap_weights

PARAM_NAMES = ("log_A", "log_B", "log_E", "alpha", "beta")  # covariance / draws order
START_GRID = {"alpha": (0.0, 0.5, 1.0, 1.5, 2.0), "beta": (0.0, 0.5, 1.0, 1.5, 2.0), "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
              "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)}


def log_predicted(theta, log_n, log_d):
    """log L = LSE(a - alpha log N, b - beta log D, e)."""
    a, b, e, al, be = theta
    return jnp.logaddexp(jnp.logaddexp(a - al * log_n, b - be * log_d), e)


def objective(theta, log_n, log_d, log_l, weights, delta):
    """Weighted Huber loss of the log-loss residuals (weights: run multiplicities)."""
    return jnp.sum(weights * huber(log_predicted(theta, log_n, log_d) - log_l, delta))


def start_grid() -> np.ndarray:
    """The 4500 starts of Hoffmann et al. 2022 (the grid Besiroglu et al. 2024 reuse) as (a, b, e, alpha, beta) rows."""
    g = np.array(np.meshgrid(START_GRID["a"], START_GRID["b"], START_GRID["e"], START_GRID["alpha"], START_GRID["beta"],
                             indexing="ij"))
    return g.reshape(5, -1).T


def irls_lm(theta0, log_n, log_d, log_l, weights, delta, iters: int):
    """Huber M-estimation by iteratively reweighted Gauss-Newton with Levenberg-Marquardt
    damping, for ONE start (vmap for many). Fixed ``iters`` steps (a scan: no data-dependent
    loop, so thousands of vmapped starts advance in lockstep without waiting on each other).
    The IRLS weights psi(r)/r make the Gauss-Newton matrix positive semi-definite where the
    Huber loss is linear; a step is kept only if the objective falls."""
    f = lambda th: objective(th, log_n, log_d, log_l, weights, delta)  # noqa: E731

    def parts(th):
        a, b, e, al, be = th
        u1, u2 = a - al * log_n, b - be * log_d
        pred = jnp.logaddexp(jnp.logaddexp(u1, u2), e)
        p1, p2, p3 = jnp.exp(u1 - pred), jnp.exp(u2 - pred), jnp.exp(e - pred)
        jac = jnp.stack([p1, p2, p3, -log_n * p1, -log_d * p2], axis=1)  # d pred / d theta
        r = pred - log_l
        psi = jnp.clip(r, -delta, delta)
        w = weights * jnp.where(jnp.abs(r) <= delta, 1.0, delta / jnp.maximum(jnp.abs(r), delta))
        g = jac.T @ (weights * psi)
        h = (jac * w[:, None]).T @ jac
        return g, h

    def step(carry, _):
        th, val, lam = carry
        g, h = parts(th)
        damp = h + lam * (jnp.diag(jnp.diag(h)) + 1e-12 * jnp.eye(5))
        delta_th = -jnp.linalg.solve(damp, g)
        trial = th + delta_th
        v_trial = f(trial)
        ok = jnp.isfinite(v_trial) & (v_trial < val)
        th = jnp.where(ok, trial, th)
        val = jnp.where(ok, v_trial, val)
        lam = jnp.where(ok, jnp.maximum(lam / 3.0, 1e-9), jnp.minimum(lam * 4.0, 1e9))
        return (th, val, lam), None

    (th, val, _), _ = jax.lax.scan(step, (theta0, f(theta0), jnp.asarray(1e-2, theta0.dtype)), None, length=iters)
    return th, val, jnp.linalg.norm(jax.grad(f)(th))


# (start, run) pairs one vectorised IRLS step holds: the 4500 starts over 256 runs. Beyond it the
# starts go in batches (lax.map), so memory stops growing with the rows: 2,000 runs took 2.1 GB
# at once and 10,000 asked for 8.8 GB; batched, both stay at 0.64 GB (benchmarks/NOTES.md).
START_RUN_PAIRS = 4500 * 256


@partial(jax.jit, static_argnames=("iters", "batch"))
def fit_starts(starts, log_n, log_d, log_l, weights, delta, iters: int = 60, batch: int | None = None):
    """IRLS-LM from every start ([S, 5]) for every group of runs ([G, n] each, weight 0 =
    padding): (theta, objective, grad norm), each [G, S, ...]. The starts run ``batch`` at a
    time (default: as many as keep ``START_RUN_PAIRS`` (start, run) pairs over all groups); each
    start's answer does not depend on it."""
    if batch is None:
        batch = max(1, START_RUN_PAIRS // max(log_n.shape[0] * log_n.shape[1], 1))

    def group(a, b, c, w):
        one = lambda s: irls_lm(s, a, b, c, w, delta, iters)  # noqa: E731
        return jax.vmap(one)(starts) if batch >= starts.shape[0] else jax.lax.map(one, starts, batch_size=batch)

    return jax.vmap(group)(log_n, log_d, log_l, weights)


@partial(jax.jit, static_argnames=("max_iter",))
def polish(starts, log_n, log_d, log_l, weights, delta, max_iter: int = 400, tol: float = 1e-11):
    """optax L-BFGS from a few starts per group ([G, k, 5]) to a tight gradient tolerance."""
    def group(st, a, b, c, w):
        fun = lambda th: objective(th, a, b, c, w, delta)  # noqa: E731
        return jax.vmap(lambda s: lbfgs_minimize(s, fun, max_iter, tol))(st)

    return jax.vmap(group)(starts, log_n, log_d, log_l, weights)


@partial(jax.jit, static_argnames=("iters",))
def fit_replicates(starts, log_n, log_d, log_l, weights, delta, iters: int = 100):
    """IRLS-LM for every group ([G, ...]), bootstrap replicate (weights [G, R, n]) and start
    ([G, S, 5])."""
    def group(st, a, b, c, ws):
        return jax.vmap(lambda w: jax.vmap(lambda s: irls_lm(s, a, b, c, w, delta, iters))(st))(ws)

    return jax.vmap(group)(starts, log_n, log_d, log_l, weights)


def _natural(theta) -> dict:
    a, b, e, al, be = (float(t) for t in theta)
    return {"E": math.exp(e), "A": math.exp(a), "B": math.exp(b), "alpha": al, "beta": be}


POLISH = 8  # distinct optima polished by L-BFGS


def _distinct_best(theta: np.ndarray, obj: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k best starts whose optima differ (rounded to 1e-3): separate basins."""
    order = np.argsort(obj)
    _, first = np.unique(np.round(theta[order], 3), axis=0, return_index=True)
    return order[np.sort(first)][:k]


def fit_approach3(runs: Runs, delta: float = 1e-3, bootstrap: int = 0, seed: int = 0,
                  boot_starts: int = POLISH, iters: int = 60) -> dict:
    """Fit E, A, B, alpha, beta from the 4500-start grid (``fit_approach3_groups`` of one group).

    Why two engines: optax L-BFGS vmapped over 4500 starts took 643 s on 2 cores (a batched
    while-loop with a nested zoom line search runs every start at the pace of the slowest).
    The Huber fit is an M-estimator, for which IRLS with Levenberg-Marquardt damping converges
    in tens of fixed-cost steps: 60 steps over all starts take ~5 s; L-BFGS then polishes the
    8 best distinct optima to |grad| < 1e-11 (benchmarks/NOTES.md).

    With ``bootstrap`` > 0, that many resamples of the runs (integer weights) are refitted by
    IRLS-LM from those 8 optima; the output holds the draws, their covariance in (log A,
    log B, log E, alpha, beta) order, standard errors and 95 % percentile intervals."""
    return fit_approach3_groups([runs], delta, bootstrap, seed, boot_starts, iters)[0]


def fit_approach3_groups(groups: list[Runs], delta: float = 1e-3, bootstrap: int = 0, seed: int = 0,
                         boot_starts: int = POLISH, iters: int = 60) -> list[dict]:
    """``fit_approach3`` of every group, each stage one vmapped call over the groups (runs
    padded with weight-0 copies to a common length): the 4500 starts, the polish, the bootstrap."""
    if not delta > 0:
        raise ParameterError("delta", f"must be > 0, got {delta}")
    if bootstrap and bootstrap < 2:
        raise ParameterError("bootstrap", f"needs at least 2 replicates, got {bootstrap}")
    ns = [len(r.log_l) for r in groups]
    n_pad = -(-max(ns) // PAD) * PAD
    with jax_x64(), jax.numpy_dtype_promotion("standard"):  # optax mixes int32/int64 internally
        args = [jnp.asarray(np.stack([np.pad(r[i], (0, n_pad - len(r[i])), mode="edge") for r in groups]), jnp.float64)
                for i in range(3)]
        ones = jnp.asarray(np.stack([np.pad(np.ones(n), (0, n_pad - n)) for n in ns]), jnp.float64)
        starts = jnp.asarray(start_grid(), jnp.float64)
        th, obj, gn = (np.asarray(v) for v in fit_starts(starts, *args, ones, delta, iters=iters))
        obj = np.where(np.isfinite(obj), obj, np.inf)
        picks = [_distinct_best(th[g], obj[g], POLISH) for g in range(len(groups))]
        k_max = max(len(p) for p in picks)
        picks = [np.pad(p, (0, k_max - len(p)), mode="edge") for p in picks]  # repeats: same shape for every group
        best_starts = jnp.asarray(np.stack([th[g][p] for g, p in enumerate(picks)]))
        pth, pobj, pgn, _ = (np.asarray(v) for v in polish(best_starts, *args, ones, delta))
        pobj = np.where(np.isfinite(pobj), pobj, np.inf)
        outs, best = [], []
        for g, runs in enumerate(groups):
            k = int(np.argmin(pobj[g]))
            theta, best_obj, best_gn = pth[g, k], float(pobj[g, k]), float(pgn[g, k])
            p0 = picks[g][0]
            if not best_obj <= obj[g, p0]:  # the polish never makes it worse
                theta, best_obj, best_gn = th[g, p0], float(obj[g, p0]), float(gn[g, p0])
            best.append(theta)
            outs.append(_approach3_record(runs, theta, best_obj, best_gn, obj[g], [a[g] for a in args], ones[g], delta,
                                          len(starts), iters, len(set(picks[g].tolist()))))
        if bootstrap:
            bstarts = jnp.asarray(np.stack([np.vstack([best[g][None], pth[g][np.argsort(pobj[g])]])[:boot_starts]
                                            for g in range(len(groups))]))
            ws = [bootstrap_weights(n, bootstrap, seed) for n in ns]
            w_pad = jnp.asarray(np.stack([np.pad(w, ((0, 0), (0, n_pad - w.shape[1]))) for w in ws]))
            bth, bobj, bgn = (np.asarray(v) for v in fit_replicates(bstarts, *args, w_pad, delta))
            bobj = np.where(np.isfinite(bobj), bobj, np.inf)
            for g, (out, w, n) in enumerate(zip(outs, ws, ns)):
                kk = np.argmin(bobj[g], axis=1)
                draws = bth[g, np.arange(bootstrap), kk]
                conv = bgn[g, np.arange(bootstrap), kk] < 1e-6 * np.maximum(1.0, w.sum(axis=1) / n)
                out["bootstrap"] = bootstrap_summary(draws, conv, seed, int(bstarts.shape[1]))
    return outs


def _approach3_record(runs: Runs, theta, best_obj, best_gn, obj, args, ones, delta, n_starts, iters, n_picks) -> dict:
    """One group's Approach 3 result: the law, fit quality, convergence and warnings."""
    n = len(runs.log_l)
    resid = np.asarray(log_predicted(jnp.asarray(theta), runs.log_n, runs.log_d)) - runs.log_l
    hess = np.asarray(jax.hessian(lambda t: objective(t, *args, ones, delta))(jnp.asarray(theta)))
    out = {"approach": "3", **_natural(theta), "objective": best_obj,
           "rmse_log_loss": float(np.sqrt(np.mean(resid**2))),
           "n_runs": n, "delta": delta, "converged": bool(best_gn < 1e-8), "grad_norm": best_gn,
           "method": f"IRLS-Levenberg-Marquardt from {n_starts} starts ({iters} steps), optax L-BFGS polish of the "
                     f"{n_picks} best distinct optima",
           "starts": n_starts, "starts_at_best_fraction": float(np.mean(obj <= best_obj * (1 + 1e-6))),
           "theta": [float(t) for t in theta], "warnings": []}
    lo = np.array([min(START_GRID[k_]) for k_ in ("a", "b", "e", "alpha", "beta")])
    hi = np.array([max(START_GRID[k_]) for k_ in ("a", "b", "e", "alpha", "beta")])
    for name, v, l_, h_ in zip(("log A", "log B", "log E", "alpha", "beta"), theta, lo, hi):
        if v <= l_ or v >= h_:
            out["warnings"].append(f"the optimum's {name} = {v:.3g} is on or outside the start grid [{l_:g}, {h_:g}]; "
                                   "widen the grid")
    ev = np.linalg.eigvalsh(0.5 * (hess + hess.T))
    cond = float(ev.max() / ev.min()) if ev.min() > 0 else float("inf")
    out["hessian_condition"] = cond
    if not cond < 1e10:
        out["warnings"].append(f"the Hessian at the optimum is ill-conditioned (condition number {cond:.2g}): "
                               "parameters trade off against each other; trust the bootstrap intervals, not the point")
    if not out["converged"]:
        out["warnings"].append(f"the best optimum did not reach the gradient tolerance (|grad| = {best_gn:.2g})")
    return out


def bootstrap_summary(draws: np.ndarray, converged: np.ndarray, seed: int, starts: int) -> dict:
    """Bootstrap draws in (log A, log B, log E, alpha, beta) order -> their covariance, standard
    errors and 95 % percentile intervals of (E, A, B, alpha, beta)."""
    nat = np.stack([np.exp(draws[:, 2]), np.exp(draws[:, 0]), np.exp(draws[:, 1]), draws[:, 3], draws[:, 4]], axis=1)
    names = ("E", "A", "B", "alpha", "beta")
    return {"replicates": len(draws), "seed": seed, "starts_per_replicate": starts,
            "converged_fraction": float(np.mean(converged)), "order": list(PARAM_NAMES), "draws": draws.tolist(),
            "cov": np.cov(draws.T).tolist(), "se": {nm: float(np.std(nat[:, i], ddof=1)) for i, nm in enumerate(names)},
            "ci95": {nm: [float(np.percentile(nat[:, i], 2.5)), float(np.percentile(nat[:, i], 97.5))]
                     for i, nm in enumerate(names)}}
