"""Parametric sweep, end to end: budgetopt vs the same maths written plainly in NumPy
(numpy.random.Generator, np.quantile), in one run, with budgetopt's stages timed apart.

    python benchmarks/bench_sweep.py [--samples 1e7] [--rss-samples 1e9] [--record]

Scenario (DESIGN §10): besiroglu2024 with its covariance, 1024 H100s, triangular hours,
uniform MFU; closed-form optimum per sample; summary = p01..p99 quantiles and moments of N*,
D*, L*, tokens/param and C. The robust recommendation (candidates x samples) is timed as a
separate stage: it is extra work the NumPy baseline does not do.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time

if __name__ == "__main__":
    from budgetopt.devices import set_host_device_count

    set_host_device_count(os.cpu_count() or 1)  # CPU only; GPUs ignore it

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from budgetopt import scenario as scn
from budgetopt import summary as S
from budgetopt import sweep as sw
from budgetopt.allocate import closed_form_x
from budgetopt.devices import x64
from budgetopt.laws import Parametric, get_preset

from common import machine, record, timeit

PROBS = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]


def numpy_sweep(n: int, seed: int = 0) -> dict:
    """The same maths, plainly: draw, closed form, exact quantiles and moments."""
    spec = get_preset("besiroglu2024")
    mean = np.array([float(v) for v in spec.params])
    rng = np.random.default_rng(seed)
    th = mean + rng.standard_normal((n, 5)) @ np.linalg.cholesky(spec.covariance).T
    log_a, log_b, log_e, al, be = th.T
    hours = rng.triangular(400, 700, 720, n)
    mfu = rng.uniform(0.35, 0.45, n)
    log_c = np.log(1024 * 989e12 * 3600 * hours * mfu)
    log_g = (np.log(al) + log_a - np.log(be) - log_b) / (al + be)
    log_s = log_c - math.log(6)
    log_n = log_g + be / (al + be) * log_s
    log_d = log_s - log_n
    loss = np.exp(log_e) + np.exp(log_a - al * log_n) + np.exp(log_b - be * log_d)
    out = {}
    for name, v in (("params", log_n), ("tokens", log_d), ("loss", loss), ("tokens_per_param", log_d - log_n), ("flops", log_c)):
        out[name] = (np.quantile(v, PROBS), v.mean(), v.std(), v.min(), v.max())
    return out


def stage_rates(sc, n_stage: int, dtype=jnp.float32) -> dict:
    """Rates of the sampling, solve and summary stages alone, and of the bare closed-form
    kernel on inputs already in memory (jitted separately, one chunk of n_stage samples)."""
    with x64():  # the summary's int64 accumulators, as inside sweep.run
        return _stage_rates(sc, n_stage, dtype)


def _stage_rates(sc, n_stage: int, dtype) -> dict:
    sampler = sw.make_sampler(sc, dtype)
    plan = sw.make_plan(sc, n_stage, dtype)
    idx = sw._indices(0, n_stage)
    samp = jax.jit(lambda lo, hi: sampler(lo, hi))
    law, b = samp(*idx)
    solve = jax.jit(lambda law, b: sw._solve(sc, law, b))
    a = solve(law, b)
    summ = jax.jit(lambda a, b: S.accumulate(*sw._quantities(a, b, False), plan.ranges))
    # bare kernel: log N, log D and the loss from law parameters and log C already in memory
    p = Parametric(*law)
    bare = jax.jit(lambda p, lc: (closed_form_x(p, lc), jnp.exp(p.log_E)))
    out = {}
    for name, fn, args in (("sampling", samp, idx), ("solve", solve, (law, b)), ("summary", summ, (a, b)),
                           ("bare_closed_form_kernel", bare, (p, b.log_c))):
        t = timeit(lambda: jax.block_until_ready(fn(*args)), repeats=5)
        out[name] = n_stage / t["median"]
    return out


def rss_run(n: int) -> dict:
    """Peak RSS of a `budgetopt sweep` of n samples in a fresh process."""
    code = ("import resource, sys, time; from budgetopt.cli import main; t = time.time(); "
            "sys.argv = ['budgetopt', 'sweep', '--example', 'h100-cluster', '--samples', sys.argv[1], "
            "'--candidates', '0', '-q', '-f', 'json', '-o', '/dev/null']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True)
    secs, kb = r.stdout.split()[-2:]
    return {"samples": n, "seconds": float(secs), "peak_rss_mb": int(kb) / 1024, "rate": n / float(secs)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=float, default=1e7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stage-samples", type=int, default=1 << 20)
    ap.add_argument("--rss-samples", type=float, default=0, help="also run a sweep this large in a fresh process and report its peak RSS (e.g. 1e9)")
    ap.add_argument("--chunk-size", type=float, default=65536, help="sweep chunk (GPU: 2^24)")
    ap.add_argument("--baseline-samples", type=float, default=1e7, help="cap for the NumPy baseline (its rate is per sample)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    n = int(args.samples)
    nb = int(min(n, args.baseline_samples))
    chunk = int(args.chunk_size)
    # the built-in example (what the README runs), without the recommendation stage
    sc = dataclasses.replace(scn.example("h100-cluster"), candidates=0)

    t0 = time.perf_counter()
    first = sw.run(sc, samples=n, chunk_size=chunk)
    cold = time.perf_counter() - t0
    box = {}
    tb = timeit(lambda: box.setdefault("r", sw.run(sc, samples=n, chunk_size=chunk)), repeats=args.repeats, warmup=0)
    tn = timeit(lambda: box.setdefault("np", numpy_sweep(nb)), repeats=args.repeats, warmup=0)
    res, ref = first, box["np"]
    # agreement: the two draw different random numbers, so compare within Monte Carlo error
    agree = {}
    for name, (q, m, sd, lo, hi) in ref.items():
        got = np.array([res["quantiles"][name][k] for k in S.QUANTILES])
        want = np.exp(q) if name in sw.LOG_QUANTITIES else q
        agree[name] = float(np.max(np.abs(got / want - 1)))
    rec_sc = dataclasses.replace(sc, candidates=64)
    sw.run(rec_sc, samples=min(n, 2_000_000))  # compile
    tr = timeit(lambda: sw.run(rec_sc, samples=min(n, 2_000_000)), repeats=1, warmup=0)
    stages = stage_rates(sc, args.stage_samples)
    rss = rss_run(int(args.rss_samples)) if args.rss_samples else None

    rate_b, rate_n = n / tb["median"], nb / tn["median"]
    data = {"samples": n, "baseline_samples": nb, "backend": jax.default_backend(), "devices": jax.device_count(), "budgetopt_s": tb, "budgetopt_first_run_incl_compile_s": cold,
            "numpy_s": tn, "budgetopt_rate": rate_b, "numpy_rate": rate_n, "ratio": rate_b / rate_n,
            "max_rel_quantile_diff_vs_numpy": agree, "stage_rates": stages,
            "recommendation_64_candidates_rate": min(n, 2_000_000) / tr["median"], "rss": rss, "machine": machine()}
    md = (f"| parametric sweep, {n:.0e} samples (float32, {jax.device_count()} {jax.default_backend()} devices) | median s (min–max) | samples/s | ratio |\n"
          f"|---|---|---|---|\n"
          f"| budgetopt `sweep.run` end to end (sampling + solve + summary, warm) | {tb['median']:.2f} ({tb['min']:.2f}–{tb['max']:.2f}) | {rate_b:.3g} | **{rate_b / rate_n:.2f}× NumPy** |\n"
          f"| NumPy plainly (Generator, closed form, np.quantile; {nb:.0e} samples on the host) | {tn['median']:.2f} ({tn['min']:.2f}–{tn['max']:.2f}) | {rate_n:.3g} | 1 |\n\n"
          f"First budgetopt run including compilation and pilot: {cold:.2f} s. Stages alone (one chunk of "
          f"{args.stage_samples:,}): sampling {stages['sampling']:.3g}/s, solve {stages['solve']:.3g}/s, "
          f"summary {stages['summary']:.3g}/s; bare closed-form kernel {stages['bare_closed_form_kernel']:.3g}/s. "
          f"Robust recommendation with 64 candidates (+1 refined): {data['recommendation_64_candidates_rate']:.3g} samples/s "
          f"(65 loss evaluations per sample). Quantiles agree with NumPy's within Monte Carlo error: max relative "
          f"difference {max(agree.values()):.1e}.")
    if rss:
        md += f" A {rss['samples']:.0e}-sample sweep in a fresh process: {rss['seconds']:.0f} s, peak RSS {rss['peak_rss_mb']:.0f} MB."
    print(md)
    if args.record:
        record("Parametric sweep vs NumPy", md, data)
    return data


if __name__ == "__main__":
    main()
