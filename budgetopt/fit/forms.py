"""Published law forms fitted to a team's runs (``budgetopt fit --form NAME``), each in its own
variables (DESIGN §14): the over-training form of Gadre et al. 2024, the fine-grained MoE law of
Krajewski et al. 2024, the joint MoE law of Ludziejewski et al. 2025 and the routing law of Clark
et al. 2022. (The Chinchilla form is ``fit --approach``'s: Approach 3, VPNLS, Approach 2.)

Fit: minimise sum_i w_i Huber_delta(log L̂_i − log L_i) (natural logs, as Approach 3) over the
form's fitting coordinates — scales as logs, E_start and E_max as log E_start and
log(E_max − E_start), so every coordinate is free, and N, D divided by the runs' geometric means
(``uncentred``) — from ``STARTS`` seeded starts in the form's box, by L-BFGS (``core.lbfgs``)
vmapped over starts, groups and bootstrap replicates in one call, float64; per problem the best
start is kept. A replicate restarts from the ``REPLICATE_STARTS`` best end points of the full
fit (a resample moves the optimum, not the basin).

Units: N parameters (each form's own count: ``Form.params_meaning``), D tokens, E experts, G
granularity, L nats per token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ParameterError
from ..core.lbfgs import huber, lbfgs_minimize
from ..core.runtime import jax_x64
from ..model.laws import FineGrainedMoE, JointMoE, get_preset
from ..model.moe import fine_grained_loss, joint_loss, log_effective_experts
from .runs import PAD, Table, replicate_weights

LN10 = math.log(10.0)
STARTS = 256  # seeded starts of the full fit, per group
REPLICATE_STARTS = 8  # a bootstrap replicate's starts: the full fit's best distinct end points
FORM_MAX_ITER = 1000  # the full fit: the joint law from exact runs takes ~900 steps (centred)
#: a bootstrap replicate restarts near its optimum: 300 steps. Measured (benchmarks/bench_forms.py, the joint law,
#: 175 noisy runs, 200 replicates x 8 starts): 1000 steps took 78 s, 300 take 22 s; vmapped L-BFGS runs every lane
#: until the slowest stops, and a flat direction (E_max) keeps some lanes going; objectives as low as SciPy's
REPLICATE_MAX_ITER = 300
FORM_GRAD_TOL = 1e-9  # ||grad|| of the summed Huber objective (its scale: delta x |residual| per run ~ 1e-5)
CONVERGED_GRAD = 1e-6  # the best start's ||grad|| below this: converged (a few runs' worth of 1e-3 of delta)
VARIABLES = {"n": "n_col", "d": "d_col", "e": "e_col", "g": "g_col"}  # a form's variable -> the flag of its column


@dataclass(frozen=True)
class Form:
    """A law form: its variables (keys of ``VARIABLES``), its fitting coordinates and the box its
    starts are drawn from, the parameters it reports, and the law kind a fitted file is
    (``--law-out``; None: the form cannot drive a plan)."""

    name: str
    formula: str
    variables: tuple[str, ...]
    coords: tuple[str, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    params: tuple[str, ...]
    params_meaning: str
    law_kind: str | None
    source: str


FORMS = {f.name: f for f in (
    Form("gadre2024", "L = E + A/N^x + B/D^x (one exponent: over-training)", ("n", "d"),
         ("log_E", "log_A", "log_B", "x"), (-1.0, -4.0, -4.0, 0.05), (1.0, 1.5, 1.5, 0.8),
         ("E", "A", "B", "alpha", "beta"), "parameters", "parametric",
         "Gadre et al. 2024 (arXiv 2403.08540), eq. 4 in (N, D) form: alpha = beta"),
    Form("krajewski2024-moe", "L = c + (g/G^gamma + a)/N^alpha + b/D^beta", ("n", "d", "g"),
         ("log_a", "alpha", "log_b", "beta", "log_g", "gamma", "log_c"),
         (-4.0, 0.05, -4.0, 0.05, -5.0, 0.0, -2.0), (1.5, 0.5, 1.5, 0.5, 1.5, 1.5, 1.0),
         ("a", "alpha", "b", "beta", "g", "gamma", "c"), "total non-embedding parameters", "moe-fine-grained",
         "Krajewski et al. 2024 (arXiv 2402.07871), eq. 9"),
    Form("ludziejewski2025-moe",
         "L = a Ê^delta N^(alpha + gamma ln Ê) + b Ê^omega D^(beta + zeta ln Ê) + c", ("n", "d", "e"),
         ("log_a", "alpha", "delta", "gamma", "log_b", "beta", "omega", "zeta", "log_e_start", "log_e_gap", "log_c"),
         (-4.0, -0.5, -1.0, -0.05, -4.0, -0.5, -1.5, -0.05, 0.0, 2.0, -1.0),
         (1.5, -0.05, 1.0, 0.05, 1.5, -0.05, 1.0, 0.05, 2.0, 7.0, 1.0),
         ("a", "alpha", "delta", "gamma", "b", "beta", "omega", "zeta", "e_start", "e_max", "c"),
         "active parameters including embeddings", "moe-joint",
         "Ludziejewski et al. 2025 (arXiv 2502.05172), eq. 1/6"),
    Form("clark2022-routing", "log10 L = a log10 N + b log10 Ê + c log10 N log10 Ê + d", ("n", "e"),
         ("a", "b", "c", "d", "log_e_start", "log_e_gap"), (-0.2, -0.3, -0.05, 0.0, 0.0, 3.0),
         (0.0, 0.3, 0.05, 1.0, 2.0, 7.0), ("a", "b", "c", "d", "e_start", "e_max"),
         "parameters one token sees (Clark et al.'s dense_parameter_count)", None,
         "Clark et al. 2022 (arXiv 2202.01169), eq. 1 with the saturating transform of eq. 5"),
)}
FORM_NAMES = ("chinchilla", *FORMS)  # what --form accepts; chinchilla is --approach's fit


def _e_range(theta, i: int):
    """(E_start, E_max) from the coordinates (log E_start, log(E_max − E_start)) at ``i``."""
    e_start = jnp.exp(theta[i])
    return e_start, e_start + jnp.exp(theta[i + 1])


def log_loss(name: str, theta, x):
    """log L̂ of form ``name`` at coordinates ``theta`` for variables ``x`` ([k, n] natural logs,
    in the form's ``variables`` order)."""
    if name == "gadre2024":
        le, la, lb, ex = theta
        return jnp.logaddexp(jnp.logaddexp(la - ex * x[0], lb - ex * x[1]), le)
    if name == "krajewski2024-moe":
        la, al, lb, be, lg, ga, lc = theta
        law = FineGrainedMoE(jnp.exp(la), al, jnp.exp(lb), be, jnp.exp(lg), ga, jnp.exp(lc), 64.0, 6.0, 14.0)
        return jnp.log(fine_grained_loss(law, x[0], x[1], jnp.exp(x[2])))
    if name == "ludziejewski2025-moe":
        e_start, e_max = _e_range(theta, 8)
        law = JointMoE(theta[0], theta[1], theta[2], theta[3], theta[4], theta[5], theta[6], theta[7], e_start, e_max,
                       jnp.exp(theta[10]))
        return jnp.log(joint_loss(law, x[0], x[1], jnp.exp(x[2])))
    if name == "clark2022-routing":
        a, b, c, d = theta[:4]
        l10n, l10e = x[0] / LN10, log_effective_experts(jnp.exp(x[1]), *_e_range(theta, 4)) / LN10
        return LN10 * (a * l10n + b * l10e + c * l10n * l10e + d)
    raise ParameterError("form", f"unknown form {name!r}; known: {', '.join(FORM_NAMES)}")


def uncentred(name: str, theta: np.ndarray, m_n: float, m_d: float) -> np.ndarray:
    """Coordinates of the law in N and D from those fitted in N/N̄ and D/D̄ (``m_n`` = ln N̄,
    ``m_d`` = ln D̄). Centring makes each scale the term's size at the runs' mean (order one) and
    takes the correlation of a scale with its exponent out of the fit (ln N ~ 20: uncentred, the
    joint law's fit took over 1000 L-BFGS steps). Each form is the same formula in the centred
    variables; only the scales (and the terms the cross exponents move) shift:
    gadre/krajewski: log A = log A' + alpha m (g too); joint: log a = log a' − alpha m_n, delta =
    delta' − gamma m_n (b, omega with m_d); clark (log10): b = b' − c m, d = d' − a m."""
    t = np.array(theta, np.float64)
    if name == "gadre2024":
        t[1] += t[3] * m_n
        t[2] += t[3] * m_d
    elif name == "krajewski2024-moe":
        t[0] += t[1] * m_n
        t[4] += t[1] * m_n
        t[2] += t[3] * m_d
    elif name == "ludziejewski2025-moe":
        t[0] -= t[1] * m_n
        t[2] -= t[3] * m_n
        t[4] -= t[5] * m_d
        t[6] -= t[7] * m_d
    elif name == "clark2022-routing":
        m = m_n / LN10
        t[1] -= t[2] * m
        t[3] -= t[0] * m
    return t


def reported(name: str, theta: np.ndarray) -> dict[str, float]:
    """The form's parameters as published (scales, E_start and E_max) from its coordinates in N
    and D (``uncentred``)."""
    f = FORMS[name]
    t = dict(zip(f.coords, np.asarray(theta, np.float64).tolist()))
    out = {}
    for p in f.params:
        if p == "e_max":
            out[p] = math.exp(t["log_e_start"]) + math.exp(t["log_e_gap"])
        elif name == "gadre2024" and p in ("alpha", "beta"):
            out[p] = t["x"]
        elif f"log_{p}" in t:
            out[p] = math.exp(t[f"log_{p}"])
        else:
            out[p] = t[p]
    return out


def starts(name: str, count: int = STARTS, seed: int = 0) -> np.ndarray:
    """[count, P] starts drawn uniformly in the form's box (seeded: the same every run)."""
    f = FORMS[name]
    return np.random.default_rng(seed).uniform(f.low, f.high, size=(count, len(f.coords)))


#: the routing form's variable projection: a grid of (log E_start, log(E_max − E_start)) over its
#: box, and IRLS steps of the Huber regression for (a, b, c, d) at each grid point
ROUTING_VP_GRID = 33
ROUTING_IRLS_STEPS = 60


def _routing_design(phi, x):
    """[n, 4] design of the routing form in natural log loss at (log E_start, log gap) ``phi``:
    ln L = ln 10 (a l10N + b l10Ê + c l10N l10Ê + d), linear in (a, b, c, d)."""
    l10n, l10e = x[0] / LN10, log_effective_experts(jnp.exp(x[1]), *_e_range(phi, 0)) / LN10
    return LN10 * jnp.stack([l10n, l10e, l10n * l10e, jnp.ones_like(l10n)], axis=-1)


def _routing_projection(phi, x, log_l, weights, delta):
    """Variable projection of the routing form: at fixed (E_start, E_max) the Huber regression
    of ln L on the design is convex in (a, b, c, d); IRLS (weights min(1, delta/|r|), a
    majorise-minimise scheme whose objective never rises) from the weighted least-squares fit.
    Returns (a, b, c, d) and the Huber objective there."""
    design = _routing_design(phi, x)

    def solve(u):
        xt = design.T * u
        return jnp.linalg.solve(xt @ design + 1e-12 * jnp.eye(4), xt @ log_l)

    def step(theta, _):
        r = design @ theta - log_l
        return solve(weights * jnp.minimum(1.0, delta / jnp.maximum(jnp.abs(r), 1e-300))), None

    theta, _ = jax.lax.scan(step, solve(weights), None, length=ROUTING_IRLS_STEPS)
    return theta, jnp.sum(weights * huber(design @ theta - log_l, delta))


@jax.jit
def _routing_profile(phis, x, log_l, weights, delta):
    """The projected objective and (a, b, c, d) at every grid point ``phis`` [G, 2] of every
    problem (x [B, 2, n], log_l, weights [B, n])."""
    per_point = jax.vmap(_routing_projection, in_axes=(0, None, None, None, None))
    return jax.vmap(per_point, in_axes=(None, 0, 0, 0, None))(phis, x, log_l, weights, delta)


def routing_starts(x, log_l, weights, delta: float, count: int = REPLICATE_STARTS) -> np.ndarray:
    """[B, count, 6] starts of the routing form by variable projection: (a, b, c, d) projected
    out by IRLS at every point of a ``ROUTING_VP_GRID`` x ``ROUTING_VP_GRID`` grid over the form's
    (log E_start, log gap) box, the ``count`` best points per problem (with their linear
    coefficients)."""
    f = FORMS["clark2022-routing"]
    axes = [np.linspace(f.low[i], f.high[i], ROUTING_VP_GRID) for i in (4, 5)]
    phis = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 2)
    lin, obj = jax.device_get(_routing_profile(jnp.asarray(phis), jnp.asarray(x), jnp.asarray(log_l),
                                               jnp.asarray(weights), delta))
    obj = np.where(np.isfinite(obj), obj, np.inf)
    best = np.argsort(obj, axis=1)[:, :count]
    rows = np.arange(len(best))[:, None]
    return np.concatenate([lin[rows, best], np.broadcast_to(phis[best], (*best.shape, 2))], axis=-1)


