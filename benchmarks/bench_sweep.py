"""Parametric sweep, end to end: budgetopt vs the same work written plainly in NumPy
(numpy.random.Generator, np.quantile), in one run, two ways:

1. quantiles only (the original target): sampling, closed-form optimum per sample, p01..p99 quantiles and
   moments of N*, D*, L*, tokens/param and C;
2. the default path (what `budgetopt sweep` runs): the same, plus the robust recommendation —
   64 grid sizes and one refined size scored on the decision subsample (global index = 0 mod
   8), D following each sample's realised compute: expected loss, expected regret, p95 regret
   and P(regret < 1 %) per size. The NumPy baseline computes the same estimates on the same
   share of samples (every 8th), and picks its grid from a pilot the same way.

    python benchmarks/bench_sweep.py [--samples 1e7] [--rss-samples 1e9] [--record]

Scenario: the built-in h100-cluster example (besiroglu2024 with its covariance, 1024 H100s,
triangular hours, uniform MFU).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import time

if __name__ == "__main__":
    from budgetopt.core.runtime import set_host_device_count

    set_host_device_count(os.cpu_count() or 1)  # CPU only; GPUs ignore it

import jax
import jax.numpy as jnp
import numpy as np
from common import machine, record, timeit

from budgetopt import sweep as sw
from budgetopt.core.runtime import jax_x64
from budgetopt.model.laws import get_preset
from budgetopt.sweep import scenario as scn
from budgetopt.sweep.accumulators import QUANTILES, Ranges
from budgetopt.sweep.driver import chunk_layout, default_chunk, prepare
from budgetopt.sweep.kernel import LOG_QUANTITIES

PROBS = list(QUANTILES.values())
STRIDE = 8
GRID = 64


def numpy_draws(n: int, seed: int = 0):
    """Sampling and the closed-form optimum per sample, plainly."""
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
    return (log_a, log_b, log_e, al, be, log_s), log_n, log_d, loss, log_c


def numpy_quantiles(log_n, log_d, loss, log_c) -> dict:
    out = {}
    for name, v in (("params", log_n), ("tokens", log_d), ("loss", loss), ("tokens_per_param", log_d - log_n), ("flops", log_c)):
        out[name] = (np.quantile(v, PROBS), v.mean(), v.std(), v.min(), v.max())
    return out


def numpy_recommendation(law, log_n, loss) -> dict:
    """The robust recommendation, plainly: a grid over the pilot's optima, a bounded
    golden-section refinement of the pilot's mean loss, then every size scored on every 8th
    sample (D from that sample's compute)."""
    log_a, log_b, log_e, al, be, log_s = law
    e = np.exp(log_e)

    def loss_at(x, idx):
        return e[idx] + np.exp(log_a[idx] - al[idx] * x) + np.exp(log_b[idx] - be[idx] * (log_s[idx] - x))

    pilot = slice(0, 4096)
    grid = np.linspace(np.quantile(log_n[pilot], 0.005) - math.log(2), np.quantile(log_n[pilot], 0.995) + math.log(2), GRID)
    lo, hi = grid[max(int(np.argmin([loss_at(x, pilot).mean() for x in grid])) - 1, 0)], grid[-1]
    for _ in range(60):  # golden section on the pilot's mean loss
        a, b = hi - 0.618 * (hi - lo), lo + 0.618 * (hi - lo)
        if loss_at(a, pilot).mean() < loss_at(b, pilot).mean():
            hi = b
        else:
            lo = a
    sub = slice(0, None, STRIDE)
    opt = loss[sub]
    rows = []
    for x in np.append(grid, 0.5 * (lo + hi)):
        r = loss_at(x, sub) - opt
        rows.append((x, opt.mean() + r.mean(), r.mean(), np.quantile(r, 0.95), np.mean(r < 0.01 * opt)))
    best = min(rows, key=lambda t: t[1])
    return {"params": math.exp(best[0]), "expected_loss": best[1], "expected_regret": best[2], "p95_regret": best[3]}


def kernel_rates(sc, n: int) -> dict:
    """Samples/s of the kernel's two programs alone (one chunk, warm): draw = sampling and the
    closed-form solve; accumulate = summaries and candidates."""
    with jax_x64():
        chunk = chunk_layout(default_chunk(jax.default_backend(), jax.local_device_count()),
                                jax.local_device_count(), sc.subsample)
        pilot, k = prepare(sc, n, False, chunk)
        ranges = Ranges(*(jnp.asarray(v) for v in pilot.ranges))
        cands = jnp.asarray(pilot.candidates, jnp.float32)
        lo = np.uint32(0)
        s = k.draw(lo, lo)
        t_draw = timeit(lambda: jax.block_until_ready(k.draw(lo, lo)), repeats=20)
        t_acc = timeit(lambda: jax.block_until_ready(k.accumulate(s, lo, np.uint32(chunk), ranges, cands)), repeats=20)
    return {"chunk": chunk, "draw": chunk / t_draw["min"], "accumulate": chunk / t_acc["min"]}


def rss_run(n: int, candidates: int | None = None) -> dict:
    """Peak RSS and time of a `budgetopt sweep` of n samples in a fresh process."""
    extra = f", '--candidates', '{candidates}'" if candidates is not None else ""
    code = ("import resource, sys, time; from budgetopt.__main__ import main; t = time.time(); "
            "sys.argv = ['budgetopt', 'sweep', '--example', 'h100-cluster', '--samples', sys.argv[1]" + extra +
            ", '-q', '-f', 'json', '-o', '/dev/null']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(time.time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", code, str(n)], capture_output=True, text=True)
    secs, kb = r.stdout.split()[-2:]
    return {"samples": n, "candidates": candidates, "seconds": float(secs), "peak_rss_mb": int(kb) / 1024,
            "rate": n / float(secs)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=float, default=1e7)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-samples", type=float, default=0, help="also run a sweep this large (recommendation on) in a "
                    "fresh process and report its time and peak RSS (e.g. 1e9)")
    ap.add_argument("--chunk-size", type=float, default=0, help="sweep chunk [default: the library's]")
    ap.add_argument("--baseline-samples", type=float, default=1e7, help="cap for the NumPy baseline (its rate is per sample)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    n = int(args.samples)
    nb = int(min(n, args.baseline_samples))
    chunk = int(args.chunk_size) or None
    example = scn.example("h100-cluster")
    assert example.candidates == GRID and example.subsample == STRIDE
    runs = {"quantiles": dataclasses.replace(example, candidates=0), "default": example}

    first, box, t_b, t_n = {}, {}, {}, {}
    for name, sc in runs.items():
        t0 = time.perf_counter()
        first[name] = sw.run(sc, samples=n, chunk_size=chunk)
        first[name]["cold_s"] = time.perf_counter() - t0
        t_b[name] = timeit(lambda sc=sc: sw.run(sc, samples=n, chunk_size=chunk), repeats=args.repeats, warmup=0)

    def np_quantiles():
        _, log_n, log_d, loss, log_c = numpy_draws(nb)
        box["q"] = numpy_quantiles(log_n, log_d, loss, log_c)

    def np_default():
        law, log_n, log_d, loss, log_c = numpy_draws(nb)
        box["q"] = numpy_quantiles(log_n, log_d, loss, log_c)
        box["rec"] = numpy_recommendation(law, log_n, loss)

    t_n["quantiles"] = timeit(np_quantiles, repeats=args.repeats, warmup=0)
    t_n["default"] = timeit(np_default, repeats=args.repeats, warmup=0)
    # agreement: the two draw different random numbers, so compare within Monte Carlo error
    agree = {}
    for name, (q, *_rest) in box["q"].items():
        got = np.array([first["quantiles"]["quantiles"][name][k] for k in QUANTILES])
        want = np.exp(q) if name in LOG_QUANTITIES else q
        agree[name] = float(np.max(np.abs(got / want - 1)))
    rec_b, rec_n = first["default"]["recommendation"], box["rec"]
    agree["recommended_params"] = abs(rec_b["params"] / rec_n["params"] - 1)
    agree["expected_regret"] = abs(rec_b["expected_regret"] / rec_n["expected_regret"] - 1)
    kernel = kernel_rates(example, n)
    rss = rss_run(int(args.rss_samples)) if args.rss_samples else None

    rate = {k: (n / t_b[k]["median"], nb / t_n[k]["median"]) for k in runs}
    data = {"samples": n, "baseline_samples": nb, "backend": jax.default_backend(), "devices": jax.device_count(),
            "budgetopt_s": t_b, "numpy_s": t_n, "first_run_incl_compile_s": {k: first[k]["cold_s"] for k in runs},
            "budgetopt_rate": rate["quantiles"][0], "numpy_rate": rate["quantiles"][1],
            "ratio": rate["quantiles"][0] / rate["quantiles"][1],
            "default_rate": rate["default"][0], "numpy_default_rate": rate["default"][1],
            "default_ratio": rate["default"][0] / rate["default"][1], "agreement_vs_numpy": agree,
            "kernel_rates": kernel, "rss": rss, "machine": machine()}
    dev = f"{jax.device_count()} {jax.default_backend()} device(s)"
    md = (f"| sweep of {n:.0e} samples, float32, {dev} | budgetopt s (min–max) | samples/s | NumPy s (min–max) | samples/s | ratio |\n"
          f"|---|---|---|---|---|---|\n")
    for k, label in (("quantiles", "quantiles only (sampling, closed form, quantiles, moments)"),
                     ("default", "default path: + robust recommendation, 65 sizes on the 1-in-8 decision subsample")):
        b, m = t_b[k], t_n[k]
        md += (f"| {label} | {b['median']:.2f} ({b['min']:.2f}–{b['max']:.2f}) | {rate[k][0]:.3g} | "
               f"{m['median']:.2f} ({m['min']:.2f}–{m['max']:.2f}) | {rate[k][1]:.3g} | **{rate[k][0] / rate[k][1]:.1f}×** |\n")
    md += (f"\nMedians of {args.repeats} warm runs each (NumPy on {nb:.0e} samples; its rate is per sample). First budgetopt "
           f"runs including compilation and pilot: {first['quantiles']['cold_s']:.1f} s and {first['default']['cold_s']:.1f} s. "
           f"Kernel programs alone (chunk {kernel['chunk']:,}, best of 20): draw {kernel['draw']:.3g}/s, accumulate "
           f"{kernel['accumulate']:.3g}/s. Agreement with NumPy within Monte Carlo error: quantiles to "
           f"{max(v for k, v in agree.items() if k in box['q']):.1e}, recommended N to {agree['recommended_params']:.1e}, "
           f"its expected regret to {agree['expected_regret']:.1e} (relative).")
    if rss:
        md += (f" A {rss['samples']:.0e}-sample default sweep in a fresh process: {rss['seconds']:.0f} s "
               f"({rss['rate']:.3g}/s), peak RSS {rss['peak_rss_mb']:.0f} MB.")
    print(md)
    if args.record:
        record("Sweep vs NumPy: quantiles only, and the default path", md, data)
    return data


if __name__ == "__main__":
    main()
