"""Peer comparison: the `chinchilla` package on PyPI (the closest existing toolkit; optional,
`pip install chinchilla`) beside budgetopt on the same runs (the 240 Chinchilla points when
../shared/data has them): fit time and the optimum each finds, and compute allocation.

    python benchmarks/bench_peer.py [--values 3] [--record]

`chinchilla` fits with SciPy BFGS in longdouble from a product grid of starts over a
multiprocessing pool; with `--values 3` each of its 5 grid axes has 3 values (243 starts) and
its time is scaled to the 4500 starts budgetopt runs. Both minimise the same log-Huber
objective (delta = 1e-3; chinchilla averages, budgetopt sums, which does not move the optimum).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from functools import partial

import numpy as np
from bench_fit import load_runs
from common import machine, record

from budgetopt.core.runtime import jax_x64
from budgetopt.fit import approach3


def peer_fit(runs, values: int):
    from chinchilla import Chinchilla
    from chinchilla._metrics import log_huber

    n, d, loss = np.exp(runs.log_n), np.exp(runs.log_d), np.exp(runs.log_l)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "df.csv"), "w") as f:
            f.write("C,N,D,loss\n")
            for row in zip(6 * n * d, n, d, loss):
                f.write(",".join(f"{v:.17g}" for v in row) + "\n")
        grid = {"e": np.linspace(-1, 1, values), "a": np.linspace(0, 25, values), "b": np.linspace(0, 25, values),
                "alpha": np.linspace(0, 2, values), "beta": np.linspace(0, 2, values)}
        cc = Chinchilla(tmp, param_grid=grid, loss_fn=partial(log_huber, delta=1e-3), log_level=40)
        t0 = time.perf_counter()
        cc.fit(parallel=True)
        secs = time.perf_counter() - t0
        p = {k: float(getattr(cc, k)) for k in ("E", "A", "B", "alpha", "beta")}
    return p, secs, values**5


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--values", type=int, default=3, help="grid values per axis for chinchilla (5 axes)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    runs, what = load_runs()
    approach3.fit_approach3(runs)  # compile
    t0 = time.perf_counter()
    ours = approach3.fit_approach3(runs)
    t_ours = time.perf_counter() - t0
    try:
        import chinchilla  # noqa: F401
    except ImportError:  # the peer is optional: still time our side, and say what is missing
        fmt = ", ".join(f"{k} {ours[k]:.4g}" for k in ("E", "A", "B", "alpha", "beta"))
        print(f"| fit on {what} | starts | seconds | optimum |\n|---|---|---|---|\n"
              f"| budgetopt `fit` | 4500 | {t_ours:.1f} | {fmt} ({ours['objective']:.10g}) |\n\n"
              "the peer package is not installed (pip install chinchilla); nothing compared")
        return {"runs": what, "budgetopt_fit_s": t_ours, "chinchilla": None}
    peer, t_peer, starts = peer_fit(runs, args.values)
    t_peer_4500 = t_peer * 4500 / starts
    th = np.array([math.log(peer["A"]), math.log(peer["B"]), math.log(peer["E"]), peer["alpha"], peer["beta"]])
    import jax.numpy as jnp

    ones = jnp.ones(len(runs.log_l))
    with jax_x64():
        peer_obj = float(approach3.objective(jnp.asarray(th), *(jnp.asarray(v) for v in runs[:3]), ones, 1e-3))
    # allocation: the same closed form on both sides, at 1e6 budgets
    from chinchilla import Chinchilla

    from budgetopt.model.allocation import Budget, allocate
    from budgetopt.model.laws import Parametric, to_array_law

    c = np.logspace(18, 27, 1_000_000)
    t0 = time.perf_counter()
    n_peer, _ = Chinchilla.allocate_compute(c, ours)
    t_alloc_peer = time.perf_counter() - t0
    law = to_array_law(Parametric(math.log(ours["A"]), math.log(ours["B"]), math.log(ours["E"]), ours["alpha"], ours["beta"]))
    allocate(law, Budget(jnp.log(jnp.asarray(c))), method="closed")
    t0 = time.perf_counter()
    a = allocate(law, Budget(jnp.log(jnp.asarray(c))), method="closed")
    n_ours = np.exp(np.asarray(a.log_n))
    t_alloc_ours = time.perf_counter() - t0
    alloc_diff = float(np.max(np.abs(n_ours / n_peer - 1)))
    data = {"runs": what, "budgetopt_fit_s": t_ours, "chinchilla_fit_s": t_peer, "chinchilla_starts": starts,
            "chinchilla_fit_s_scaled_to_4500": t_peer_4500, "budgetopt": {k: ours[k] for k in ("E", "A", "B", "alpha", "beta")},
            "chinchilla": peer, "budgetopt_objective": ours["objective"], "chinchilla_objective_same_measure": peer_obj,
            "allocation_max_rel_diff_N": alloc_diff, "allocation_s": {"budgetopt": t_alloc_ours, "chinchilla": t_alloc_peer},
            "machine": machine()}
    fmt = lambda p: ", ".join(f"{k} {p[k]:.4g}" for k in ("E", "A", "B", "alpha", "beta"))  # noqa: E731
    md = (f"| fit on {what} | starts | seconds | optimum (Huber objective, summed) |\n|---|---|---|---|\n"
          f"| budgetopt `fit` | 4500 | {t_ours:.1f} | {fmt(ours)} ({ours['objective']:.10g}) |\n"
          f"| `chinchilla` 0.2 `Chinchilla.fit` (BFGS, longdouble, process pool) | {starts} | {t_peer:.1f} "
          f"(≈ {t_peer_4500:.0f} for 4500) | {fmt(peer)} ({peer_obj:.10g}) |\n\n"
          f"Allocation of 1e6 budgets with the fitted law: identical closed form (max |ΔN|/N = {alloc_diff:.1e}); "
          f"budgetopt {t_alloc_ours * 1e3:.0f} ms, chinchilla {t_alloc_peer * 1e3:.0f} ms.")
    print(md)
    if args.record:
        record("Peer comparison: the chinchilla package", md, data)
    return data


if __name__ == "__main__":
    main()
