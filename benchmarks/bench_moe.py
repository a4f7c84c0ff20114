"""The joint MoE optimum (Ludziejewski et al. 2025): budgetopt's one vmapped call over
(budget, memory cap) problems x every expert count, against scipy.optimize.minimize_scalar per
(problem, expert count), in one run on the same random problems.

    python benchmarks/bench_moe.py [--problems 1000000] [--scipy-sample 300] [--record]

Prints both rates (in problems, each with all its expert counts), the ratio, and the agreement
of the answers (the chosen expert count, relative difference in N_act and in loss).
"""

from __future__ import annotations

import argparse
import math
import os
import time

if __name__ == "__main__":  # one CPU device per core, before JAX starts
    from budgetopt.core.runtime import set_host_device_count

    set_host_device_count(os.cpu_count() or 1)

import jax
import jax.numpy as jnp
import numpy as np
from common import machine, record, timeit

from budgetopt.model.laws import get_preset, to_array_law
from budgetopt.model.moe import allocate_joint

EXPERTS = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])


def problems(n: int, seed: int = 0):
    """log C ~ U(log 1e20, log 1e26); log M ~ U(log 1e10, log 1e13) (total parameters held)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(math.log(1e20), math.log(1e26), n), rng.uniform(math.log(1e10), math.log(1e13), n)


def scipy_baseline(log_c, log_m):
    """The same maths written plainly: eq. 1/6 in NumPy float64, bounded Brent per (problem, E),
    the memory cap's N_act by Brent's root of eq. 9 (d_model = 64 n_blocks, vocabulary 50,257)."""
    from scipy.optimize import brentq, minimize_scalar

    a, al, de, ga, b, be, om, ze, es, em, c = (35.91, -0.1889, -0.2285, 0.0098, 35.98, -0.1775, 0.5529, -0.0259,
                                               2.0732, 290.4521, 1.3637)
    out = np.empty((len(log_c), len(EXPERTS), 2))
    for i, (lc, lm) in enumerate(zip(log_c, log_m)):
        s = math.exp(lc) / 6
        for j, e in enumerate(EXPERTS):
            eh = 1.0 / (1.0 / (e - 1.0 + 1.0 / (1.0 / es - 1.0 / em)) + 1.0 / em)
            le = math.log(eh)

            def f(x, eh=eh, le=le, s=s):
                return a * eh ** de * math.exp((al + ga * le) * x) + b * eh ** om * (s / math.exp(x)) ** (be + ze * le) + c

            m = math.exp(lm)
            d = brentq(lambda d, e=e, m=m: 2 * d * 50257 + (4 + 9 * e) * d ** 3 / 64 - m, 0.0, (64 * m) ** (1 / 3))
            hi = min(math.log(s), math.log(2 * d * 50257 + 13 * d ** 3 / 64))
            r = minimize_scalar(f, bounds=(0.0, hi), method="bounded", options={"xatol": 1e-10})
            out[i, j] = r.x, r.fun
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--problems", type=int, default=1_000_000)
    ap.add_argument("--scipy-sample", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--x64", action="store_true", help="solve in float64 (default: float32)")
    ap.add_argument("--record", action="store_true", help="append the figures to benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    jax.config.update("jax_enable_x64", args.x64)
    dtype = jnp.float64 if args.x64 else jnp.float32
    law = to_array_law(get_preset("ludziejewski2025-moe").params, dtype)
    log_c, log_m = problems(args.problems)
    lc, lm, ex = (jnp.asarray(log_c[:, None], dtype), jnp.asarray(log_m[:, None], dtype),
                  jnp.asarray(EXPERTS[None, :], dtype))
    t0 = time.perf_counter()
    fn = jax.jit(lambda law, lc, lm, ex: allocate_joint(law, lc, lm, ex)).lower(law, lc, lm, ex).compile()
    compile_s = time.perf_counter() - t0
    out = {}

    def run():
        out["a"] = fn(law, lc, lm, ex)
        jax.block_until_ready(out["a"])

    t = timeit(run, repeats=args.repeats)
    a = out["a"]
    rate = args.problems / t["median"]
    conv = float(jnp.mean(a.converged))
    k = min(args.scipy_sample, args.problems)
    sres = {}

    def run_scipy():
        sres["r"] = scipy_baseline(log_c[:k], log_m[:k])

    ts = timeit(run_scipy, repeats=1, warmup=0)
    scipy_rate = k / ts["median"]
    ref = sres["r"]
    bx, bl = np.asarray(a.log_n[:k], np.float64), np.asarray(a.loss[:k], np.float64)
    dn = np.abs(np.expm1(bx - ref[:, :, 0]))
    dl = np.abs(bl - ref[:, :, 1]) / ref[:, :, 1]
    same_e = float(np.mean(np.argmin(bl, axis=1) == np.argmin(ref[:, :, 1], axis=1)))
    data = {"problems": args.problems, "experts": EXPERTS.tolist(), "devices": jax.local_device_count(),
            "dtype": str(np.dtype(dtype)), "compile_s": compile_s, "budgetopt_s": t, "budgetopt_rate": rate,
            "converged_fraction": conv, "scipy_problems": k, "scipy_s": ts, "scipy_rate": scipy_rate,
            "ratio": rate / scipy_rate, "max_rel_diff_N": float(dn.max()), "max_rel_diff_loss": float(dl.max()),
            "same_expert_count": same_e, "machine": machine()}
    md = (f"| joint MoE optimum ({data['dtype']}, {data['devices']} CPU devices), {len(EXPERTS)} expert counts per "
          f"problem | problems | median s (min–max) | problems/s | ratio |\n|---|---|---|---|---|\n"
          f"| budgetopt, one vmapped call | {args.problems:,} | {t['median']:.3f} ({t['min']:.3f}–{t['max']:.3f}) | "
          f"{rate:.3g} | **{rate / scipy_rate:,.0f}× SciPy** |\n"
          f"| SciPy `minimize_scalar` (bounded Brent) per (problem, E) | {k:,} | {ts['median']:.2f} | {scipy_rate:.3g} | 1 |"
          f"\n\nAgreement on the {k:,} shared problems: the same expert count chosen in {same_e:.1%}; max |ΔN|/N = "
          f"{dn.max():.1e}, max |ΔL|/L = {dl.max():.1e}; converged {conv:.4%}; compile {compile_s:.2f} s (not in "
          "the rates).")
    print(md)
    if args.record:
        record("Joint MoE optimum vs SciPy", md, data)
    return data


if __name__ == "__main__":
    main()
