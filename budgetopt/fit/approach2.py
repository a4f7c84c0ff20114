"""Approach 2 (``fit --approach 2``; Hoffmann et al. 2022): a parabola of loss in log N per isoFLOP curve, its minima
regressed on the budget: N_opt = k_N·C^a, D_opt = k_D·C^b.

Runs are grouped into curves by the budget the file gives when it gives one (real files state
a nominal budget that differs from 6·N·D by up to 35 %, and grouping by 6·N·D splits one curve
into several), else by 6·N·D; within ``tolerance`` (relative) of the curve's first budget. The
tokens at a curve's minimum follow the curve's own log D-log N line, so a nominal budget does
not bias D_opt. Each curve that cannot give a minimum is listed with the reason: fewer than 3
runs, no interior minimum (the parabola opens downwards or its vertex lies outside the sampled
sizes), and a minimum at the edge of the sampled range is flagged (trusted, but the curve does
not bracket it well).

Units: N parameters, D tokens, C FLOPs, L nats per token.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..core.errors import ParameterError
from ..core.units import TRAIN_FLOPS_PER_PARAM_TOKEN, require_in
from .runs import DEFAULT_TARGET, Runs
from .vpnls import solve3

MIN_CURVE_RUNS = 3
RATIO_SPREAD_WARN = 1.10  # warn when 6ND / budget varies by more than this factor across curves


def check_tolerance(tolerance: float) -> float:
    """Approach 2's grouping tolerance: relative, in (0, 1)."""
    return require_in(tolerance, "tolerance", 0.0, 1.0, low_open=True, high_open=True, what="a relative tolerance")


def curves(runs: Runs, tolerance: float) -> list[np.ndarray]:
    """Indices of the runs of each isoFLOP curve, by increasing budget."""
    log_c = runs.log_budget
    order = np.argsort(log_c, kind="stable")
    groups, cur = [], [order[0]]
    for i in order[1:]:
        if log_c[i] - log_c[cur[0]] <= math.log1p(tolerance):
            cur.append(i)
        else:
            groups.append(cur)
            cur = [i]
    groups.append(cur)
    return [np.array(g) for g in groups]


def curve_minimum(runs: Runs, idx: np.ndarray) -> dict:
    """One curve's parabola and minimum, or the reason it has none (``problem``)."""
    budget = float(np.exp(np.mean(runs.log_budget[idx])))
    six_nd = np.exp(math.log(TRAIN_FLOPS_PER_PARAM_TOKEN) + runs.log_n[idx] + runs.log_d[idx])
    out = {"flops": budget, "runs": int(len(idx)), "six_nd_ratio": float(np.mean(six_nd) / budget)}
    if len(idx) < MIN_CURVE_RUNS:
        return {**out, "problem": f"fewer than {MIN_CURVE_RUNS} runs"}
    x, y = runs.log_n[idx], np.exp(runs.log_l[idx])
    if len(np.unique(x)) < MIN_CURVE_RUNS:
        return {**out, "problem": f"fewer than {MIN_CURVE_RUNS} distinct sizes"}
    p2, p1, p0 = np.polyfit(x - x.mean(), y, 2)  # centred: well conditioned whatever the sizes
    p1, p0 = p1 - 2 * p2 * x.mean(), p0 - p1 * x.mean() + p2 * x.mean() ** 2
    if not p2 > 0:
        return {**out, "problem": "no interior minimum (the parabola opens downwards)"}
    xm = -p1 / (2 * p2)
    if not x.min() <= xm <= x.max():
        return {**out, "problem": "no interior minimum (the vertex lies outside the sampled sizes)"}
    # tokens at the vertex from the curve's own log D - log N line (exact when 6ND = budget)
    slope, icpt = np.polyfit(x, runs.log_d[idx], 1) if np.ptp(x) > 0 else (-1.0, float(np.mean(runs.log_d[idx] + x)))
    best = int(np.argmin(y))
    out.update({"params_opt": float(np.exp(xm)), "tokens_opt": float(np.exp(icpt + slope * xm)),
                "loss_opt": float(p0 + p1 * xm + p2 * xm * xm), "parabola": [float(p2), float(p1), float(p0)],
                "edge_minimum": bool(x[best] in (x.min(), x.max()))})
    return out


def curve_residuals(runs: Runs, tolerance: float) -> np.ndarray:
    """Each run's log-loss residual (parabola - observed) on its own curve; NaN on the curves
    ``fit_approach2`` leaves out. The curves are re-formed and re-fitted exactly as the fit did."""
    out = np.full(len(runs.log_l), np.nan)
    for idx in curves(runs, tolerance):
        c = curve_minimum(runs, idx)
        if "problem" not in c:
            out[idx] = np.log(np.polyval(c["parabola"], runs.log_n[idx])) - runs.log_l[idx]
    return out


