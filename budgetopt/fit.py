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

import csv
import math
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.tree_utils as otu

from .devices import jax_x64
from .errors import InputError, ParameterError
from .files import read_text
from .laws import Parametric, optimal_exponents

PARAM_NAMES = ("log_A", "log_B", "log_E", "alpha", "beta")  # covariance / draws order
GRID = {"alpha": (0.0, 0.5, 1.0, 1.5, 2.0), "beta": (0.0, 0.5, 1.0, 1.5, 2.0), "e": (-1.0, -0.5, 0.0, 0.5, 1.0),
        "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0), "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)}
MIN_RUNS = 5
MAX_BOOTSTRAP = 10_000


class Runs(NamedTuple):
    """Training runs: natural logs of parameters, tokens and final loss (float64)."""

    log_n: np.ndarray
    log_d: np.ndarray
    log_l: np.ndarray


# ----------------------------------------------------------------------------------------------
# Input


def read_runs(path: str | Path, n_col: str = "params", d_col: str = "tokens", c_col: str = "flops",
              loss_col: str = "loss", drop_highest: int = 0, loss_min: float | None = None,
              loss_max: float | None = None) -> Runs:
    """Read a CSV of runs. Tokens come from ``d_col`` or, when absent, from compute: D = C/(6N).
    Errors name the row (1 = first data row) and the column."""
    path = Path(path)
    text = read_text(path, "runs", "a CSV of runs")
    try:
        rows = list(csv.reader(text.splitlines()))
    except csv.Error as e:  # e.g. a cell over the csv module's field size limit
        raise ParameterError("runs", f"{path} is not a readable CSV: {e}") from None
    if not rows:
        raise ParameterError("runs", f"{path} is empty")
    header = [h.strip() for h in rows[0]]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ParameterError("runs", f"duplicate column {dup[0]!r} in the header")
    col = {h: i for i, h in enumerate(header)}
    for name, flag in ((n_col, "n_col"), (loss_col, "loss_col")):
        if name not in col:
            hint = next((f" (the header looks separated by {sep!r}; budgetopt reads comma-separated CSV)"
                         for sep in (";", "\t", "|") if len(header) == 1 and sep in header[0]), "")
            raise ParameterError(flag, f"column {name!r} not in {path.name}; columns: {', '.join(header)}{hint}")
    use_d = d_col in col
    if not use_d and c_col not in col:
        raise ParameterError("d_col", f"need a tokens column ({d_col!r}) or a compute column ({c_col!r}); columns: {', '.join(header)}")
    n, d, loss = [], [], []
    for r, row in enumerate(rows[1:], start=1):
        if not any(c.strip() for c in row):
            continue
        vals = {}
        for name in (n_col, d_col if use_d else c_col, loss_col):
            i = col[name]
            cell = row[i].strip() if i < len(row) else ""
            try:
                v = float(cell)
            except ValueError:
                raise InputError(f"row {r}, column {name!r}", f"cannot read {cell!r} as a number") from None
            if not math.isfinite(v) or v <= 0:
                raise InputError(f"row {r}, column {name!r}", f"must be a positive finite number, got {cell!r}")
            vals[name] = v
        n.append(vals[n_col])
        d.append(vals[d_col] if use_d else vals[c_col] / (6 * vals[n_col]))
        loss.append(vals[loss_col])
    n, d, loss = (np.array(x, np.float64) for x in (n, d, loss))
    keep = np.ones(len(loss), bool)
    if drop_highest:
        if drop_highest < 0:
            raise ParameterError("drop_highest", f"must be >= 0, got {drop_highest}")
        keep[np.argsort(-loss, kind="stable")[:drop_highest]] = False
    if loss_min is not None:
        keep &= loss >= loss_min
    if loss_max is not None:
        keep &= loss <= loss_max
    if keep.sum() < MIN_RUNS:
        raise ParameterError("runs", f"{int(keep.sum())} runs left after filtering; a fit needs at least {MIN_RUNS}")
    return Runs(np.log(n[keep]), np.log(d[keep]), np.log(loss[keep]))


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

    x, state = jax.lax.while_loop(go_on, step, (theta0, opt.init(theta0)))
    v, g = jax.value_and_grad(fun)(x)
    return x, v, otu.tree_norm(g), otu.tree_get(state, "count")


# ----------------------------------------------------------------------------------------------
def _irls_lm(theta0, log_n, log_d, log_l, weights, delta, iters: int):
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
    """IRLS-LM from every start (vmapped): (theta, objective, grad norm) per start."""
    return jax.vmap(lambda s: _irls_lm(s, log_n, log_d, log_l, weights, delta, iters))(starts)


@partial(jax.jit, static_argnames=("max_iter",))
def polish(starts, log_n, log_d, log_l, weights, delta, max_iter: int = 400, tol: float = 1e-11):
    """optax L-BFGS from a few starts (vmapped) to a tight gradient tolerance."""
    fun = lambda th: objective(th, log_n, log_d, log_l, weights, delta)  # noqa: E731
    return jax.vmap(lambda s: lbfgs_minimize(s, fun, max_iter, tol))(starts)


