"""The pilot: what a sweep fixes before its main pass, from its first samples.

The first min(4096, n) samples by global index — the same ones for every chunking, shard,
device count and process — fix the histogram ranges of each quantity and the grid of
candidate model sizes; the best grid size is then refined by optax L-BFGS on the pilot's
sample-average loss (unless the scenario says ``recommend.refine = false``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..core.lbfgs import lbfgs_minimize
from ..model.laws import has_loss
from .accumulators import Ranges
from .kernel import at_expert, best_expert, candidate_loss, quantities, quantity_names, solve_experts, solve_samples
from .sampling import active_cap_shift, complete_draw, make_sampler, sample_indices
from .scenario import Scenario

PILOT = 4096
REFINE_STEPS = 40


class Pilot(NamedTuple):
    """Fixed before the main pass. ``names``: the quantities summarised; ``ranges``: histogram
    layout per quantity, in the compute dtype so host and device agree on every bin edge;
    ``candidates``: log N of the grid, then the refined size when there is one; ``refinement``:
    what the refinement did; ``size``: pilot samples; ``note``: why there is no candidate grid,
    if there is none."""

    names: tuple[str, ...]
    ranges: Ranges
    candidates: np.ndarray
    refinement: dict
    size: int
    note: str | None = None

    @property
    def refined(self) -> bool:
        return bool(self.refinement.get("refined"))


def _expand(vmin: float, vmax: float) -> tuple[float, float]:
    """The pilot's range widened by half its span each side (a point range gets a tiny span)."""
    span = vmax - vmin
    if not span > 0:
        span = max(abs(vmin) * 1e-6, 1e-6)
    return vmin - 0.5 * span, vmax + 0.5 * span


def size_bounds(scenario: Scenario) -> tuple[float, float]:
    """The log-sizes every future allows: at least one parameter, at most a fixed
    ``constraints.max_params`` (an uncertain cap is the samples' to judge). Candidates stay
    inside, so the recommendation always names a size the scenario permits."""
    cap = scenario.max_params
    return 0.0, math.log(cap.a) if cap is not None and cap.fixed else math.inf


def make_pilot(scenario: Scenario, n: int, dtype) -> Pilot:
    """The pilot of a sweep of ``n`` samples computed in ``dtype``."""
    sampler = make_sampler(scenario, dtype)
    p = min(PILOT, n)
    names = quantity_names(scenario)

    @jax.jit
    def pilot():
        d = sampler(*sample_indices(0, p))
        law, b = complete_draw(scenario, d)
        if scenario.experts is None:
            return quantities(solve_samples(scenario, law, b), b, names, d.time), None
        per = solve_experts(scenario, law, b)  # every expert count's optimum: the candidates' grid per E
        a, k = best_expert(per)
        log_e = jnp.log(jnp.asarray(scenario.experts, a.loss.dtype))[k]
        return quantities(a, b, names, d.time, log_e), (per.log_n, per.converged)

    (vals, ok), per_expert = pilot()
    vals, ok = np.asarray(vals), np.asarray(ok)
    vals = vals.astype(np.float64)
    lo, hi, centre = [], [], []
    for q in range(len(names)):
        v = vals[q][ok[q]]
        a, b = _expand(float(v.min()), float(v.max())) if v.size else (0.0, 1.0)
        lo.append(a)
        hi.append(b)
        centre.append(float(np.median(v)) if v.size else 0.0)
    np_dtype = np.dtype(jnp.dtype(dtype).name)
    ranges = Ranges(*(np.asarray(x, np.float64).astype(np_dtype) for x in (lo, hi, centre)))
    if not has_loss(scenario.law.params) or scenario.candidates == 0:
        return Pilot(names, ranges, np.zeros(0), {}, p)
    xn = vals[0][ok[0]]
    if xn.size == 0:
        return Pilot(names, ranges, np.zeros(0), {}, p, "no pilot sample converged: no candidate grid")
    if scenario.experts is not None:
        return _expert_pilot(scenario, sampler, p, names, ranges, per_expert)
    grid = size_grid(xn, *size_bounds(scenario), scenario.candidates)
    if not scenario.refine:
        return Pilot(names, ranges, grid, {"refined": False, "method": "none (recommend.refine = false)"}, p)
    x, report = refine(scenario, sampler, p, grid)
    return Pilot(names, ranges, np.append(grid, x), report, p)


def size_grid(xn: np.ndarray, lo_cap: float, hi_cap: float, k: int) -> np.ndarray:
    """``k`` log sizes spanning the pilot optima ``xn`` (their 0.5-99.5 % range, a factor 2 wider
    each side) within the permitted [lo_cap, hi_cap]."""
    lo_x = min(max(np.quantile(xn, 0.005) - math.log(2), lo_cap), hi_cap)
    return np.linspace(lo_x, max(min(np.quantile(xn, 0.995) + math.log(2), hi_cap), lo_x), k)


