"""The whole benchmark suite (docs/architecture.md, performance targets) in one process and one run: every comparison side
by side with its baseline, compile time apart from run time, medians over repeats, and a
closing table of ratios against the targets. With --record each benchmark appends its block
(date, machine, versions, command, figures) to benchmarks/RESULTS.md.

    python benchmarks/run.py [--record] [--gpu]      # --gpu: accelerator sizes (1e9 samples)

SciPy is optional: without it the SciPy baselines are skipped and said so.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from budgetopt.core.runtime import set_host_device_count  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--gpu", action="store_true", help="accelerator sizes: 1e9-sample sweep, 1e8 solver problems")
    ap.add_argument("--rss", action="store_true", help="also the 1e9-sample peak-RSS run on CPU (~3 min)")
    args = ap.parse_args(argv)
    set_host_device_count(os.cpu_count() or 1)
    import bench_solver
    import bench_sweep
    import jax

    have_scipy = importlib.util.find_spec("scipy") is not None
    rec = ["--record"] if args.record else []
    t0 = time.time()
    rows = []
    sw_args = (["--samples", "1e9", "--baseline-samples", "1e7"]
               if args.gpu else ["--samples", "1e7"] + (["--rss-samples", "1e9"] if args.rss else []))
    s = bench_sweep.main(sw_args + rec)
    rows.append(("sweep, quantiles only, vs NumPy", f"{s['budgetopt_rate']:.3g} samples/s", f"{s['ratio']:.2f}×",
                 "≥ 1e10 samples/s" if args.gpu else "≥ 3× (stretch 5×)"))
    rows.append(("sweep, default path (recommendation), vs NumPy", f"{s['default_rate']:.3g} samples/s",
                 f"{s['default_ratio']:.2f}×", "—" if args.gpu else "≥ 5× (stretch 10×), ≥ 3e6 samples/s"))
    if s.get("rss"):
        rows.append(("1e9-sample default sweep, peak RSS", f"{s['rss']['peak_rss_mb']:.0f} MB", "—", "< 2 GB"))
    if have_scipy:
        so = bench_solver.main((["--problems", "100000000", "--lbfgs-sample", "100000"] if args.gpu else []) + rec)
        rows.append(("data-constrained solver vs SciPy", f"{so['budgetopt_rate']:.3g} problems/s", f"{so['ratio_vs_scipy']:.0f}×",
                     "≥ 1e9 problems/s" if args.gpu else "≥ 1000×"))
        import bench_fit

        fi = bench_fit.main(["--scipy-starts", "450"] + rec)
        rows.append(("Approach-3 fit vs SciPy loop", f"{fi['budgetopt_s']['median']:.2f} s", f"{fi['ratio']:.1f}×", "≥ 100×"))
        import bench_vpnls

        vp = bench_vpnls.main(rec)
        rows.append(("VPNLS, 8 ladders x 1001 fits in one call, vs SciPy loop", f"{vp['budgetopt_fits_per_s']:,.0f} fits/s",
                     f"{vp['ratio']:.0f}×", "8008 fits in one call"))
        import bench_ladder

        la = bench_ladder.main(rec)
        rows.append(("ladder design, 20 designs x 1000 simulated ladders (VPNLS), vs SciPy loop",
                     f"{la['command_s']:.1f} s first call, {la['fits_per_s']:,.0f} fits/s warm", f"{la['ratio']:.0f}×",
                     "< 60 s on 2 CPU cores"))
        import bench_moe

        mo = bench_moe.main((["--problems", "100000000"] if args.gpu else []) + rec)
        rows.append(("joint MoE optimum, (budget, memory cap) x 7 expert counts in one call, vs SciPy loop",
                     f"{mo['budgetopt_rate']:.3g} problems/s", f"{mo['ratio']:,.0f}×",
                     f"same E chosen in {mo['same_expert_count']:.0%}"))
        import bench_forms

        fo = bench_forms.main(rec)
        rows.append(("fit --form ludziejewski2025-moe, 200 bootstrap replicates x 8 starts in one call, vs SciPy loop",
                     f"{fo['budgetopt_rate']:.3g} replicates/s", f"{fo['ratio']:.1f}×",
                     f"SciPy lower in {fo['scipy_better_fraction']:.0%}"))
        import bench_curves

        # 200 replicates on an accelerator (the size); 20 on CPU, where 200 take ~10 minutes
        cu = bench_curves.main(["--replicates", "200" if args.gpu else "20"] + rec)
        rows.append((f"curves --bootstrap {cu['replicates']}: multi-power law, 3 curves x 24,000 steps, vs SciPy loop",
                     f"{cu['budgetopt_rate']:.3g} replicates/s", f"{cu['ratio']:.1f}×",
                     f"SciPy lower in {cu['scipy_better_fraction']:.0%}"))
    else:
        rows.append(("data-constrained solver, Approach-3 fit", "skipped", "—", "SciPy not installed (baseline)"))
    print(f"\n## Summary ({jax.default_backend()}, {jax.device_count()} devices, {time.time() - t0:.0f} s)\n")
    print("| benchmark | budgetopt | ratio to baseline | target |\n|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