def fit_approach2(runs: Runs, tolerance: float = 0.05, target: float = DEFAULT_TARGET) -> dict:
    """Approach 2 on ``runs``: the curves' minima (``budgets``), the curves left out
    (``excluded``, with reasons), the exponents a, b and coefficients, and N_opt, D_opt at
    ``target`` FLOPs."""
    check_tolerance(tolerance)
    results = [curve_minimum(runs, g) for g in curves(runs, tolerance)]
    budgets = [r for r in results if "problem" not in r]
    excluded = [r for r in results if "problem" in r]
    if len(budgets) < 2:
        raise ParameterError("runs",
                             "Approach 2 needs at least 2 compute budgets with >= 3 runs and an interior minimum; "
                             f"found {len(budgets)}")
    lc = np.log([b["flops"] for b in budgets])
    a, ca = np.polyfit(lc, np.log([b["params_opt"] for b in budgets]), 1)
    b_, cb = np.polyfit(lc, np.log([b["tokens_opt"] for b in budgets]), 1)
    def listed(rs):
        at = [f"{r['flops']:.3g}" for r in rs]
        return ", ".join(at[:6]) + (f" and {len(at) - 6} more" if len(at) > 6 else "") + " FLOPs"

    edge = [b for b in budgets if b["edge_minimum"]]
    warnings = [f"{len(edge)} curve(s) have their lowest loss at the edge of the sampled sizes (the minimum is "
                f"extrapolated by the parabola): {listed(edge)}"] if edge else []
    for problem in dict.fromkeys(e["problem"] for e in excluded):
        warnings.append(f"{sum(e['problem'] == problem for e in excluded)} curve(s) left out, {problem}: "
                        f"{listed([e for e in excluded if e['problem'] == problem])}")
    ratios = [r["six_nd_ratio"] for r in results]
    if max(ratios) / min(ratios) > RATIO_SPREAD_WARN:
        warnings.append(f"6·N·D / budget varies from {min(ratios):.3g} to {max(ratios):.3g} across curves: the budgets "
                        "are nominal; exponents are fitted against the budget the file gives")
    n_t, d_t = float(np.exp(ca + a * math.log(target))), float(np.exp(cb + b_ * math.log(target)))
    return {"approach": "2", "a": float(a), "b": float(b_), "n_opt_coefficient": float(np.exp(ca)),
            "d_opt_coefficient": float(np.exp(cb)), "budgets": budgets, "excluded": excluded,
            "n_runs": len(runs.log_l), "grouped_by": "the file's budget" if runs.log_c is not None else "6·N·D",
            "tolerance": tolerance, "at": {"flops": target, "params": n_t, "tokens": d_t},
            f"tokens_per_param_at_{target:.3g}": d_t / n_t, "warnings": warnings}


class Approach2Fit(NamedTuple):
    """Approach 2 of one simulated ladder (leaves gain leading axes under vmap): log N_opt at the
    target, the exponent a, how many curves gave an interior minimum, and whether a forecast
    exists (>= 2 curves)."""

    log_n_target: Array
    a: Array
    curves_used: Array
    ok: Array


def fit_approach2_fixed(log_c: Float[Array, " b"], log_n: Float[Array, "b m"], loss: Float[Array, "b m"],
                        w: Float[Array, "b m"], curve: Array, log_target: Float[Array, ""]) -> Approach2Fit:
    """Approach 2 with a fixed shape, for vmapping over simulated ladders: ``fit_approach2``'s
    rules (a weighted parabola of L in log N per curve; kept when it opens upwards with its
    vertex inside the sampled sizes; log N_opt regressed on log C) on curves given as rows
    (``curve``: rows that are real curves with >= 3 distinct sizes; ``w`` 0 = padding). The
    budgets are exact here (6ND = C), so D_opt = C / 6 N_opt."""
    def one(x, y, wt):
        xm = jnp.sum(wt * x) / jnp.maximum(jnp.sum(wt), 1e-300)
        dx = x - xm  # centred: well conditioned whatever the sizes
        cols = jnp.stack([jnp.ones_like(dx), dx, dx * dx])  # [3, m]
        g = (cols * wt) @ cols.T
        c0, c1, c2 = solve3(g, (cols * wt) @ y)
        vertex = xm - c1 / (2.0 * c2)
        lo = jnp.min(jnp.where(wt > 0, x, jnp.inf))
        hi = jnp.max(jnp.where(wt > 0, x, -jnp.inf))
        kept = (c2 > 0) & (vertex >= lo) & (vertex <= hi) & jnp.isfinite(vertex)
        return jnp.where(kept, vertex, 0.0), kept

    vertex, kept = jax.vmap(one)(log_n, loss, w)
    kept = kept & curve
    v = kept.astype(log_c.dtype)
    k = jnp.sum(v)
    cm = jnp.sum(v * log_c) / jnp.maximum(k, 1.0)
    xm = jnp.sum(v * vertex) / jnp.maximum(k, 1.0)
    sxx = jnp.sum(v * (log_c - cm) ** 2)
    a = jnp.sum(v * (log_c - cm) * (vertex - xm)) / jnp.where(sxx > 0, sxx, 1.0)
    ok = (k >= 2) & (sxx > 0)
    return Approach2Fit(jnp.where(ok, xm + a * (log_target - cm), jnp.nan), a, k.astype(jnp.int32), ok)