def _expert_pilot(scenario: Scenario, sampler, p: int, names, ranges: Ranges, per_expert) -> Pilot:
    """A [moe] sweep's candidates: rows (log N_act, expert-count index), a grid of sizes per
    expert count around that count's pilot optima (``recommend.candidates`` shared among them,
    at least 8 each), then the best row's size refined at its expert count."""
    log_n, conv = (np.asarray(v, np.float64) for v in per_expert)
    cap = scenario.max_total_params
    shifts = active_cap_shift(scenario)[:, 0]
    k = max(8, scenario.candidates // len(scenario.experts))
    rows = []
    for j in range(len(scenario.experts)):
        xn = log_n[j][(conv[j] > 0) & np.isfinite(log_n[j])]
        if xn.size:
            hi = math.log(cap.a) + shifts[j] if cap is not None and cap.fixed else math.inf
            rows += [(x, j) for x in size_grid(xn, 0.0, hi, k)]
    if not rows:
        return Pilot(names, ranges, np.zeros((0, 2)), {}, p, "no pilot sample converged: no candidate grid")
    grid = np.asarray(rows, np.float64)
    if not scenario.refine:
        return Pilot(names, ranges, grid, {"refined": False, "method": "none (recommend.refine = false)"}, p)
    law, b = _pilot_inputs(scenario, sampler, p)

    @jax.jit
    def mean_losses(g):
        def one(row):
            law_e, b_e = at_expert(scenario, law, b, row[1].astype(jnp.int32))
            return jnp.mean(candidate_loss(law_e, b_e, row[0])[0])
        return jax.vmap(one)(g)

    best = int(np.nanargmin(np.asarray(mean_losses(jnp.asarray(grid)))))
    j = int(grid[best, 1])
    x, report = refine(scenario, sampler, p, grid[grid[:, 1] == j, 0], expert=j, inputs=(law, b))
    return Pilot(names, ranges, np.vstack([grid, [x, j]]), report, p)


def _pilot_inputs(scenario: Scenario, sampler, p: int):
    """The pilot samples' (law, budget) in float64."""
    law, b = complete_draw(scenario, sampler(*sample_indices(0, p)))
    return jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), (law, b))


def refine(scenario: Scenario, sampler, p: int, grid: np.ndarray, steps: int = REFINE_STEPS,
           expert: int | None = None, inputs: tuple | None = None) -> tuple[float, dict]:
    """The best grid size refined by L-BFGS (optax) on the pilot's sample-average loss over
    x = log N, in float64 whatever the sweep's precision (the pilot is small, and the refined
    N must not inherit float32 noise). Returns (x, report); never worse than the best grid point.
    ``expert``: a [moe] sweep's expert-count index, at which the sizes are scored; ``inputs``:
    the pilot's (law, budget) in float64 when the caller has them (``_pilot_inputs``)."""
    law_all, b_all = inputs if inputs is not None else _pilot_inputs(scenario, sampler, p)
    law, b = (law_all, b_all) if expert is None else at_expert(scenario, law_all, b_all, expert)

    def mean_loss(x):
        return jnp.mean(candidate_loss(law, b, x[0])[0])

    @jax.jit
    def run(grid):
        opt_loss = solve_samples(scenario, law_all, b_all).loss
        grid_losses = jax.vmap(lambda x: mean_loss(x[None]))(grid)
        x0 = grid[jnp.argmin(grid_losses)][None]
        v0 = jnp.min(grid_losses)
        x, _, g_end, _ = lbfgs_minimize(x0, mean_loss, steps, 1e-12)
        x = jnp.clip(x, grid[0], grid[-1])  # the sizes the scenario permits (``size_bounds``)
        v = mean_loss(x)
        better = jnp.isfinite(v) & (v <= v0)  # never worse than the best grid point
        x, v = jnp.where(better, x, x0), jnp.where(better, v, v0)
        # a minimum at a kink (a cap starting to bind) or at a bound has a gradient that is not
        # zero: certify it by its neighbours instead, 1e-6 in log N either side within the bounds
        sides = jnp.stack([mean_loss(jnp.clip(x + d, grid[0], grid[-1])) for d in (-1e-6, 1e-6)])
        return x0[0], v0, x[0], v, g_end, jnp.mean(opt_loss), jnp.all(v <= sides * (1 + 1e-12))

    with jax.numpy_dtype_promotion("standard"):  # optax's L-BFGS mixes int32/int64 internally
        x0, v0, x, v, g, v_opt, local_min = (float(t) for t in run(jnp.asarray(grid, jnp.float64)))
    step = grid[1] - grid[0] if len(grid) > 1 else 0.0
    converged = abs(g) * step < 1e-6 * abs(v) + 1e-9 or bool(local_min) or step == 0.0
    report = {"refined": True, "method": "optax.lbfgs on the pilot's mean loss", "steps": steps, "pilot_samples": p,
              "start_params": math.exp(x0), "start_expected_loss": v0, "params": math.exp(x),
              "expected_loss": v, "grad": g, "converged": bool(converged), "pilot_optimal_loss": v_opt}
    if expert is not None:
        report["experts"] = scenario.experts[expert]
    return x, report
