"""Fitting a loss-curve law with bootstrap (`curves --bootstrap R`): budgetopt's vmapped L-BFGS
over every replicate in one call, against a SciPy loop (L-BFGS-B per replicate, NumPy objective
on the same merged pairs), in one run on the same curves.

    python benchmarks/bench_curves.py [--replicates 200] [--scipy-replicates 5] [--shorter 1] [--record]

The curves: the multi-power law at the official 25M parameters (tests/curves/reference.py's
OFFICIAL) on the paper's three training schedules (24,000-step constant and cosine, 16,000-step
two-stage; warmup 2,160), logged every 128 steps from step 2,176 as the shipped files are, with
log-normal loss noise (sd 1e-3). Both minimise the same Huber objective from the full fit's
optimum; printed: replicates per second each way, the ratio, and how often SciPy's objective beats
budgetopt's (it should not). ``--shorter K`` divides every step count by K (the smoke test's
quick run; figures are recorded at K = 1).
"""

from __future__ import annotations

import argparse
import math
import time

import jax
import numpy as np
from common import machine, record, timeit

from budgetopt.core.runtime import jax_x64
from budgetopt.curves import curve_fit
from budgetopt.curves.curve_fit import Curve, block_weights, group_pairs
from budgetopt.curves.curve_laws import RESOLUTION, to_coords, to_params
from budgetopt.curves.schedules import learning_rates, parse_schedule

OFFICIAL_25M = [3.04045406, 0.52468604, 0.50786857, 363.78751622, 2.06560812, 0.58279013, 0.64142257]


def specs(k: int = 1) -> dict[str, str]:
    """The paper's three training schedules, every step count divided by ``k``."""
    w = f"warmup={2160 // k}"
    return {"constant_24000": f"constant:steps={24000 // k},lr=3e-4,{w}",
            "cosine_24000": f"cosine:steps={24000 // k},lr=3e-4,final=3e-5,{w}",
            "wsdcon_9": f"two-stage:steps={16000 // k},lr=3e-4,switch={8000 // k},lr2=9e-5,{w}"}


def numpy_loss(theta, p, rows: int) -> np.ndarray:
    """The multi-power law on pairs, NumPy float64 (the same arithmetic as curve_laws.curve_loss)."""
    l0, a, alpha, b, c, beta, gamma = to_params("multipower", np.asarray(theta))
    g = 1 - np.exp(-beta * np.log1p(c * np.exp(-gamma * p.log_eta) * p.dist))
    return l0 + a * p.s1 ** -alpha + b * np.bincount(p.row, weights=p.gap * g, minlength=rows)


def curves(noise: float = 1e-3, seed: int = 0, k: int = 1) -> list[Curve]:
    rng = np.random.default_rng(seed)
    out = []
    for name, spec in specs(k).items():
        lrs = learning_rates(parse_schedule(spec, "spec"))
        steps = np.arange(2176 // k, len(lrs), 128 // k)
        p = curve_fit.curve_pairs(lrs, steps, 0.0)
        loss = numpy_loss(to_coords("multipower", OFFICIAL_25M), p, len(steps)) * np.exp(noise * rng.standard_normal(len(steps)))
        out.append(Curve(name, "all", steps, loss, lrs, spec, "", np.arange(1, len(steps) + 1)))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--scipy-replicates", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--shorter", type=int, default=1, help="divide every step count by this (a quick run)")
    ap.add_argument("--record", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.record and args.shorter != 1:
        ap.error("--record keeps the full-length curves: drop --shorter")
    cs = curves(k=args.shorter)
    out = {}

    def run():
        out["fit"] = curve_fit.fit_curve_groups("multipower", {"all": cs}, bootstrap=args.replicates, seed=0)["all"]

    t0 = time.perf_counter()
    run()
    first = time.perf_counter() - t0
    t = timeit(run, repeats=args.repeats, warmup=0)
    fit = out["fit"]
    # the full fit alone, to take its time out of the per-replicate rate
    tf = timeit(lambda: curve_fit.fit_curve_groups("multipower", {"all": cs}), repeats=args.repeats, warmup=0)
    boot_s = max(t["median"] - tf["median"], 1e-9)
    rate = args.replicates / boot_s
    from scipy.optimize import minimize

    pairs, log_l = group_pairs(cs, RESOLUTION)
    rows = len(log_l)
    w = block_weights([len(c.steps) for c in cs], args.replicates, 0)
    k = min(args.scipy_replicates, args.replicates)

    def objective(theta, wr):
        r = np.log(numpy_loss(theta, pairs, rows)) - log_l
        a = np.abs(r)
        return float(np.sum(wr * np.where(a <= 1e-3, 0.5 * r * r, 1e-3 * (a - 0.5e-3))))

    sres = {}

    def run_scipy():
        # stopped as budgetopt stops a replicate (max |grad| below its 1e-6; SciPy's default pgtol 1e-5 stops at once)
        sres["v"] = [minimize(objective, fit.theta, args=(w[r],), method="L-BFGS-B",
                              options={"gtol": 1e-6, "ftol": 1e-15}).fun for r in range(k)]

    ts = timeit(run_scipy, repeats=1, warmup=0)
    scipy_rate = k / ts["median"]
    ours = np.array([objective(fit.replicates[r], w[r]) for r in range(k)])
    scipy_better = float(np.mean(np.asarray(sres["v"]) < ours * (1 - 1e-6)))
    steps = sum(len(c.lrs) for c in cs)
    data = {"law": "multipower", "curves": len(cs), "steps": steps, "logged_points": rows, "pairs": len(pairs.row),
            "replicates": args.replicates, "first_call_s": first, "budgetopt_s": t, "full_fit_s": tf,
            "budgetopt_rate": rate, "replicates_converged": fit.replicate_converged, "scipy_replicates": k,
            "scipy_s": ts, "scipy_rate": scipy_rate, "ratio": rate / scipy_rate, "scipy_better_fraction": scipy_better,
            "devices": jax.local_device_count(), "machine": machine()}
    md = (f"| multi-power fit, {len(cs)} curves ({steps:,} steps, {rows} logged points, {len(pairs.row):,} pairs), "
          f"block bootstrap | replicates | median s (min–max) | replicates/s | ratio |\n|---|---|---|---|---|\n"
          f"| budgetopt `fit_curve_groups` (every replicate in one call; the full fit's {tf['median']:.1f} s "
          f"subtracted) | {args.replicates} | {t['median']:.2f} ({t['min']:.2f}–{t['max']:.2f}) | {rate:.3g} | "
          f"**{rate / scipy_rate:,.1f}× SciPy** |\n"
          f"| SciPy L-BFGS-B per replicate (NumPy objective, numerical gradients, gtol 1e-6) | {k} | {ts['median']:.2f} | "
          f"{scipy_rate:.3g} | 1 |\n\nFirst call (with compile) {first:.1f} s. SciPy's objective lower than "
          f"budgetopt's (by > 1e-6 relative) in {scipy_better:.0%} of the {k} shared replicates; replicates "
          f"converged {fit.replicate_converged:.0%}.")
    print(md)
    if args.record:
        record("Loss-curve law fit with bootstrap vs SciPy", md, data)
    return data


if __name__ == "__main__":
    with jax_x64():
        main()
    _ = math
