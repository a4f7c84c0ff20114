"""`budgetopt bench`: a quick (< 1 minute on CPU) measure of this machine — samples/s of the
parametric sweep and problems/s of the data-constrained solver on the current backend — and
the device list. The full side-by-side suite with baselines is benchmarks/run.py."""

from __future__ import annotations

import math
import time

import jax
import jax.numpy as jnp
import numpy as np


def _median_time(fn, repeats: int = 3) -> float:
    fn()  # warm-up / compile
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def quick(samples: float = 2_000_000, problems: float = 1 << 20) -> dict:
    """Rates on the current backend (float32), compile excluded: ``samples`` sweep samples
    and ``problems`` data-constrained solves per timed run (whole numbers, 1024 to 1e10)."""
    from ..core.errors import ParameterError
    from ..model.allocation import Budget, allocate
    from ..model.laws import data_constrained, get_preset, to_array_law
    from ..sweep import scenario as scn
    from ..sweep.driver import run

    for name, v in (("samples", samples), ("problems", problems)):
        if v != int(v) or not 1024 <= v <= 1e10:
            raise ParameterError(name, f"must be a whole number from 1024 to 1e10, got {v:g}")
    sweep_samples, solver_problems = int(samples), int(problems)
    scenario = scn.with_overrides(scn.example("h100-cluster"), candidates=0)
    t_sweep = _median_time(lambda: run(scenario, samples=sweep_samples))
    law = to_array_law(data_constrained(get_preset("muennighoff2023").params), jnp.float32)
    rng = np.random.default_rng(0)
    b = Budget(jnp.asarray(rng.uniform(math.log(1e19), math.log(1e26), solver_problems), jnp.float32),
               jnp.asarray(rng.uniform(math.log(1e9), math.log(1e14), solver_problems), jnp.float32))
    t_solve = _median_time(lambda: jax.block_until_ready(allocate(law, b)))
    return {"backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "device_kinds": sorted({getattr(d, "device_kind", "") for d in jax.devices()}),
            "jax_version": jax.__version__,
            "sweep_samples": sweep_samples, "sweep_seconds": t_sweep, "sweep_samples_per_s": sweep_samples / t_sweep,
            "solver_problems": solver_problems, "solver_seconds": t_solve,
            "solver_problems_per_s": solver_problems / t_solve}