@partial(jax.jit, static_argnames=("iters",))
def fit_replicates(starts, log_n, log_d, log_l, weights, delta, iters: int = 100):
    """IRLS-LM for every bootstrap replicate (weights [R, n]) from every start ([S, 5])."""
    return jax.vmap(lambda w: jax.vmap(lambda s: _irls_lm(s, log_n, log_d, log_l, w, delta, iters))(starts))(weights)


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
    """Fit E, A, B, alpha, beta from the 4500-start grid.

    Why two engines: optax L-BFGS vmapped over 4500 starts took 643 s on 2 cores (a batched
    while-loop with a nested zoom line search runs every start at the pace of the slowest).
    The Huber fit is an M-estimator, for which IRLS with Levenberg-Marquardt damping converges
    in tens of fixed-cost steps: 60 steps over all starts take ~5 s; L-BFGS then polishes the
    8 best distinct optima to |grad| < 1e-11 (benchmarks/NOTES.md).

    With ``bootstrap`` > 0, that many resamples of the runs (integer weights) are refitted by
    IRLS-LM from those 8 optima; the output holds the draws, their covariance in (log A,
    log B, log E, alpha, beta) order, standard errors and 95 % percentile intervals."""
    if not delta > 0:
        raise ParameterError("delta", f"must be > 0, got {delta}")
    with jax_x64(), jax.numpy_dtype_promotion("standard"):  # optax mixes int32/int64 internally
        args = [jnp.asarray(v, jnp.float64) for v in runs]
        n = len(runs.log_l)
        ones = jnp.ones(n, jnp.float64)
        starts = jnp.asarray(start_grid(), jnp.float64)
        th, obj, gn = (np.asarray(v) for v in fit_starts(starts, *args, ones, delta, iters=iters))
        obj = np.where(np.isfinite(obj), obj, np.inf)
        picks = _distinct_best(th, obj, POLISH)
        pth, pobj, pgn, pit = (np.asarray(v) for v in polish(jnp.asarray(th[picks]), *args, ones, delta))
        pobj = np.where(np.isfinite(pobj), pobj, np.inf)
        k = int(np.argmin(pobj))
        theta, best_obj, best_gn = pth[k], float(pobj[k]), float(pgn[k])
        if not best_obj <= obj[picks[0]]:  # the polish never makes it worse
            theta, best_obj, best_gn = th[picks[0]], float(obj[picks[0]]), float(gn[picks[0]])
        resid = np.asarray(log_predicted(jnp.asarray(theta), *args[:2])) - runs.log_l
        hess = np.asarray(jax.hessian(lambda t: objective(t, *args, ones, delta))(jnp.asarray(theta)))
        out = {"approach": 3, **_natural(theta), "objective": best_obj, "rmse_log_loss": float(np.sqrt(np.mean(resid**2))),
               "n_runs": n, "delta": delta, "converged": bool(best_gn < 1e-8), "grad_norm": best_gn,
               "method": f"IRLS-Levenberg-Marquardt from {len(starts)} starts ({iters} steps), optax L-BFGS polish "
                         f"of the {len(picks)} best distinct optima",
               "starts": len(starts), "starts_at_best_fraction": float(np.mean(obj <= best_obj * (1 + 1e-6))),
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
        if bootstrap:
            if bootstrap < 2:
                raise ParameterError("bootstrap", f"needs at least 2 replicates, got {bootstrap}")
            bstarts = jnp.asarray(np.vstack([theta[None], pth[np.argsort(pobj)]])[:boot_starts])
            rng = np.random.default_rng(seed)
            w = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(bootstrap)]).astype(np.float64)
            bth, bobj, bgn = (np.asarray(v) for v in fit_replicates(bstarts, *args, jnp.asarray(w), delta))
            bobj = np.where(np.isfinite(bobj), bobj, np.inf)
            kk = np.argmin(bobj, axis=1)
            draws = bth[np.arange(bootstrap), kk]
            conv = bgn[np.arange(bootstrap), kk] < 1e-6 * np.maximum(1.0, w.sum(axis=1) / n)
            cov = np.cov(draws.T)
            nat = np.stack([np.exp(draws[:, 2]), np.exp(draws[:, 0]), np.exp(draws[:, 1]), draws[:, 3], draws[:, 4]], axis=1)
            names = ("E", "A", "B", "alpha", "beta")
            out["bootstrap"] = {"replicates": bootstrap, "seed": seed, "starts_per_replicate": int(bstarts.shape[0]),
                                "converged_fraction": float(conv.mean()), "order": list(PARAM_NAMES),
                                "draws": draws.tolist(), "cov": cov.tolist(),
                                "se": {nm: float(np.std(nat[:, i], ddof=1)) for i, nm in enumerate(names)},
                                "ci95": {nm: [float(np.percentile(nat[:, i], 2.5)), float(np.percentile(nat[:, i], 97.5))]
                                         for i, nm in enumerate(names)}}
    return out


