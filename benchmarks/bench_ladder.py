"""Ladder design: budgetopt simulating and fitting 1000 ladders for each of 20 designs (the
built-in family's first 20, VPNLS, true laws from besiroglu2024's covariance) beside a SciPy
loop doing the same fits (NNLS inside, the same 40x40 grid then Nelder-Mead, Open-Athena's
recipe) on the same simulated ladders, in one run. DESIGN §10: under 60 s on 2 CPU cores.

    python benchmarks/bench_ladder.py [--designs 20] [--ladders 1000] [--scipy-fits 40] [--record]

The SciPy loop fits a subset of the ladders and its time is scaled to all of them; the
forecast N* of the shared ladders are compared.
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
from bench_vpnls import scipy_vpnls
from common import machine, record

from budgetopt.core.runtime import jax_x64
from budgetopt.fit import ladder
from budgetopt.model.laws import resolve_law

TARGET = 1e24


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--designs", type=int, default=20)
    ap.add_argument("--ladders", type=int, default=1000)
    ap.add_argument("--scipy-fits", type=int, default=40, help="fits the SciPy loop does (time scaled to all)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    law = resolve_law("besiroglu2024")
    designs = ladder.family(TARGET)[:args.designs]
    n_fits = len(designs) * args.ladders
    t0 = time.perf_counter()  # the whole command as a user runs it: compile, simulate, fit, summarise
    res = ladder.design_ladders(law, TARGET, designs, ladders=args.ladders)
    cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = ladder.simulate(designs, law, "covariance", ladder.Noise(), TARGET, args.ladders)
    warm = time.perf_counter() - t0
    # the same simulated ladders for SciPy: a spread of (design, ladder) pairs
    pick = np.linspace(0, n_fits - 1, min(args.scipy_fits, n_fits)).astype(int)
    with jax_x64():
        tables = ladder.design_table(designs, law.params)
        cfg = ladder.Config(*(jnp.asarray(v) for v in ladder.make_config(law, "covariance", ladder.Noise(), TARGET, 0)))
        sims = [ladder.draw_ladder(jnp.int32(k // args.ladders), jnp.uint32(k % args.ladders), tables, cfg, "covariance")
                for k in pick]
    t0 = time.perf_counter()
    fits = [scipy_vpnls(*(np.asarray(v).ravel() for v in (s.log_n, s.log_d, s.loss, s.w))) for s in sims]
    ts = (time.perf_counter() - t0) * n_fits / len(pick)
    # the SciPy fit's forecast N*: VPNLS's (E, A, B) at its exponents, then the closed form
    dev = []
    for k, s, (a, b) in zip(pick, sims, fits):
        x, y, w = (np.asarray(v).ravel() for v in (s.log_n, s.log_d, s.w))
        cols = np.column_stack([np.ones_like(x), np.exp(-a * x), np.exp(-b * y)]) * np.sqrt(w)[:, None]
        from scipy.optimize import nnls
        sc = np.linalg.norm(cols, axis=0)
        c = nnls(cols / sc, np.asarray(s.loss).ravel() * np.sqrt(w))[0] / sc
        log_n_scipy = (math.log(a * c[1] / (b * c[2])) + b * math.log(TARGET / 6)) / (a + b)
        p = s.law
        log_n_true = (math.log(float(p.alpha) / float(p.beta)) + float(p.log_A) - float(p.log_B)
                      + float(p.beta) * math.log(TARGET / 6)) / (float(p.alpha) + float(p.beta))
        dev.append(abs(out.log_n_error[k // args.ladders, k % args.ladders] - (log_n_scipy - log_n_true)))
    dev = float(np.max(dev))
    data = {"designs": len(designs), "ladders": args.ladders, "fits": n_fits, "command_s": cold, "simulate_warm_s": warm,
            "fits_per_s": n_fits / warm, "scipy_fits_timed": len(pick), "scipy_s_scaled": ts, "ratio": ts / warm,
            "max_abs_diff_log_n_star": dev, "recommended": res["recommended"], "devices": jax.local_device_count(),
            "machine": machine()}
    md = (f"| ladder design: {len(designs)} designs x {args.ladders} simulated ladders = {n_fits:,} VPNLS fits | seconds | fits/s | ratio |\n"
          f"|---|---|---|---|\n"
          f"| budgetopt `design_ladders`, first call (compile + simulate + fit + summarise) | {cold:.1f} | {n_fits / cold:,.0f} | — |\n"
          f"| budgetopt `simulate` (warm), {jax.local_device_count()} devices | {warm:.1f} | {n_fits / warm:,.0f} | **{ts / warm:.0f}× SciPy** |\n"
          f"| SciPy loop: NNLS + 40x40 grid + Nelder-Mead ({len(pick)} fits timed, scaled) | {ts:.0f} | {n_fits / ts:,.1f} | 1 |\n\n"
          f"Same forecasts: largest difference in log N* over the {len(pick)} shared ladders {dev:.1e}. "
          f"Target (DESIGN §10): under 60 s on 2 CPU cores.")
    print(md)
    if args.record:
        record("ladder design: 20 designs x 1000 ladders vs SciPy", md, data)
    return data


if __name__ == "__main__":
    from budgetopt.core.runtime import split_host

    split_host()  # one device per core, as the CLI does (before JAX starts its backends)
    main()