@partial(jax.jit, static_argnames=("name", "max_iter"))
def _fit_batch(name: str, theta0, x, log_l, weights, delta, max_iter: int = FORM_MAX_ITER):
    """Every (problem, start): theta0 [B, S, P], x [B, k, n], log_l [B, n], weights [B, n] ->
    L-BFGS end points, objectives, gradient norms and steps, each [B, S(, P)]."""
    def one(th, xb, lb, wb):
        objective = lambda t: jnp.sum(wb * huber(log_loss(name, t, xb) - lb, delta))  # noqa: E731
        return lbfgs_minimize(th, objective, max_iter, FORM_GRAD_TOL)

    per_problem = jax.vmap(one, in_axes=(0, None, None, None))
    return jax.vmap(per_problem)(theta0, x, log_l, weights)


def centres(table: Table) -> tuple[float, float]:
    """(ln N̄, ln D̄): the mean log size and tokens of the runs (0 for a variable a form lacks)."""
    return tuple(float(np.mean(np.log(table.values[v]))) if v in table.values else 0.0 for v in ("n", "d"))


def centred_x(name: str, table: Table) -> np.ndarray:
    """[k, n] natural logs of the form's variables, N and D divided by their geometric means."""
    m = dict(zip(("n", "d"), centres(table)))
    return np.stack([np.log(table.values[v]) - m.get(v, 0.0) for v in FORMS[name].variables])


