"""Fitting scaling laws to a team's own runs.

Approach 3 (Hoffmann et al. 2022; Besiroglu et al. 2024): minimise
    sum_i Huber_delta( LSE(a - alpha log N_i, b - beta log D_i, e) - log L_i )
over theta = (a, b, e, alpha, beta) = (log A, log B, log E, alpha, beta) with L-BFGS (optax)
from a grid of 4500 starts, vmapped over the starts, in float64; the best is kept.
Bootstrap: runs resampled with replacement, written as integer weights per run so every
replicate has the same shape and the refits vmap over replicates x starts.
Approach 2: per compute budget a parabola of loss in log N; its minima give N_opt ∝ C^a and
D_opt ∝ C^b.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from . import isoflop, vpnls
from .devices import jax_x64
from .errors import ParameterError
from .isoflop import check_tolerance, fit_approach2
from .laws import Parametric, optimal_exponents
from .runs import Runs, read_groups
from .validity import to_mapping

PAD = 32  # runs are padded (weight 0) to a multiple of this, so ladders of similar length share a compile
PARAM_NAMES = ("log_A", "log_B", "log_E", "alpha", "beta")  # covariance / draws order
GRID = {"alpha": (0.0, 0.5, 1.0, 1.5, 2.0), "beta": (0.0, 0.5, 1.0, 1.5, 2.0), "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
        "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)}
MAX_BOOTSTRAP = 10_000


# ----------------------------------------------------------------------------------------------
# Approach 3


def huber(r, delta):
    a = jnp.abs(r)
    return jnp.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def log_predicted(theta, log_n, log_d):
    """log L = LSE(a - alpha log N, b - beta log D, e)."""
    a, b, e, al, be = theta
    return jnp.logaddexp(jnp.logaddexp(a - al * log_n, b - be * log_d), e)


def objective(theta, log_n, log_d, log_l, weights, delta):
    """Weighted Huber loss of the log-loss residuals (weights: run multiplicities)."""
    return jnp.sum(weights * huber(log_predicted(theta, log_n, log_d) - log_l, delta))


def start_grid() -> np.ndarray:
    """The 4500 starts of Hoffmann et al. 2022 (the grid Besiroglu et al. 2024 reuse) as (a, b, e, alpha, beta) rows."""
    g = np.array(np.meshgrid(GRID["a"], GRID["b"], GRID["e"], GRID["alpha"], GRID["beta"], indexing="ij"))
    return g.reshape(5, -1).T


def lbfgs_minimize(theta0, fun, max_iter: int, tol: float):
    """Minimise ``fun`` from ``theta0`` with optax L-BFGS (zoom line search) until
    ||grad|| < tol or ``max_iter`` steps; pure and vmappable. Returns (x, f(x), ||grad||, steps).
    The one L-BFGS loop of the package (fit polish, sweep refinement, benchmarks)."""
    opt = optax.lbfgs()
    vg = optax.value_and_grad_from_state(fun)

    def step(carry):
        x, state = carry
        v, g = vg(x, state=state)
        u, state = opt.update(g, state, x, value=v, grad=g, value_fn=fun)
        return optax.apply_updates(x, u), state

    def go_on(carry):
        _, state = carry
        it = otu.tree_get(state, "count")
        err = otu.tree_norm(otu.tree_get(state, "grad"))
        return (it == 0) | ((it < max_iter) & (err >= tol))

    with jax.numpy_dtype_promotion("standard"):  # optax's L-BFGS adds its int32 index to an int64 arange
        x, state = jax.lax.while_loop(go_on, step, (theta0, opt.init(theta0)))
    v, g = jax.value_and_grad(fun)(x)
    return x, v, otu.tree_norm(g), otu.tree_get(state, "count")


# ----------------------------------------------------------------------------------------------
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


@partial(jax.jit, static_argnames=("iters",))
def fit_starts(starts, log_n, log_d, log_l, weights, delta, iters: int = 60):
    """IRLS-LM from every start ([S, 5]) for every group of runs ([G, n] each, weight 0 =
    padding): (theta, objective, grad norm), each [G, S, ...]."""
    return jax.vmap(lambda a, b, c, w: jax.vmap(lambda s: irls_lm(s, a, b, c, w, delta, iters))(starts))(
        log_n, log_d, log_l, weights)


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
        pth, pobj, pgn, _ = (np.asarray(v) for v in polish(jnp.asarray(np.stack([th[g][p] for g, p in enumerate(picks)])),
                                                            *args, ones, delta))
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
                out["bootstrap"] = _bootstrap_summary(draws, conv, seed, int(bstarts.shape[1]))
    return outs


def _approach3_record(runs: Runs, theta, best_obj, best_gn, obj, args, ones, delta, n_starts, iters, n_picks) -> dict:
    """One group's Approach 3 result: the law, fit quality, convergence and warnings."""
    n = len(runs.log_l)
    resid = np.asarray(log_predicted(jnp.asarray(theta), runs.log_n, runs.log_d)) - runs.log_l
    hess = np.asarray(jax.hessian(lambda t: objective(t, *args, ones, delta))(jnp.asarray(theta)))
    out = {"approach": 3, **_natural(theta), "objective": best_obj, "rmse_log_loss": float(np.sqrt(np.mean(resid**2))),
           "n_runs": n, "delta": delta, "converged": bool(best_gn < 1e-8), "grad_norm": best_gn,
           "method": f"IRLS-Levenberg-Marquardt from {n_starts} starts ({iters} steps), optax L-BFGS polish "
                     f"of the {n_picks} best distinct optima",
           "starts": n_starts, "starts_at_best_fraction": float(np.mean(obj <= best_obj * (1 + 1e-6))),
           "theta": [float(t) for t in theta], "warnings": []}
    lo = np.array([min(GRID[k_]) for k_ in ("a", "b", "e", "alpha", "beta")])
    hi = np.array([max(GRID[k_]) for k_ in ("a", "b", "e", "alpha", "beta")])
    for name, v, l_, h_ in zip(("log A", "log B", "log E", "alpha", "beta"), theta, lo, hi):
        if v <= l_ or v >= h_:
            out["warnings"].append(f"the optimum's {name} = {v:.3g} is on or outside the start grid [{l_:g}, {h_:g}]; widen the grid")
    ev = np.linalg.eigvalsh(0.5 * (hess + hess.T))
    cond = float(ev.max() / ev.min()) if ev.min() > 0 else float("inf")
    out["hessian_condition"] = cond
    if not cond < 1e10:
        out["warnings"].append(f"the Hessian at the optimum is ill-conditioned (condition number {cond:.2g}): "
                               "parameters trade off against each other; trust the bootstrap intervals, not the point")
    if not out["converged"]:
        out["warnings"].append(f"the best optimum did not reach the gradient tolerance (|grad| = {best_gn:.2g})")
    return out


