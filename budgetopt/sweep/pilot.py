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
from .choices import Problems, at_option, best_option, choose, chosen_values, option_axis, option_problems
from .kernel import candidate_loss, quantities, quantity_names, solve_options, solve_samples
from .sampling import active_cap, complete_draw, make_sampler, sample_indices
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
    axis = option_axis(scenario)

    @jax.jit
    def pilot():
        d = sampler(*sample_indices(0, p))
        law, b = complete_draw(scenario, d)
        if axis is None:
            return quantities(solve_samples(scenario, law, b), b, names, d.time), None
        problems = option_problems(scenario, law, b, d.option)
        per = solve_options(scenario, problems)  # every option's optimum: the candidates' grid per option
        a, chosen = choose(axis, per, problems)
        return quantities(a, b, names, d.time, chosen_values(axis, chosen, a.loss.dtype)), (per.log_n, per.converged)

    (vals, ok), per_option = pilot()
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
    if axis is not None:
        return _option_pilot(scenario, sampler, p, names, ranges, per_option)
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


def option_size_cap(scenario: Scenario, k: int) -> float:
    """The largest log-size every future allows at option ``k``: a fixed total-parameter cap
    of a [moe] sweep turned into active parameters at E_k; otherwise ``size_bounds``'."""
    cap = scenario.max_total_params
    if scenario.experts is not None:
        return float(active_cap(scenario, math.log(cap.a))[k, 0]) if cap is not None and cap.fixed else math.inf
    return size_bounds(scenario)[1]


def _option_pilot(scenario: Scenario, sampler, p: int, names, ranges: Ranges, per_option) -> Pilot:
    """A sweep with a discrete decision: candidates are rows (log N, option index), a grid of
    sizes per option around that option's pilot optima (``recommend.candidates`` shared among
    them, at least 8 each), then the best row's size refined at its option."""
    log_n, conv = (np.asarray(v, np.float64) for v in per_option)
    n_opt = len(option_axis(scenario).labels)
    log_n, conv = (np.broadcast_to(v, (n_opt,) + v.shape[1:]) for v in (log_n, conv))
    k = max(8, scenario.candidates // n_opt)
    rows = []
    for j in range(n_opt):
        xn = log_n[j][(conv[j] > 0) & np.isfinite(log_n[j])]
        if xn.size:
            rows += [(x, j) for x in size_grid(xn, 0.0, option_size_cap(scenario, j), k)]
    if not rows:
        return Pilot(names, ranges, np.zeros((0, 2)), {}, p, "no pilot sample converged: no candidate grid")
    grid = np.asarray(rows, np.float64)
    if not scenario.refine:
        return Pilot(names, ranges, grid, {"refined": False, "method": "none (recommend.refine = false)"}, p)
    problems = _pilot_inputs(scenario, sampler, p)

    @jax.jit
    def mean_losses(g):
        def one(row):
            q = at_option(problems, row[1].astype(jnp.int32))
            return jnp.mean(candidate_loss(q.law, q.budget, row[0])[0] * q.loss_scale)
        return jax.vmap(one)(g)

    best = int(np.nanargmin(np.asarray(mean_losses(jnp.asarray(grid)))))
    j = int(grid[best, 1])
    x, report = refine(scenario, sampler, p, grid[grid[:, 1] == j, 0], option=j, inputs=problems)
    return Pilot(names, ranges, np.vstack([grid, [x, j]]), report, p)


def _pilot_inputs(scenario: Scenario, sampler, p: int):
    """The pilot samples' (law, budget) in float64; with a discrete decision, every option's
    ``Problems`` in float64."""
    d = sampler(*sample_indices(0, p))
    law, b = complete_draw(scenario, d)
    f64 = lambda t: jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), t)  # noqa: E731
    if option_axis(scenario) is None:
        return f64((law, b))
    law, b, opt = f64((law, b, d.option))
    return f64(option_problems(scenario, law, b, opt))


def refine(scenario: Scenario, sampler, p: int, grid: np.ndarray, steps: int = REFINE_STEPS,
           option: int | None = None, inputs: tuple | Problems | None = None) -> tuple[float, dict]:
    """The best grid size refined by L-BFGS (optax) on the pilot's sample-average loss over
    x = log N, in float64 whatever the sweep's precision (the pilot is small, and the refined
    N must not inherit float32 noise). Returns (x, report); never worse than the best grid point.
    ``option``: the index of the option (expert count, format) at which the sizes are scored;
    ``inputs``: the pilot's float64 inputs when the caller has them (``_pilot_inputs``)."""
    inputs = inputs if inputs is not None else _pilot_inputs(scenario, sampler, p)
    if option is None:
        law, b = inputs
        scale = 1.0
    else:
        law, b, scale = at_option(inputs, option)

    def mean_loss(x):
        return jnp.mean(candidate_loss(law, b, x[0])[0] * scale)

    @jax.jit
    def run(grid):
        if option is None:
            opt_loss = solve_samples(scenario, law, b).loss
        else:
            opt_loss = best_option(solve_options(scenario, inputs))[0].loss
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
    if option is not None:
        axis = option_axis(scenario)
        report[axis.key] = axis.labels[option]
    return x, report