def _stack(name: str, tables: list[Table], reps: list[np.ndarray]):
    """(x [B, k, n_max], log L [B, n_max], weights [B, n_max]) over every table's replicates,
    centred (``centred_x``) and padded to a multiple of PAD with weight 0."""
    n_max = -(-max(len(t.log_l) for t in tables) // PAD) * PAD
    xs, ls, ws = [], [], []
    for t, w in zip(tables, reps):
        n = len(t.log_l)
        x = np.pad(centred_x(name, t), ((0, 0), (0, n_max - n)), mode="edge")
        for row in w:
            xs.append(x)
            ls.append(np.pad(t.log_l, (0, n_max - n), mode="edge"))
            ws.append(np.pad(row, (0, n_max - n)))
    return np.stack(xs), np.stack(ls), np.stack(ws)


def _best(values: np.ndarray, grads: np.ndarray):
    """Per problem: the index of the lowest finite objective (NaN/inf never win)."""
    v = np.where(np.isfinite(values) & np.isfinite(grads), values, np.inf)
    return np.argmin(v, axis=-1), v


def fit_form(name: str, tables: dict[str, Table], delta: float = 1e-3, bootstrap: int = 0,
             seed: int = 0, n_starts: int = STARTS) -> dict[str, dict]:
    """Fit form ``name`` to every group's runs (``runs.read_table``), with ``bootstrap``
    replicates each: one record per group (``params``, fit statistics, convergence, and the
    replicates' 95 % intervals)."""
    f = FORMS[name]
    keys = list(tables)
    tabs = [tables[k] for k in keys]
    s0 = starts(name, n_starts)
    with jax_x64():
        x, ll, w = _stack(name, tabs, [np.ones((1, len(t.log_l))) for t in tabs])
        if name == "clark2022-routing":  # linear in (a, b, c, d): project them out, search the other two on a grid
            theta0 = routing_starts(x, ll, w, delta)
            s0 = theta0[0]
        else:
            theta0 = np.broadcast_to(s0, (len(tabs), *s0.shape))
        ends, vals, grads, steps = jax.device_get(_fit_batch(name, jnp.asarray(theta0), jnp.asarray(x),
                                                             jnp.asarray(ll), jnp.asarray(w), delta))
        best, v = _best(vals, grads)
        boot = None
        if bootstrap:
            reps = [replicate_weights(len(t.log_l), bootstrap, seed)[1:] for t in tabs]
            rx, rl, rw = _stack(name, tabs, reps)
            top = [ends[i][np.argsort(v[i])[:REPLICATE_STARTS]] for i in range(len(tabs))]
            r0 = np.concatenate([np.broadcast_to(top[i], (bootstrap, *top[i].shape)) for i in range(len(tabs))])
            boot = jax.device_get(_fit_batch(name, jnp.asarray(r0), jnp.asarray(rx), jnp.asarray(rl), jnp.asarray(rw),
                                             delta, REPLICATE_MAX_ITER))
    out = {}
    for i, (key, t) in enumerate(zip(keys, tabs)):
        b = best[i]
        m = centres(t)
        n = len(t.log_l)
        with jax_x64():
            pred = np.asarray(log_loss(name, jnp.asarray(ends[i, b]), jnp.asarray(centred_x(name, t))))
        theta = uncentred(name, ends[i, b], *m)
        near = np.abs(v[i] - v[i, b]) <= 1e-9 * max(1.0, abs(v[i, b]))
        rec = {"form": name, "formula": f.formula, "params": reported(name, theta), "params_meaning": f.params_meaning,
               "theta": theta.tolist(), "coords": list(f.coords), "objective": float(vals[i, b]),
               "rmse_log_loss": float(np.sqrt(np.mean((pred - t.log_l) ** 2))), "n_runs": n, "delta": delta,
               "converged": bool(grads[i, b] < CONVERGED_GRAD), "grad_norm": float(grads[i, b]),
               "steps": int(steps[i, b]), "starts": len(s0), "starts_at_best_fraction": float(near.mean()),
               "method": (f"Huber (delta {delta:g}) on log loss; (a, b, c, d) projected out by IRLS on a "
                          f"{ROUTING_VP_GRID}x{ROUTING_VP_GRID} grid of (E_start, E_max), L-BFGS from its "
                          f"{len(s0)} best points, float64" if name == "clark2022-routing" else
                          f"Huber (delta {delta:g}) on log loss, L-BFGS from {len(s0)} seeded starts, float64"),
               "range": {v: [float(t.values[v].min()), float(t.values[v].max())] for v in f.variables},
               "reference": f.source, "warnings": []}
        if not rec["converged"]:
            rec["warnings"].append(f"the best start stopped with ||grad|| = {grads[i, b]:.2g} (>= {CONVERGED_GRAD:g}) "
                                   f"after {int(steps[i, b])} steps: not converged")
        if boot is not None:
            sl = slice(i * bootstrap, (i + 1) * bootstrap)
            bb, bv = _best(boot[1][sl], boot[2][sl])
            draws = np.array([[reported(name, uncentred(name, boot[0][sl][r, bb[r]], *m))[p] for p in f.params]
                              for r in range(bootstrap)])
            ok = np.isfinite(bv[np.arange(bootstrap), bb])
            conv = float(np.mean(boot[2][sl][np.arange(bootstrap), bb] < CONVERGED_GRAD))
            if conv < 0.9:
                rec["warnings"].append(f"{1 - conv:.0%} of the bootstrap replicates stopped at {REPLICATE_MAX_ITER} "
                                       f"steps before ||grad|| < {CONVERGED_GRAD:g} (a flat direction of the form); "
                                       "their objectives are no higher than SciPy's (benchmarks/bench_forms.py), but "
                                       "read the intervals of weakly identified parameters with care")
            rec["bootstrap"] = {
                "replicates": bootstrap, "seed": seed, "starts_per_replicate": int(boot[0].shape[1]),
                "converged_fraction": conv,
                "ci95": {p: [float(np.percentile(draws[ok, j], 2.5)), float(np.percentile(draws[ok, j], 97.5))]
                         for j, p in enumerate(f.params)}}
        out[key] = rec
    return out


def law_mapping(record: dict) -> dict:
    """What a fitted form's law file holds beyond the record: a parametric form's E, A, B, alpha,
    beta at the top (``law_from_file`` reads them as today), an MoE form's ``kind`` and its
    preset's fixed constants (Krajewski et al.'s expansion rate and FLOPs constants)."""
    f = FORMS[record["form"]]
    if f.law_kind is None:
        raise ParameterError("law_out", f"{f.name} has no token count: it cannot drive a plan; nothing written")
    if f.law_kind == "parametric":
        return {k: record["params"][k] for k in ("E", "A", "B", "alpha", "beta")}
    fixed = {}
    if f.law_kind == "moe-fine-grained":
        p = get_preset("krajewski2024-moe").params
        fixed = {"expansion": float(p.expansion), "c_f": float(p.c_f), "c_r": float(p.c_r)}
    return {"kind": f.law_kind, "constants": {**record["params"], **fixed}}