# ----------------------------------------------------------------------------------------------
# VPNLS (variable projection, ``vpnls``): many ladders in one call




def bootstrap_weights(n: int, replicates: int, seed: int) -> np.ndarray:
    """[replicates, n] integer weights: resamples of n runs with replacement. The same for a
    group whatever the other groups, so a grouped fit equals the group fitted alone."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(replicates)]).astype(np.float64)


def replicate_weights(n: int, bootstrap: int, seed: int) -> np.ndarray:
    """[1 + bootstrap, n]: the fit to all runs once, then ``bootstrap_weights``."""
    ones = np.ones((1, n))
    return np.vstack([ones, bootstrap_weights(n, bootstrap, seed)]) if bootstrap else ones


def padded(runs_list: list[Runs], weights_list: list[np.ndarray]) -> list[jnp.ndarray]:
    """(log N, log D, L, w) stacked to [sum of replicates, n_max padded] (weight 0 past a ladder's runs)."""
    n_max = -(-max(len(r.log_l) for r in runs_list) // PAD) * PAD
    cols = [[], [], [], []]
    for runs, w in zip(runs_list, weights_list):
        n = len(runs.log_l)
        for k, v in enumerate((runs.log_n, runs.log_d, np.exp(runs.log_l))):
            cols[k].append(np.broadcast_to(np.pad(v, (0, n_max - n), constant_values=v[0]), (len(w), n_max)))
        cols[3].append(np.pad(w, ((0, 0), (0, n_max - n))))
    return [jnp.asarray(np.concatenate(c), jnp.float64) for c in cols]


def _vp_result(f: dict, theta: list[float], runs: Runs) -> dict:
    """One VPNLS fit (host floats; ``theta`` its ``VPFit.log_theta``) as a fit record."""
    pred = np.asarray(log_predicted(jnp.asarray(theta), runs.log_n, runs.log_d))
    out = {"approach": "vpnls", **{k: f[k] for k in ("E", "A", "B", "alpha", "beta")}, "rss": f["rss"],
           "rmse_log_loss": float(np.sqrt(np.mean((pred - runs.log_l) ** 2))), "n_runs": len(runs.log_l),
           "converged": not (f["at_grid_edge"] or f["at_zoom_edge"]), "grad_norm": f["grad_norm"],
           "method": f"variable projection: NNLS for (E, A, B) inside, a {vpnls.GRID}x{vpnls.GRID} grid of (alpha, beta) in "
                     f"[{vpnls.EXPONENT_RANGE[0]:g}, {vpnls.EXPONENT_RANGE[1]:g}] and {vpnls.ZOOM_LEVELS} zoom levels outside",
           "theta": theta, "warnings": []}
    out["a"], out["b"] = optimal_exponents(Parametric(*theta))
    if f["at_grid_edge"]:
        out["warnings"].append(f"alpha = {f['alpha']:.3g}, beta = {f['beta']:.3g}: the best exponents are on the edge of "
                               f"the searched range {list(vpnls.EXPONENT_RANGE)}; the fit is not trustworthy")
    if f["at_zoom_edge"]:
        out["warnings"].append("the local search did not settle (its best point stayed on the window's edge)")
    for name, c in zip("EAB", f["clamped"]):
        if c:
            out["warnings"].append(f"{name} is held at 0 by the non-negativity constraint: the data do not support that term")
    return out


def fit_vpnls(groups: dict[str, Runs], bootstrap: int = 0, seed: int = 0) -> dict[str, dict]:
    """VPNLS of every group (and ``bootstrap`` replicates of each) in one vmapped call."""
    keys = list(groups)
    runs_list = [groups[k] for k in keys]
    weights = [replicate_weights(len(r.log_l), bootstrap, seed) for r in runs_list]
    with jax_x64():
        fitted = vpnls.fit_batch(*padded(runs_list, weights))
        thetas = np.asarray(fitted.log_theta())
    res = {k: np.asarray(v) for k, v in jax.device_get(fitted)._asdict().items()}
    out, pos = {}, 0
    for key, runs, w in zip(keys, runs_list, weights):
        f = {k: (v[pos].tolist() if v[pos].ndim else v[pos].item()) for k, v in res.items()}
        rec = _vp_result(f, thetas[pos].tolist(), runs)
        if bootstrap:
            sl = slice(pos + 1, pos + len(w))
            ok = ~(res["at_grid_edge"][sl] | res["at_zoom_edge"][sl])
            rec["bootstrap"] = _bootstrap_summary(thetas[sl], ok, seed, 1)
        out[key] = rec
        pos += len(w)
    return out


def _bootstrap_summary(draws: np.ndarray, converged: np.ndarray, seed: int, starts: int) -> dict:
    """Bootstrap draws in (log A, log B, log E, alpha, beta) order -> their covariance, standard
    errors and 95 % percentile intervals of (E, A, B, alpha, beta)."""
    nat = np.stack([np.exp(draws[:, 2]), np.exp(draws[:, 0]), np.exp(draws[:, 1]), draws[:, 3], draws[:, 4]], axis=1)
    names = ("E", "A", "B", "alpha", "beta")
    return {"replicates": len(draws), "seed": seed, "starts_per_replicate": starts,
            "converged_fraction": float(np.mean(converged)), "order": list(PARAM_NAMES), "draws": draws.tolist(),
            "cov": np.cov(draws.T).tolist(), "se": {nm: float(np.std(nat[:, i], ddof=1)) for i, nm in enumerate(names)},
            "ci95": {nm: [float(np.percentile(nat[:, i], 2.5)), float(np.percentile(nat[:, i], 97.5))]
                     for i, nm in enumerate(names)}}


# ----------------------------------------------------------------------------------------------
# Diagnostics shared by the approaches


def robust_outliers(resid: np.ndarray, k: float) -> np.ndarray:
    """Runs whose residual is more than k robust standard deviations (1.4826 x MAD) from the
    median residual."""
    med = np.median(resid)
    mad = 1.4826 * np.median(np.abs(resid - med))
    return np.abs(resid - med) > k * max(mad, 1e-12)


def residuals(res: dict, runs: Runs) -> np.ndarray:
    """Each run's log-loss residual (predicted - observed) under a fit; NaN where the fit says
    nothing (Approach 2: runs of curves left out)."""
    if res["approach"] == 2:
        return isoflop.residuals(runs, res["tolerance"])
    return np.asarray(log_predicted(jnp.asarray(res["theta"]), runs.log_n, runs.log_d)) - runs.log_l


def allocation_at(res: dict, target: float) -> dict:
    """The compute-optimal N and D a fit implies at ``target`` FLOPs (C = 6ND)."""
    if res["approach"] == 2:
        n = res["n_opt_coefficient"] * target ** res["a"]
        d = res["d_opt_coefficient"] * target ** res["b"]
    else:
        from .allocation import closed_form_x
        with jax_x64():
            n = float(np.exp(closed_form_x(Parametric(*(jnp.float64(t) for t in res["theta"])), jnp.log(jnp.float64(target)))))
        d = target / (6.0 * n)
    return {"flops": target, "params": float(n), "tokens": float(d), "tokens_per_param": float(d / n)}


# ----------------------------------------------------------------------------------------------
# One call from a runs file to fitted laws


APPROACHES = ("2", "3", "vpnls", "all")
APPROACH_LABELS = {"2": "Approach 2", "3": "Approach 3", "vpnls": "VPNLS"}
DEFAULT_TARGET = 5.76e23  # Chinchilla's budget: where the approaches' allocations are compared by default


def _fit_groups(groups: dict[str, Runs], approach: str, bootstrap: int, seed: int, delta: float,
                tolerance: float) -> dict[str, dict]:
    if approach == "vpnls":
        return fit_vpnls(groups, bootstrap, seed)
    if approach == "2":
        return {k: fit_approach2(r, tolerance) for k, r in groups.items()}
    out = dict(zip(groups, fit_approach3_groups(list(groups.values()), delta, bootstrap, seed)))
    for res in out.values():
        res["a"], res["b"] = optimal_exponents(Parametric(*res["theta"]))
    return out


def _with_diagnostics(groups: dict[str, Runs], approach: str, fits: dict[str, dict], target: float, outlier_k: float,
                      exclude: bool, refit) -> dict[str, dict]:
    """Each fit with its allocation at ``target``, flagged outliers, and (``exclude``) the refit
    without them, with how far that moved the answer."""
    out = {}
    for key, res in fits.items():
        runs = groups[key]
        res["at"] = allocation_at(res, target)
        res["validity"] = to_mapping(runs.fitted_range())
        r = residuals(res, runs)
        flag = np.zeros(len(r), bool)
        ok = np.isfinite(r)
        flag[ok] = robust_outliers(r[ok], outlier_k)
        res["outliers"] = [{"row": int(runs.rows[i]) if runs.rows is not None else int(i) + 1,
                            "params": float(np.exp(runs.log_n[i])), "tokens": float(np.exp(runs.log_d[i])),
                            "loss": float(np.exp(runs.log_l[i])), "residual_log_loss": float(r[i])} for i in np.flatnonzero(flag)]
        res["outlier_rule"] = f"|residual - median| > {outlier_k:g} x 1.4826 x MAD"
        if exclude and flag.any():
            kept = runs.subset(~flag)
            new = refit({key: kept})[key]
            new["at"] = allocation_at(new, target)
            new["validity"] = to_mapping(kept.fitted_range())
            moved = {"params_at_target": new["at"]["params"] / res["at"]["params"] - 1.0}
            for k in ("alpha", "beta", "a"):
                if k in res and k in new:
                    moved[k] = new[k] - res[k]
            new.update({"dropped": res["outliers"], "outliers": [], "before_exclusion": {"at": res["at"], **{
                k: res[k] for k in ("alpha", "beta", "a", "b") if k in res}}, "moved_by_exclusion": moved,
                "outlier_rule": res["outlier_rule"]})
            res = new
        out[key] = res
    return out


def fit_file(path: str | Path, *, approach: int | str = 3, bootstrap: int = 0, seed: int = 0, n_col: str = "params",
             d_col: str = "tokens", c_col: str = "flops", loss_col: str = "loss", drop_highest: int = 0,
             loss_min: float | None = None, loss_max: float | None = None, delta: float = 1e-3,
             tolerance: float = 0.05, group: Sequence[str] = (), where: Sequence[tuple[str, str]] = (),
             target: float | None = None, outlier_k: float = 5.0, exclude_outliers: bool = False) -> dict | list[dict]:
    """Read the runs in ``path`` (``runs.read_groups``) and fit them: Approach 3 (Huber, with
    ``bootstrap`` replicates), Approach 2 (IsoFLOP parabolas), VPNLS (variable projection, all
    groups and replicates in one call) or all three side by side (``approach="all"``), each with
    the allocation it implies at ``target`` FLOPs and its outlier diagnostics. Every argument is
    checked before the file is read. One fit record without ``group``; a list (one per group,
    key ``group``) with it. ``approach="all"`` gives per group ``fits`` (by approach) and the
    ``spread`` of N* at the target between them."""
    approach = str(approach)
    if approach not in APPROACHES:
        raise ParameterError("approach", f"must be one of {', '.join(APPROACHES)}, got {approach}")
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise ParameterError("bootstrap", f"must be from 0 to {MAX_BOOTSTRAP} replicates, got {bootstrap}")
    if not (delta > 0 and math.isfinite(delta)):
        raise ParameterError("delta", f"must be a positive finite Huber delta, got {delta}")
    if bootstrap == 1:
        raise ParameterError("bootstrap", "needs at least 2 replicates, got 1")
    check_tolerance(tolerance)
    for name, v in (("loss_min", loss_min), ("loss_max", loss_max)):
        if v is not None and not math.isfinite(v):
            raise ParameterError(name, f"must be a finite loss, got {v}")
    if loss_min is not None and loss_max is not None and not loss_min < loss_max:
        raise ParameterError("loss_max", f"must be greater than {{loss_min}} ({loss_min:g}), got {loss_max:g}", names=True)
    if target is not None and not (target > 0 and math.isfinite(target)):
        raise ParameterError("target", f"must be a positive number of FLOPs, got {target}")
    if not (outlier_k > 0 and math.isfinite(outlier_k)):
        raise ParameterError("outlier_k", f"must be a positive number of robust standard deviations, got {outlier_k}")
    target = DEFAULT_TARGET if target is None else target
    groups = read_groups(path, n_col, d_col, c_col, loss_col, group, where, drop_highest, loss_min, loss_max)
    names = ("2", "3", "vpnls") if approach == "all" else (approach,)
    per = {}
    for a in names:
        fits = _fit_groups(groups, a, bootstrap, seed, delta, tolerance)
        per[a] = _with_diagnostics(groups, a, fits, target, outlier_k, exclude_outliers,
                                   lambda g, a=a: _fit_groups(g, a, bootstrap, seed, delta, tolerance))
    records = []
    for key in groups:
        if approach == "all":
            fits = {a: per[a][key] for a in names}
            ns = [f["at"]["params"] for f in fits.values()]
            rec = {"approach": "all", "fits": fits, "at": target, "n_runs": len(groups[key].log_l),
                   "spread": {"params_max_over_min": max(ns) / min(ns)},
                   "warnings": [f"{APPROACH_LABELS[a]}: {w}" for a, f in fits.items() for w in f.get("warnings", [])]}
        else:
            rec = per[approach][key]
        rec["source"] = str(path)
        if group:
            rec = {"group": key, **rec}
        records.append(rec)
    return records if group else records[0]
