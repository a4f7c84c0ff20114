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
from .kernel import candidate_loss, quantities, quantity_names, solve_samples
from .sampling import complete_draw, make_sampler, sample_indices
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


def make_pilot(scenario: Scenario, n: int, dtype) -> Pilot:
    """The pilot of a sweep of ``n`` samples computed in ``dtype``."""
    sampler = make_sampler(scenario, dtype)
    p = min(PILOT, n)
    names = quantity_names(scenario)

    @jax.jit
    def pilot():
        d = sampler(*sample_indices(0, p))
        law, b = complete_draw(scenario, d)
        return quantities(solve_samples(scenario, law, b), b, names, d.time)

    vals, ok = (np.asarray(v) for v in pilot())
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
    grid = np.linspace(np.quantile(xn, 0.005) - math.log(2), np.quantile(xn, 0.995) + math.log(2), scenario.candidates)
    if not scenario.refine:
        return Pilot(names, ranges, grid, {"refined": False, "method": "none (recommend.refine = false)"}, p)
    x, report = refine(scenario, sampler, p, grid)
    return Pilot(names, ranges, np.append(grid, x), report, p)


def refine(scenario: Scenario, sampler, p: int, grid: np.ndarray, steps: int = REFINE_STEPS) -> tuple[float, dict]:
    """The best grid size refined by L-BFGS (optax) on the pilot's sample-average loss over
    x = log N, in float64 whatever the sweep's precision (the pilot is small, and the refined
    N must not inherit float32 noise). Returns (x, report); never worse than the best grid point."""
    law, b = complete_draw(scenario, sampler(*sample_indices(0, p)))
    law, b = jax.tree_util.tree_map(lambda v: jnp.asarray(v, jnp.float64), (law, b))

    def mean_loss(x):
        return jnp.mean(candidate_loss(law, b, x[0]))

    @jax.jit
    def run(grid):
        opt_loss = solve_samples(scenario, law, b).loss
        grid_losses = jax.vmap(lambda x: mean_loss(x[None]))(grid)
        x0 = grid[jnp.argmin(grid_losses)][None]
        x, v_end, g_end, _ = lbfgs_minimize(x0, mean_loss, steps, 1e-12)
        return x0[0], jnp.min(grid_losses), x[0], v_end, g_end, jnp.mean(opt_loss)

    with jax.numpy_dtype_promotion("standard"):  # optax's L-BFGS mixes int32/int64 internally
        x0, v0, x, v, g, v_opt = (float(t) for t in run(jnp.asarray(grid, jnp.float64)))
    if not (math.isfinite(x) and v <= v0):
        x, v = x0, v0
    converged = abs(g) * (grid[1] - grid[0]) < 1e-6 * abs(v) + 1e-9 if len(grid) > 1 else True
    return x, {"refined": True, "method": "optax.lbfgs on the pilot's mean loss", "steps": steps, "pilot_samples": p,
               "start_params": math.exp(x0), "start_expected_loss": v0, "params": math.exp(x),
               "expected_loss": v, "grad": g, "converged": bool(converged), "pilot_optimal_loss": v_opt}
