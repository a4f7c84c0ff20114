"""Approach-3 fit, 4500 starts: budgetopt vs a SciPy L-BFGS-B loop over the same starts, in
one run, on the same runs (the 240 Chinchilla points when ../shared/data has them, else
synthetic runs from scripts/make_runs.py).

    python benchmarks/bench_fit.py [--scipy-starts 4500] [--record]

Target (docs/architecture.md, performance targets): >= 100x the SciPy loop, same optimum.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from pathlib import Path

import numpy as np
from common import machine, record, timeit

from budgetopt.fit import approach3
from budgetopt.fit import runs as runs_mod

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data" / "chinchilla_fig4_epoch.csv"


def load_runs():
    if DATA.exists():
        return runs_mod.read_runs(DATA, n_col="Model Size", c_col="Training FLOP", drop_highest=5), "Chinchilla Fig. 4 (Epoch AI), 240 runs"
    spec = importlib.util.spec_from_file_location("make_runs", ROOT / "scripts" / "make_runs.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    rows = m.make_runs(1.8172, 482.01, 2085.43, 0.3478, 0.3658, sizes_per_budget=34, noise=0.01)[:240]
    return runs_mod.Runs(*(np.log(np.array([r[i] for r in rows])) for i in (0, 1, 3))), "synthetic, 240 runs"


def scipy_fit(runs, starts, delta=1e-3):
    """The reference implementation's way: L-BFGS-B from every start, numpy objective + gradient."""
    from scipy.optimize import minimize

    x, y, z = runs[:3]

    def f(t):
        a, b, e, al, be = t
        u = np.stack([a - al * x, b - be * y, np.full_like(x, e)])
        m = u.max(axis=0)
        p = np.exp(u - m)
        s = p.sum(axis=0)
        r = m + np.log(s) - z
        psi = np.clip(r, -delta, delta)
        hub = np.where(np.abs(r) <= delta, 0.5 * r * r, delta * (np.abs(r) - 0.5 * delta))
        w = p / s
        return hub.sum(), np.array([(psi * w[0]).sum(), (psi * w[1]).sum(), (psi * w[2]).sum(),
                                    -(psi * w[0] * x).sum(), -(psi * w[1] * y).sum()])

    best = None
    for s in starts:
        r = minimize(f, s, jac=True, method="L-BFGS-B")
        if np.isfinite(r.fun) and (best is None or r.fun < best.fun):
            best = r
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scipy-starts", type=int, default=4500, help="starts for the SciPy loop (rate extrapolated if fewer)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args(argv)
    runs, what = load_runs()
    t0 = time.perf_counter()
    approach3.fit_approach3(runs)
    cold = time.perf_counter() - t0
    box = {}
    tb = timeit(lambda: box.setdefault("r", approach3.fit_approach3(runs)), repeats=args.repeats, warmup=0)
    starts = approach3.start_grid()
    k = min(args.scipy_starts, len(starts))
    sub = starts[:: max(1, len(starts) // k)][:k]
    t0 = time.perf_counter()
    sp = scipy_fit(runs, sub)
    ts = time.perf_counter() - t0
    ts_full = ts * len(starts) / len(sub)
    r = box["r"]
    rel = abs(r["objective"] - sp.fun) / sp.fun
    data = {"runs": what, "budgetopt_s": tb, "budgetopt_first_call_incl_compile_s": cold, "scipy_starts": len(sub),
            "scipy_s": ts, "scipy_s_for_4500": ts_full, "ratio": ts_full / tb["median"],
            "budgetopt_objective": r["objective"], "scipy_objective": float(sp.fun), "rel_objective_diff": rel,
            "budgetopt": {k_: r[k_] for k_ in ("E", "A", "B", "alpha", "beta")},
            "scipy": dict(zip(("E", "A", "B", "alpha", "beta"), [float(np.exp(sp.x[2])), float(np.exp(sp.x[0])),
                                                                 float(np.exp(sp.x[1])), float(sp.x[3]), float(sp.x[4])])),
            "machine": machine()}
    md = (f"| Approach-3 fit, 4500 starts, {what} | seconds | ratio |\n|---|---|---|\n"
          f"| budgetopt `fit_approach3` (IRLS-LM 60 steps + L-BFGS polish, warm) | {tb['median']:.2f} ({tb['min']:.2f}–{tb['max']:.2f}) | **{ts_full / tb['median']:.1f}× SciPy** |\n"
          f"| SciPy L-BFGS-B loop over the starts ({len(sub)} run{'' if len(sub) == 4500 else ', scaled to 4500'}) | {ts_full:.1f} | 1 |\n\n"
          f"Same optimum: objective {r['objective']:.12g} vs {sp.fun:.12g} (relative difference {rel:.1e}); "
          f"E {r['E']:.4f} vs {data['scipy']['E']:.4f}, alpha {r['alpha']:.4f} vs {data['scipy']['alpha']:.4f}, "
          f"beta {r['beta']:.4f} vs {data['scipy']['beta']:.4f}. First budgetopt call including compilation: {cold:.1f} s.")
    print(md)
    if args.record:
        record("Approach-3 fit vs SciPy", md, data)
    return data


if __name__ == "__main__":
    main()