# ----------------------------------------------------------------------------------------------
# Approach 2


def check_tolerance(tolerance: float) -> float:
    """Approach 2's grouping tolerance: relative, in (0, 1)."""
    if not 0 < tolerance < 1:
        raise ParameterError("tolerance", f"must be a relative tolerance in (0, 1), got {tolerance}")
    return tolerance


def fit_approach2(runs: Runs, tolerance: float = 0.05) -> dict:
    """IsoFLOP parabolas: group runs whose compute agrees within ``tolerance`` (relative), fit
    L = p0 + p1 x + p2 x^2 in x = log N per group (>= 3 runs), take the minimum, then fit
    log N_opt = a log C + c and log D_opt = b log C + c' by least squares."""
    check_tolerance(tolerance)
    log_c = math.log(6) + runs.log_n + runs.log_d
    order = np.argsort(log_c)
    groups, cur = [], [order[0]]
    for i in order[1:]:
        if log_c[i] - log_c[cur[0]] <= math.log1p(tolerance):
            cur.append(i)
        else:
            groups.append(cur)
            cur = [i]
    groups.append(cur)
    budgets = []
    for g in groups:
        if len(g) < 3:
            continue
        x, y = runs.log_n[g], np.exp(runs.log_l[g])
        p2, p1, p0 = np.polyfit(x, y, 2)
        if not p2 > 0:
            continue  # no interior minimum
        xm = -p1 / (2 * p2)
        if not x.min() <= xm <= x.max():
            continue  # the minimum is extrapolated: not trusted
        c = float(np.exp(np.mean(log_c[g])))
        budgets.append({"flops": c, "runs": len(g), "params_opt": float(np.exp(xm)), "tokens_opt": c / (6 * float(np.exp(xm))),
                        "loss_opt": float(p0 + p1 * xm + p2 * xm * xm)})
    if len(budgets) < 2:
        raise ParameterError("runs", "Approach 2 needs at least 2 compute budgets with >= 3 runs and an interior minimum; "
                         f"found {len(budgets)}")
    lc = np.log([b["flops"] for b in budgets])
    a, ca = np.polyfit(lc, np.log([b["params_opt"] for b in budgets]), 1)
    b_, cb = np.polyfit(lc, np.log([b["tokens_opt"] for b in budgets]), 1)
    ref = 5.76e23
    return {"approach": 2, "a": float(a), "b": float(b_), "n_opt_coefficient": float(np.exp(ca)),
            "d_opt_coefficient": float(np.exp(cb)), "budgets": budgets, "n_runs": len(runs.log_l),
            "tokens_per_param_at_5.76e23": float(np.exp(cb + b_ * math.log(ref)) / np.exp(ca + a * math.log(ref)))}


# ----------------------------------------------------------------------------------------------
# One call from a runs file to a fitted law


def fit_file(path: str | Path, *, approach: int = 3, bootstrap: int = 0, seed: int = 0, n_col: str = "params",
             d_col: str = "tokens", c_col: str = "flops", loss_col: str = "loss", drop_highest: int = 0,
             loss_min: float | None = None, loss_max: float | None = None, delta: float = 1e-3,
             tolerance: float = 0.05) -> dict:
    """Read the runs in ``path`` (see ``read_runs``) and fit Approach 3 (Huber, with
    ``bootstrap`` replicates) or Approach 2 (IsoFLOP parabolas). Every argument is checked
    before the file is read. The result records its ``source``; Approach 3 adds the
    compute-optimal exponents ``a``, ``b`` its law implies (N_opt ∝ C^a, D_opt ∝ C^b)."""
    if approach not in (2, 3):
        raise ParameterError("approach", f"must be 2 or 3, got {approach}")
    if not 0 <= bootstrap <= MAX_BOOTSTRAP:
        raise ParameterError("bootstrap", f"must be from 0 to {MAX_BOOTSTRAP} replicates, got {bootstrap}")
    if not (delta > 0 and math.isfinite(delta)):
        raise ParameterError("delta", f"must be a positive finite Huber delta, got {delta}")
    check_tolerance(tolerance)
    for name, v in (("loss_min", loss_min), ("loss_max", loss_max)):
        if v is not None and not math.isfinite(v):
            raise ParameterError(name, f"must be a finite loss, got {v}")
    if loss_min is not None and loss_max is not None and not loss_min < loss_max:
        raise ParameterError("loss_max", f"must be greater than {{loss_min}} ({loss_min:g}), got {loss_max:g}", names=True)
    runs = read_runs(path, n_col, d_col, c_col, loss_col, drop_highest, loss_min, loss_max)
    res = fit_approach3(runs, delta, bootstrap, seed) if approach == 3 else fit_approach2(runs, tolerance)
    if approach == 3:
        res["a"], res["b"] = optimal_exponents(Parametric(*res["theta"]))
    res["source"] = str(path)
    return res
