"""VPNLS, many ladders in one call: budgetopt's vmapped fit of G groups x (1 + R bootstrap
replicates) beside a SciPy loop doing the same fits (NNLS inside, a 40x40 grid then
Nelder-Mead outside, Open-Athena's recipe), in one run, on the same data (the shared Marin
ladders when ../shared/data has them, else synthetic ladders).

    python benchmarks/bench_vpnls.py [--groups 8] [--replicates 1000] [--scipy-fits 40] [--record]

The SciPy loop fits a subset of the same replicates and its time is scaled to all of them; the
exponents of the shared replicates are compared.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from common import machine, record, timeit

from budgetopt.core.runtime import jax_x64
from budgetopt.fit import vpnls
from budgetopt.fit.runs import Runs, padded, read_groups, replicate_weights

ROOT = Path(__file__).resolve().parent.parent
LADDERS = ROOT.parent / "shared" / "data" / "ladders" / "isoflops.csv"


def ladders(groups: int) -> tuple[list[Runs], str]:
    """``groups`` ladders: the shared Marin ladders repeated, else synthetic ones."""
    if LADDERS.exists():
        g = read_groups(LADDERS, c_col="budget", group=["experiment"])
        base = [r for k, r in g.items() if k.startswith("marin")]
        what = "the 3 Marin ladders (85-88 runs), repeated"
    else:
        rng = np.random.default_rng(0)
        base = []
        for _ in range(3):
            n = np.exp(rng.uniform(np.log(2e7), np.log(2e9), 88))
            d = np.exp(rng.uniform(np.log(1e9), np.log(1e11), 88))
            loss = (1.8 + 400 * n**-0.34 + 2000 * d**-0.37) * np.exp(0.01 * rng.normal(size=88))
            base.append(Runs(np.log(n), np.log(d), np.log(loss)))
        what = "3 synthetic ladders of 88 runs, repeated"
    return [base[i % len(base)] for i in range(groups)], what


def scipy_vpnls(log_n, log_d, loss, w):
    """One weighted VPNLS fit, Open-Athena's way (SciPy NNLS + a grid + Nelder-Mead)."""
    from scipy.optimize import minimize, nnls

    sw = np.sqrt(w)

    def rss(x):
        cols = np.column_stack([np.ones_like(loss), np.exp(-x[0] * log_n), np.exp(-x[1] * log_d)]) * sw[:, None]
        sc = np.linalg.norm(cols, axis=0) + 1e-300
        return nnls(cols / sc, loss * sw)[1] ** 2

    lo, hi = vpnls.EXPONENT_RANGE
    axis = np.linspace(lo, hi, vpnls.GRID_POINTS)
    v = np.array([[rss((a, b)) for b in axis] for a in axis])
    i, j = np.unravel_index(np.argmin(v), v.shape)
    r = minimize(rss, [axis[i], axis[j]], method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-14, "maxiter": 2000})
    return r.x


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, default=8)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--scipy-fits", type=int, default=40, help="fits the SciPy loop does (time scaled to all)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    runs_list, what = ladders(args.groups)
    weights = [replicate_weights(len(r.log_l), args.replicates, 0) for r in runs_list]
    with jax_x64():  # float64 throughout, as `budgetopt fit` runs it
        batch = [jnp.asarray(v) for v in padded(runs_list, weights)]
        n_fits = batch[0].shape[0]
        t0 = time.perf_counter()
        res = jax.block_until_ready(vpnls.fit_batch(*batch))
        cold = time.perf_counter() - t0
        tb = timeit(lambda: jax.block_until_ready(vpnls.fit_batch(*batch)), repeats=args.repeats, warmup=0)
    host = [np.asarray(v) for v in batch]
    pick = np.linspace(0, n_fits - 1, min(args.scipy_fits, n_fits)).astype(int)
    t0 = time.perf_counter()
    ref = np.array([scipy_vpnls(host[0][k], host[1][k], host[2][k], host[3][k]) for k in pick])
    ts = (time.perf_counter() - t0) * n_fits / len(pick)
    ours = np.stack([np.asarray(res.alpha)[pick], np.asarray(res.beta)[pick]], axis=1)
    dev = float(np.max(np.abs(ours - ref) / ref))
    rate = n_fits / tb["median"]
    data = {"ladders": what, "groups": args.groups, "replicates": args.replicates, "fits": n_fits,
            "budgetopt_s": tb, "budgetopt_first_call_incl_compile_s": cold, "budgetopt_fits_per_s": rate,
            "scipy_fits_timed": len(pick), "scipy_s_scaled": ts, "ratio": ts / tb["median"],
            "max_rel_diff_alpha_beta": dev, "converged_fraction": float(1 - np.mean(np.asarray(res.at_grid_edge) | np.asarray(res.at_zoom_edge))),
            "machine": machine()}
    md = (f"| VPNLS: {args.groups} groups x (1 + {args.replicates} bootstrap replicates) = {n_fits:,} fits, {what} | seconds | fits/s | ratio |\n"
          f"|---|---|---|---|\n"
          f"| budgetopt `vpnls.fit_batch`, one vmapped call (warm) | {tb['median']:.2f} | {rate:,.0f} | **{ts / tb['median']:.1f}× SciPy** |\n"
          f"| SciPy loop: NNLS + {vpnls.GRID_POINTS}x{vpnls.GRID_POINTS} grid + Nelder-Mead ({len(pick)} fits timed, scaled) | {ts:.1f} | {n_fits / ts:,.1f} | 1 |\n\n"
          f"Same answers: largest relative difference in alpha, beta over the {len(pick)} shared fits {dev:.1e}. "
          f"First call including compilation: {cold:.1f} s.")
    print(md)
    if args.record:
        record("VPNLS groups x bootstrap vs SciPy", md, data)
    return data


if __name__ == "__main__":
    main()
